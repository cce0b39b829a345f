import NIOConcurrencyHelpers
import WSCore
import NIOWebSocket
import Testing

@testable import SupabaseLocal

/// Over real sockets (127.0.0.1, port 0) with a raw WebSocket client.
@Suite("Realtime over a socket")
struct RealtimeIntegrationTests {
    static let join =
        #"["1","1","realtime:jobs","phx_join",{"config":{"postgres_changes":[{"event":"*","schema":"public","table":"jobs"}]}}]"#

    @Test("§1.3 handshake refusals: status codes and JSON bodies; §1.2 bad vsn")
    func handshakeRefusals() async throws {
        try await SupabaseLocal.withRunning { stack in
            let upgrade = [
                "Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ==",
            ]
            let missing = try await httpRequest(stack, "GET", "/realtime/v1/websocket?vsn=2.0.0", headers: upgrade)
            #expect(missing.status == 401)
            #expect(missing.body == #"{"error":"API key is missing"}"#)
            let expired = stack.mintUserToken(lifetime: .seconds(-10))
            let old = try await httpRequest(stack, "GET", "/socket/websocket?apikey=\(expired)", headers: upgrade)
            #expect(old.status == 401 && old.body == #"{"error":"Token has expired"}"#)
            let garbage = try await httpRequest(stack, "GET", "/realtime/v1/websocket?apikey=abc", headers: upgrade)
            #expect(garbage.body == #"{"error":"The token provided is not a valid JWT"}"#)
            let noRole = stack.signToken(claims: ["exp": .int(4_000_000_000)])
            let claims = try await httpRequest(
                stack, "GET", "/realtime/v1/websocket?apikey=\(noRole)", headers: upgrade)
            #expect(claims.body == #"{"error":"Fields `role` and `exp` are required in JWT"}"#)
            let vsn = try await httpRequest(
                stack, "GET", "/realtime/v1/websocket?apikey=\(stack.anonKey)&vsn=3.0.0",
                headers: upgrade)
            #expect(vsn.status == 403)
        }
    }

