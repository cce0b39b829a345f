import Testing
import WSCore
import NIOWebSocket

@testable import SupabaseLocal

/// Every fault of the brief, shown to happen.
@Suite("Fault injection")
struct FaultTests {
    static let join =
        #"["1","1","realtime:jobs","phx_join",{"config":{"postgres_changes":[{"event":"*","schema":"public","table":"jobs"}]}}]"#

    /// Joins and waits for the system ok.
    static func joinLive(_ socket: TestSocket) async {
        socket.send(Self.join)
        _ = await socket.receive()
        _ = await socket.receive()
    }

    @Test("Drop every socket with a close frame (code and reason)")
    func dropWithClose() async throws {
        try await SupabaseLocal.withRunning { stack in
            let close = try await withTestSocket(stack) { socket in
                _ = await socket.framesBeforeHeartbeatReply(ref: "1")
                stack.faults.dropAllConnections(code: 1012, reason: "restart")
                #expect(await socket.receive() == nil)
            }
            #expect(close?.closeCode == .unknown(1012))
            #expect(close?.reason == "restart")
        }
    }

    @Test("Drop every socket abruptly (no close frame)")
    func dropAbrupt() async throws {
        try await SupabaseLocal.withRunning { stack in
            let close = try? await withTestSocket(stack) { socket in
                _ = await socket.framesBeforeHeartbeatReply(ref: "1")
                stack.faults.dropAllConnections(code: nil)
                #expect(await socket.receive() == nil)
            }
            // Either the client reports an error or a close without a server close frame.
            if let frame = close {
                #expect(frame.closeCode != .normalClosure && frame.closeCode != .unknown(1012))
            }
        }
    }

