import Testing

@testable import SupabaseLocal

/// Broadcast from Database over a real socket (broadcast-from-database.md §B2–§B6).
@Suite("Broadcast from Database over a socket (§B2–§B6)")
struct BroadcastSessionTests {
    /// A decoded kind-4 user-broadcast frame (§B4).
    struct UserBroadcast: Equatable {
        var topic: String
        var event: String
        var metadata: String
        var encoding: UInt8
        var payload: String
    }

    static func decodeKind4(_ frame: String?) -> UserBroadcast? {
        guard let frame, let bytes = TestSocket.binaryBytes(frame), bytes.count >= 5, bytes[0] == 4 else {
            return nil
        }
        let (t, e, m) = (Int(bytes[1]), Int(bytes[2]), Int(bytes[3]))
        guard bytes.count >= 5 + t + e + m else { return nil }
        func text(_ range: Range<Int>) -> String { String(decoding: bytes[range], as: UTF8.self) }
        return UserBroadcast(
            topic: text(5..<5 + t), event: text(5 + t..<5 + t + e), metadata: text(5 + t + e..<5 + t + e + m),
            encoding: bytes[4], payload: text(5 + t + e + m..<bytes.count))
    }

    /// A V2 `phx_join` for `realtime:<subTopic>`.
    static func join(
        _ subTopic: String, token: String, isPrivate: Bool = true, ready: Bool = true, replay: String? = nil,
        ref: String = "1"
    ) -> String {
        let replayJSON = replay.map { ",\"replay\":\($0)" } ?? ""
        return #"["\#(ref)","\#(ref)","realtime:\#(subTopic)","phx_join",{"config":{"broadcast":{"ack":false,"self":false"#
            + replayJSON + #","replication_ready":\#(ready)},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":\#(isPrivate)},"access_token":"\#(token)"}]"#
    }

    static func okReply(_ subTopic: String, ref: String = "1") -> String {
        #"["\#(ref)","\#(ref)","realtime:\#(subTopic)","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]"#
    }

    static func ready(_ subTopic: String, ref: String = "1") -> String {
        #"["\#(ref)",null,"realtime:\#(subTopic)","system",{"channel":"\#(subTopic)","extension":"system","message":"Replication connection established","status":"ok"}]"#
    }

    static var inMemory: (SupabaseLocalStack) -> InMemoryJobsBackend {
        { $0.backend as! InMemoryJobsBackend }
    }