    @Test("Join, system ok, then INSERT/UPDATE/DELETE frames for the jobs table (V2)")
    func changesFlow() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                socket.send(Self.join)
                let reply = try #require(await socket.receive())
                #expect(
                    reply.hasPrefix(#"["1","1","realtime:jobs","phx_reply",{"response":{"postgres_changes":[{"id":"#))
                let system = try #require(await socket.receive())
                #expect(system.contains("Subscribed to PostgreSQL"))
                let row = try await stack.backend.insert(["status": .string("queued")])
                _ = try await stack.backend.update(
                    primaryKey: row["id"]!,
                    set: [
                        "status": .string("completed"),
                        "result": .object(["confidence": .number("0.93")]),
                    ])
                _ = try await stack.backend.delete(primaryKey: row["id"]!)
                for kind in ["INSERT", "UPDATE", "DELETE"] {
                    let frame = try #require(await socket.receive())
                    #expect(
                        frame.hasPrefix(
                            #"[null,null,"realtime:jobs","postgres_changes",{"data":{"columns":[{"name": "id", "type": "uuid"}"#
                        ))
                    #expect(frame.contains(#""type":"\#(kind)""#))
                }
            }
        }
    }

    @Test("V1 sockets (no vsn) get object frames without join_ref")
    func versionOne() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack, query: "apikey=\(stack.anonKey)") { socket in
                socket.send(
                    #"{"topic":"realtime:x","event":"phx_join","payload":{"config":{}},"ref":"1","join_ref":"1"}"#)
                #expect(
                    await socket.receive()
                        == #"{"event":"phx_reply","payload":{"response":{"postgres_changes":[]},"status":"ok"},"ref":"1","topic":"realtime:x"}"#
                )
            }
        }
    }

    @Test("§2.2 malformed and binary frames are dropped without closing")
    func malformed() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                socket.send("not json")
                socket.send(#"["only","four","items","here"]"#)
                let before = try #require(await socket.framesBeforeHeartbeatReply(ref: "9"))
                #expect(before.isEmpty)
            }
        }
    }

    @Test("§7.2 the 101st channel is refused with ChannelRateLimitReached")
    func channelCap() async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.maxChannelsPerSocket = 2
        try await SupabaseLocal.withRunning(configuration) { stack in
            try await withTestSocket(stack) { socket in
                for index in 1...3 {
                    socket.send(#"["\#(index)","\#(index)","realtime:c\#(index)","phx_join",{"config":{}}]"#)
                }
                _ = await socket.receive()
                _ = await socket.receive()
                #expect(
                    await socket.receive()
                        == #"["3","3","realtime:c3","phx_reply",{"response":{"reason":"ChannelRateLimitReached: Too many channels"},"status":"error"}]"#
                )
            }
        }
    }

    @Test("§8.1 access_token: valid → no reply and a fresh system ok; expired → system error then phx_close")
    func accessToken() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                socket.send(Self.join)
                _ = await socket.receive()
                _ = await socket.receive()
                socket.send(#"["1","2","realtime:jobs","access_token",{"access_token":"\#(stack.mintUserToken())"}]"#)
                #expect(await socket.receive()?.contains("Subscribed to PostgreSQL") == true)
                let expired = stack.mintUserToken(lifetime: .seconds(-5))
                socket.send(#"["1","3","realtime:jobs","access_token",{"access_token":"\#(expired)"}]"#)
                let error = try #require(await socket.receive())
                #expect(
                    error.hasPrefix(
                        #"["1",null,"realtime:jobs","system",{"channel":"jobs","extension":"system","message":"Token has expired "#
                    ))
                #expect(await socket.receive() == #"["1","1","realtime:jobs","phx_close",{}]"#)
            }
        }
    }

    @Test("§4.4 joining with an expired token is refused with InvalidJWTToken")
    func joinExpired() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                let token = stack.mintUserToken(lifetime: .seconds(-3))
                socket.send(#"["1","1","realtime:jobs","phx_join",{"config":{},"access_token":"\#(token)"}]"#)
                let reply = try #require(await socket.receive())
                #expect(reply.contains(#""reason":"InvalidJWTToken: Token has expired "#))
            }
        }
    }

    @Test("§8.2 the periodic check closes the channel when the token expires while joined")
    func periodicExpiry() async throws {
        // The wall clock (token expiry) stands still until the join is answered, then jumps past the token's `exp`:
        // however slow the machine, the join succeeds and only the periodic check can close the channel.
        let offset = NIOLockedValueBox<Int64>(0)
        var configuration = SupabaseLocalConfiguration()
        let start = WallClock.system.now()
        configuration.wallClock = WallClock {
            LocalTimestamp(microsecondsSinceEpoch: start.microsecondsSinceEpoch + offset.withLockedValue { $0 })
        }
        try await SupabaseLocal.withRunning(configuration) { stack in
            try await withTestSocket(stack) { socket in
                let token = stack.mintUserToken(lifetime: .seconds(1))
                socket.send(#"["1","1","realtime:jobs","phx_join",{"config":{},"access_token":"\#(token)"}]"#)
                #expect(await socket.receive()?.contains(#""status":"ok""#) == true)
                offset.withLockedValue { $0 = 2_000_000 }
                let error = try #require(await socket.receive())
                #expect(error.contains("Token has expired"))
                #expect(await socket.receive() == #"["1","1","realtime:jobs","phx_close",{}]"#)
            }
        }
    }

    @Test("§3 idle sockets are closed with 1000")
    func idleTimeout() async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.idleTimeout = .milliseconds(300)
        try await SupabaseLocal.withRunning(configuration) { stack in
            let close = try await withTestSocket(stack) { socket in
                #expect(await socket.receive() == nil)
            }
            #expect(close?.closeCode == .normalClosure)
        }
    }
}