    @Test("Stall: no replies while stalled, replies resume afterwards")
    func stall() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                _ = await socket.framesBeforeHeartbeatReply(ref: "1")
                stack.faults.stall(for: .milliseconds(500))
                socket.send(#"[null,"2","phoenix","heartbeat",{}]"#)
                #expect(await socket.receive(timeout: .milliseconds(200)) == nil)
            }
        }
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                _ = await socket.framesBeforeHeartbeatReply(ref: "1")
                stack.faults.stall(for: .milliseconds(200))
                socket.send(#"[null,"2","phoenix","heartbeat",{}]"#)
                #expect(await socket.receive()?.contains(#""2","phoenix","phx_reply""#) == true)
            }
        }
    }

    @Test("Refuse new connections with 503 / 429 and Retry-After, then accept again")
    func refuse() async throws {
        try await SupabaseLocal.withRunning { stack in
            let upgrade = [
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==", "apikey": stack.anonKey,
            ]
            stack.faults.refuseConnections(ConnectionRefusal(status: 429, retryAfterSeconds: 7))
            let limited = try await httpRequest(
                stack, "GET", "/realtime/v1/websocket?apikey=\(stack.anonKey)", headers: upgrade)
            #expect(limited.status == 429)
            #expect(limited.headers["retry-after"] == "7")
            #expect(limited.body == #"{"error":"Too many connected users"}"#)
            stack.faults.refuseConnections(ConnectionRefusal(status: 503))
            let unavailable = try await httpRequest(
                stack, "GET", "/realtime/v1/websocket?apikey=\(stack.anonKey)", headers: upgrade)
            #expect(unavailable.status == 503)
            stack.faults.acceptConnections()
            try await withTestSocket(stack) { socket in
                #expect(await socket.framesBeforeHeartbeatReply(ref: "1") == [])
            }
        }
    }

    @Test("Withhold the system ok: no changes are delivered; a delayed one arrives")
    func systemOk() async throws {
        try await SupabaseLocal.withRunning { stack in
            stack.faults.withholdSystemOk()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join)
                _ = await socket.receive()
                _ = try await stack.backend.insert([:])
                #expect(await socket.framesBeforeHeartbeatReply(ref: "5") == [])
            }
            stack.faults.setSystemOkDelay(.milliseconds(50))
            try await withTestSocket(stack) { socket in
                socket.send(Self.join)
                _ = await socket.receive()
                #expect(await socket.receive()?.contains("Subscribed to PostgreSQL") == true)
            }
        }
    }

    @Test("Join refused with a given §4.4 reason (after a delay)")
    func joinError() async throws {
        try await SupabaseLocal.withRunning { stack in
            stack.faults.failJoins(
                ForcedJoinError(
                    reason: "RealtimeRestarting: Realtime is restarting, please standby",
                    delay: .milliseconds(50)))
            try await withTestSocket(stack) { socket in
                socket.send(Self.join)
                #expect(
                    await socket.receive()
                        == #"["1","1","realtime:jobs","phx_reply",{"response":{"reason":"RealtimeRestarting: Realtime is restarting, please standby"},"status":"error"}]"#
                )
            }
        }
    }

    @Test("Drop a fraction of changes silently; delay changes")
    func changeFaults() async throws {
        try await SupabaseLocal.withRunning { stack in
            stack.faults.dropChanges(fraction: 1)
            try await withTestSocket(stack) { socket in
                await Self.joinLive(socket)
                _ = try await stack.backend.insert([:])
                _ = try await stack.backend.insert([:])
                // The fan-out runs concurrently with commits: let it see both changes before lifting the fault
                // (a bounded wait, not a timing assertion).
                for _ in 0..<400 where stack.faults.droppedChangeCount < 2 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                stack.faults.dropChanges(fraction: 0)
                stack.faults.delayChanges(by: .milliseconds(50))
                _ = try await stack.backend.insert(["status": .string("processing")])
                let frame = try #require(await socket.receive())
                #expect(frame.contains(#""status": "processing""#))
            }
            #expect(stack.faults.droppedChangeCount == 2)
        }
    }

    @Test("REST 429 with Retry-After, 500, and added latency")
    func restFaults() async throws {
        try await SupabaseLocal.withRunning { stack in
            stack.faults.failREST(RESTFailure(status: 429, retryAfterSeconds: 3))
            let limited = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack))
            #expect(limited.status == 429 && limited.headers["retry-after"] == "3")
            stack.faults.failREST(RESTFailure(status: 500))
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack)).status == 500)
            stack.faults.failREST(nil)
            stack.faults.setRESTLatency(.milliseconds(20))
            let clock = ContinuousClock()
            let start = clock.now
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack)).status == 200)
            #expect(start.duration(to: clock.now) >= .milliseconds(20))
        }
    }

    @Test("Expire tokens: channels get Token has expired then phx_close; REST user JWTs get PGRST303")
    func expireTokens() async throws {
        try await SupabaseLocal.withRunning { stack in
            let user = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(#"["1","1","realtime:jobs","phx_join",{"config":{},"access_token":"\#(user)"}]"#)
                _ = await socket.receive()
                stack.faults.expireTokens()
                #expect(await socket.receive()?.contains(#""message":"Token has expired"#) == true)
                #expect(await socket.receive() == #"["1","1","realtime:jobs","phx_close",{}]"#)
            }
            var headers = anonHeaders(stack)
            headers["Authorization"] = "Bearer \(user)"
            let rest = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: headers)
            #expect(rest.status == 401 && rest.body.contains("PGRST303"))
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack)).status == 200)
        }
    }

    @Test("Force 413 truncation; delete jobs (retention) produces DELETE events")
    func truncationAndRetention() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                await Self.joinLive(socket)
                stack.faults.setMaxRecordBytes(10)
                let row = try await stack.backend.insert(["progress": .string(String(repeating: "p", count: 80))])
                let frame = try #require(await socket.receive())
                #expect(frame.contains(#""errors":["Error 413: Payload Too Large"]"#))
                #expect(!frame.contains("pppp"))
                stack.faults.setMaxRecordBytes(nil)
                #expect(try await stack.faults.deleteJobs(ids: [row["id"]!.stringValue!]) == 1)
                #expect(await socket.receive()?.contains(#""type":"DELETE""#) == true)
            }
        }
    }

    @Test("Restart: sockets closed with 1012, handshakes refused with 503 meanwhile")
    func restart() async throws {
        try await SupabaseLocal.withRunning { stack in
            let close = try await withTestSocket(stack) { socket in
                _ = await socket.framesBeforeHeartbeatReply(ref: "1")
                stack.faults.restart(refuseFor: .seconds(30))
                #expect(await socket.receive() == nil)
            }
            #expect(close?.closeCode == .unknown(1012))
            let upgrade = [
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            ]
            let refused = try await httpRequest(
                stack, "GET", "/realtime/v1/websocket?apikey=\(stack.anonKey)", headers: upgrade)
            #expect(refused.status == 503)
        }
    }

    @Test("Heartbeat replies withheld; channels crash with phx_error")
    func heartbeatAndCrash() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                await Self.joinLive(socket)
                stack.faults.setHeartbeatReplies(.withheld)
                socket.send(#"[null,"2","phoenix","heartbeat",{}]"#)
                // Frames are handled in order: the join reply proves the heartbeat was seen and not answered.
                socket.send(#"["4","4","realtime:b","phx_join",{"config":{}}]"#)
                #expect(await socket.receive()?.hasPrefix(#"["4","4","realtime:b","phx_reply""#) == true)
                stack.faults.crashChannels()
                let crashed = [await socket.receive(), await socket.receive()]
                #expect(crashed.contains(#"["1","1","realtime:jobs","phx_error",{}]"#))
                #expect(crashed.contains(#"["4","4","realtime:b","phx_error",{}]"#))
                stack.faults.setHeartbeatReplies(.normal)
                #expect(await socket.framesBeforeHeartbeatReply(ref: "3") == [])
            }
        }
    }

    @Test("Admin endpoint requires the service key and drives faults")
    func admin() async throws {
        try await SupabaseLocal.withRunning { stack in
            let denied = try await httpRequest(
                stack, "POST", "/admin/v1/rest-failure", headers: anonHeaders(stack),
                body: #"{"status":429}"#)
            #expect(denied.status == 401)
            let service = ["apikey": stack.serviceKey]
            let applied = try await httpRequest(
                stack, "POST", "/admin/v1/rest-failure", headers: service,
                body: #"{"status":429,"retry_after":2}"#)
            #expect(applied.status == 200)
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack)).status == 429)
            _ = try await httpRequest(stack, "POST", "/admin/v1/reset", headers: service)
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack)).status == 200)
            let simulated = try await httpRequest(
                stack, "POST", "/admin/v1/simulate", headers: service,
                body: #"{"jobs":3,"page_ms":1,"queue_ms":1}"#)
            #expect(try LocalJSON(parsing: simulated.body)["ids"]?.arrayValue?.count == 3)
        }
    }
}