    @Test("§B2/§B3 private join with a user token: ok, replication_ready, then live V2 kind-4 frames from row writes")
    func privateJoinLiveV2() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive() == Self.okReply("jobs"))
                #expect(await socket.receive() == Self.ready("jobs"))
                let job = try await stack.backend.insert([:])
                let id = try #require(job["id"]?.stringValue)
                let frame = try #require(Self.decodeKind4(await socket.receive()))
                #expect(frame.topic == "realtime:jobs" && frame.event == "INSERT" && frame.encoding == 1)
                let row = try #require(Self.inMemory(stack).storedBroadcasts().last)
                #expect(frame.metadata == #"{"id":"\#(row.id)"}"#)
                let payload = try LocalJSON(parsing: frame.payload)
                #expect(payload["operation"] == .string("INSERT"))
                #expect(payload["record"]?["id"] == .string(id))
                #expect(payload["id"] == .string(row.id))
            }
        }
    }

    @Test("§B4 vsn 1.0.0 live broadcasts are JSON text objects")
    func liveV1() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            try await withTestSocket(stack, query: "apikey=\(stack.anonKey)&vsn=1.0.0") { socket in
                socket.send(
                    #"{"topic":"realtime:jobs:1","event":"phx_join","ref":"1","join_ref":"1","payload":{"config":{"private":true,"broadcast":{"replication_ready":true}},"access_token":"\#(token)"}}"#
                )
                #expect(await socket.receive()?.contains(#""status":"ok""#) == true)
                #expect(await socket.receive()?.contains("Replication connection established") == true)
                let row = try #require(
                    try await stack.backend.broadcastBackend?.send(
                        payload: .object(["n": .int(1)]), event: "ping", topic: "jobs:1", isPrivate: true))
                let live = await socket.receive()
                #expect(
                    live
                        == #"{"event":"broadcast","payload":{"event":"ping","meta":{"id":"\#(row.id)"},"payload":{"id":"\#(row.id)","n":1},"type":"broadcast"},"ref":null,"topic":"realtime:jobs:1"}"#
                )
            }
        }
    }

    @Test("§B2 refused: anon token, exact Unauthorized reason with the sub-topic")
    func refusedAnon() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs:42", token: stack.anonKey))
                #expect(
                    await socket.receive()
                        == #"["1","1","realtime:jobs:42","phx_reply",{"response":{"reason":"Unauthorized: You do not have permissions to read from this Channel topic: jobs:42"},"status":"error"}]"#
                )
            }
        }
    }

    @Test("§B5 replay: newest rows oldest first as text pushes with join_ref and replayed:true, before readiness")
    func replay() async throws {
        try await SupabaseLocal.withRunning { stack in
            let backend = Self.inMemory(stack)
            let since = stack.configuration.wallClock.now().microsecondsSinceEpoch / 1000 - 1
            for n in 0..<3 {
                _ = try await backend.send(payload: .object(["n": .int(n)]), event: "e", topic: "jobs:9", isPrivate: true)
            }
            let rows = backend.storedBroadcasts()
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs:9", token: token, replay: #"{"since":\#(since),"limit":2}"#))
                #expect(await socket.receive() == Self.okReply("jobs:9"))
                for row in rows.suffix(2) {
                    let replayed = await socket.receive()
                    #expect(
                        replayed
                            == #"["1",null,"realtime:jobs:9","broadcast",{"event":"e","meta":{"id":"\#(row.id)","replayed":true},"payload":{"id":"\#(row.id)","n":\#(row.payload!["n"]!.encoded())},"type":"broadcast"}]"#
                    )
                }
                #expect(await socket.receive() == Self.ready("jobs:9"))
            }
        }
    }

    @Test("§B3/§B5 replay refusals: public channel, non-integer since")
    func replayRefusals() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token, isPrivate: false, replay: #"{"since":1}"#))
                #expect(
                    await socket.receive()?.contains(
                        #""reason":"UnableToReplayMessages: Replay is not allowed for public channels""#) == true)
                socket.send(Self.join("jobs", token: token, replay: #"{"since":1.5}"#, ref: "2"))
                #expect(
                    await socket.receive()?.contains(#""reason":"UnableToReplayMessages: Replay params are not valid""#)
                        == true)
            }
        }
    }

    @Test("§B2 isolation: public channels get only public rows, private channels only private rows")
    func isolation() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            let store = try #require(stack.backend.broadcastBackend)
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("room", token: token, isPrivate: false))
                #expect(await socket.receive() == Self.okReply("room"))
                #expect(await socket.receive() == Self.ready("room"))
                _ = try await store.send(payload: .object(["n": .int(1)]), event: "private", topic: "room", isPrivate: true)
                _ = try await store.send(payload: .object(["n": .int(2)]), event: "public", topic: "room", isPrivate: false)
                #expect(Self.decodeKind4(await socket.receive())?.event == "public")
            }
        }
    }

    @Test("§B2 revocation on access_token: read went true→false, system error then phx_close")
    func revocation() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs:5", token: token))
                #expect(await socket.receive() == Self.okReply("jobs:5"))
                #expect(await socket.receive() == Self.ready("jobs:5"))
                stack.faults.setBroadcastReadRule(.denyAll)
                let fresh = stack.mintUserToken(claims: ["sub": .string("u1")])
                socket.send(#"["1","2","realtime:jobs:5","access_token",{"access_token":"\#(fresh)"}]"#)
                #expect(
                    await socket.receive()
                        == #"["1",null,"realtime:jobs:5","system",{"channel":"jobs:5","extension":"system","message":"You no longer have permission to read from this Channel topic: jobs:5","status":"error"}]"#
                )
                #expect(await socket.receive() == #"["1","1","realtime:jobs:5","phx_close",{}]"#)
                #expect(stack.faults.statistics.broadcastReadsRefusedByRule == 1)
            }
        }
    }

    @Test("Fault setBroadcastReadRule: the next join is refused (§B2), counted")
    func readRuleFault() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            stack.faults.setBroadcastReadRule(.denyAll)
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive()?.contains(#""reason":"Unauthorized: "#) == true)
            }
            #expect(stack.faults.statistics.broadcastReadsRefusedByRule == 1)
            stack.faults.setBroadcastReadRule(nil)
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive() == Self.okReply("jobs"))
            }
        }
    }

    @Test("Fault dropBroadcasts: live delivery lost, row stored and replayable (§B6), counted")
    func dropBroadcasts() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            let since = stack.configuration.wallClock.now().microsecondsSinceEpoch / 1000 - 1
            let store = try #require(stack.backend.broadcastBackend)
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs:room", token: token))
                #expect(await socket.receive() == Self.okReply("jobs:room"))
                #expect(await socket.receive() == Self.ready("jobs:room"))
                stack.faults.dropBroadcasts(fraction: 1)
                let lost = try #require(
                    try await store.send(payload: .object(["n": .int(1)]), event: "lost", topic: "jobs:room", isPrivate: true))
                // Wait (bounded, a guard against hangs) until the pump has dropped the row.
                for _ in 0..<2000 where stack.faults.statistics.broadcastsDropped < 1 {
                    try await Task.sleep(for: .milliseconds(5))
                }
                stack.faults.dropBroadcasts(fraction: 0)
                _ = try await store.send(payload: .object(["n": .int(2)]), event: "kept", topic: "jobs:room", isPrivate: true)
                #expect(Self.decodeKind4(await socket.receive())?.event == "kept")
                let replayed = try await store.replay(topic: "jobs:room", isPrivate: true, sinceMilliseconds: since, limit: 25)
                #expect(replayed.map(\.id).contains(lost.id))
            }
            #expect(stack.faults.statistics.broadcastsDropped == 1)
        }
    }

    @Test("Fault rateLimitBroadcasts: receiving channels get Too many messages per second + phx_close (§B6)")
    func rateLimit() async throws {
        try await SupabaseLocal.withRunning { stack in
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive() == Self.okReply("jobs"))
                #expect(await socket.receive() == Self.ready("jobs"))
                stack.faults.rateLimitBroadcasts()
                _ = try await stack.backend.insert([:])
                #expect(
                    await socket.receive()
                        == #"["1",null,"realtime:jobs","system",{"channel":"jobs","extension":"system","message":"Too many messages per second","status":"error"}]"#
                )
                #expect(await socket.receive() == #"["1","1","realtime:jobs","phx_close",{}]"#)
            }
            // Two rows per insert (jobs:<id> and jobs), one channel closed.
            #expect(stack.faults.statistics.broadcastsRateLimited == 2)
            #expect(stack.faults.statistics.broadcastChannelsRateLimited == 1)
            #expect(Self.inMemory(stack).storedBroadcasts().count == 2)
        }
    }

    @Test("Faults withholdReplicationReady / setReplicationReadyDelay (§B3): timeout error + phx_close; delayed ok")
    func readiness() async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.replicationReadyTimeout = .milliseconds(200)
        try await SupabaseLocal.withRunning(configuration) { stack in
            let token = stack.mintUserToken()
            stack.faults.withholdReplicationReady()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive() == Self.okReply("jobs"))
                #expect(
                    await socket.receive()
                        == #"["1",null,"realtime:jobs","system",{"channel":"jobs","extension":"system","message":"Replication connection was not established in time","status":"error"}]"#
                )
                #expect(await socket.receive() == #"["1","1","realtime:jobs","phx_close",{}]"#)
            }
            #expect(stack.faults.statistics.replicationReadyWithheld == 1)
            stack.faults.setReplicationReadyDelay(.milliseconds(100))
            try await withTestSocket(stack) { socket in
                let clock = ContinuousClock()
                let start = clock.now
                socket.send(Self.join("jobs", token: token, ref: "3"))
                #expect(await socket.receive() == Self.okReply("jobs", ref: "3"))
                #expect(await socket.receive() == Self.ready("jobs", ref: "3"))
                #expect(start.duration(to: clock.now) >= .milliseconds(100))
            }
        }
    }

    @Test("Admin routes set the broadcast faults and report their counters")
    func adminRoutes() async throws {
        try await SupabaseLocal.withRunning { stack in
            let headers = ["apikey": stack.serviceKey, "Authorization": "Bearer \(stack.serviceKey)"]
            let rule = try await httpRequest(
                stack, "POST", "/admin/v1/broadcast-read-rule", headers: headers, body: #"{"rule":"deny_all"}"#)
            #expect(rule.status == 200)
            #expect(rule.body.contains(#""broadcast_reads_refused_by_rule":0"#))
            let token = stack.mintUserToken()
            try await withTestSocket(stack) { socket in
                socket.send(Self.join("jobs", token: token))
                #expect(await socket.receive()?.contains("Unauthorized") == true)
            }
            let drop = try await httpRequest(
                stack, "POST", "/admin/v1/drop-broadcasts", headers: headers, body: #"{"fraction":1}"#)
            #expect(drop.body.contains(#""broadcast_reads_refused_by_rule":1"#))
            let bad = try await httpRequest(
                stack, "POST", "/admin/v1/broadcast-read-rule", headers: headers, body: #"{"rule":"nope"}"#)
            #expect(bad.status == 400)
        }
    }
}
