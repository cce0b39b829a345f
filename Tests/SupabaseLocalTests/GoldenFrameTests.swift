import Testing

@testable import SupabaseLocal

/// Byte-for-byte checks of the frames the session machine emits, against the whole frames shown in
/// realtime-protocol.md (a `todos` table as in §5.2).
@Suite("Golden frames (realtime-protocol.md §3–§5, §9, §15)")
struct GoldenFrameTests {
    static let todos = TableDescriptor(
        schema: "public",
        name: "todos",
        columns: [
            TableColumn(name: "id", type: "uuid", isPrimaryKey: true),
            TableColumn(name: "user_id", type: "uuid"),
            TableColumn(name: "title", type: "text"),
            TableColumn(name: "done", type: "bool"),
            TableColumn(name: "updated_at", type: "timestamptz"),
        ]
    )
    static let signer = LocalJWTSigner(secret: "golden-secret-golden-secret-golden-secret")
    static let now = LocalTimestamp(parsing: "2026-08-21T10:15:00Z")!
    static let joinPayload =
        #"{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"postgres_changes":[{"event":"*","schema":"public","table":"todos","filter":"user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11"}],"private":false}}"#

    static func session(_ version: RealtimeVersion = .v2) -> RealtimeSession {
        let token = self.signer.mint(role: "anon", now: self.now, lifetime: .seconds(3600))
        return RealtimeSession(
            version: version, table: self.todos,
            verifier: TokenVerifier(signer: self.signer, projectKeys: [token], revokedAtOrBefore: nil),
            socketToken: token
        )
    }

    static func sent(_ actions: [RealtimeSession.Action]) -> [String] {
        actions.compactMap { if case .send(let text) = $0 { return text } else { return nil } }
    }

    /// A joined, live session and the binding id it was given.
    static func joined(_ version: RealtimeVersion = .v2) -> (RealtimeSession, Int) {
        var session = self.session(version)
        _ = session.receive(
            text: #"["3","3","realtime:todos-sync","phx_join","# + self.joinPayload + "]", now: self.now)
        let id = session.channels["realtime:todos-sync"]!.bindings[0].id
        return (session, id)
    }

    static let row: TableRow = [
        "id": .string("2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"),
        "user_id": .string("8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11"),
        "title": .string("Buy milk"),
        "done": .bool(false),
        "updated_at": .string("2026-08-21T10:15:03.401882+00:00"),
    ]

    static func change(_ kind: TableChange.Kind, at text: String, record: TableRow?, old: TableRow?) -> TableChange {
        TableChange(
            kind: kind, schema: "public", table: "todos", commitTimestamp: LocalTimestamp(parsing: text)!,
            record: record, oldRecord: old)
    }

    @Test("§3 heartbeat reply, V2 and V1")
    func heartbeat() {
        var v2 = Self.session()
        #expect(
            Self.sent(v2.receive(text: #"[null,"26","phoenix","heartbeat",{}]"#, now: Self.now))
                == [#"[null,"26","phoenix","phx_reply",{"response":{},"status":"ok"}]"#])
        var v1 = Self.session(.v1)
        #expect(
            Self.sent(
                v1.receive(text: #"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"26"}"#, now: Self.now))
                == [#"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"26","topic":"phoenix"}"#])
    }

    @Test("§4.3 join reply echoes the binding with id first, then §4.5 system ok")
    func joinReplyAndSystem() {
        var session = Self.session()
        let frames = Self.sent(
            session.receive(
                text: #"["3","3","realtime:todos-sync","phx_join","# + Self.joinPayload + "]", now: Self.now))
        let id = session.channels["realtime:todos-sync"]!.bindings[0].id
        #expect(id > 0 && id < 1 << 27)
        #expect(
            frames == [
                #"["3","3","realtime:todos-sync","phx_reply",{"response":{"postgres_changes":[{"id":"# + "\(id)"
                    + #","event":"*","filter":"user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11","schema":"public","table":"todos"}]},"status":"ok"}]"#,
                #"["3",null,"realtime:todos-sync","system",{"channel":"todos-sync","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"}]"#,
            ])
    }

    @Test("§4.5 V1 system frame")
    func systemV1() {
        var session = Self.session(.v1)
        let frames = Self.sent(
            session.receive(
                text: #"{"topic":"realtime:todos-sync","event":"phx_join","payload":"# + Self.joinPayload
                    + #","ref":"3","join_ref":"3"}"#, now: Self.now))
        #expect(
            frames.last
                == #"{"event":"system","payload":{"channel":"todos-sync","extension":"postgres_changes","message":"Subscribed to PostgreSQL","status":"ok"},"ref":null,"topic":"realtime:todos-sync"}"#
        )
    }

    @Test("§5.2 INSERT frame byte for byte")
    func insertFrame() {
        let (session, id) = Self.joined()
        let frames = Self.sent(
            session.deliver(
                Self.change(.insert, at: "2026-08-21T10:15:03.412Z", record: Self.row, old: nil),
                maxRecordBytes: 1_048_576))
        #expect(
            frames == [
                #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":[{"name": "id", "type": "uuid"}, {"name": "user_id", "type": "uuid"}, {"name": "title", "type": "text"}, {"name": "done", "type": "bool"}, {"name": "updated_at", "type": "timestamptz"}],"commit_timestamp":"2026-08-21T10:15:03.412Z","errors":null,"record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", "done": false, "title": "Buy milk", "user_id": "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11", "updated_at": "2026-08-21T10:15:03.401882+00:00"},"schema":"public","table":"todos","type":"INSERT"},"ids":["#
                    + "\(id)]}]"
            ])
    }

    @Test("§5.2 UPDATE and DELETE frames byte for byte (default identity: PK-only old_record)")
    func updateAndDeleteFrames() {
        let (session, id) = Self.joined()
        let columns =
            #"[{"name": "id", "type": "uuid"}, {"name": "user_id", "type": "uuid"}, {"name": "title", "type": "text"}, {"name": "done", "type": "bool"}, {"name": "updated_at", "type": "timestamptz"}]"#
        var updated = Self.row
        updated["done"] = .bool(true)
        updated["updated_at"] = .string("2026-08-21T10:16:40.0012+00:00")
        let key: TableRow = ["id": .string("2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f")]
        let update = Self.sent(
            session.deliver(
                Self.change(.update, at: "2026-08-21T10:16:40.007Z", record: updated, old: key),
                maxRecordBytes: 1_048_576))
        #expect(
            update == [
                #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":"# + columns
                    + #","commit_timestamp":"2026-08-21T10:16:40.007Z","errors":null,"old_record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"},"record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", "done": true, "title": "Buy milk", "user_id": "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11", "updated_at": "2026-08-21T10:16:40.0012+00:00"},"schema":"public","table":"todos","type":"UPDATE"},"ids":["#
                    + "\(id)]}]"
            ])
        // The filter is on user_id, which a default-identity DELETE does not carry: not delivered (§6.1).
        let filteredDelete = session.deliver(
            Self.change(.delete, at: "2026-08-21T10:17:02.950Z", record: nil, old: key), maxRecordBytes: 1_048_576)
        #expect(filteredDelete.isEmpty)
        var unfiltered = Self.session()
        _ = unfiltered.receive(
            text:
                #"["3","3","realtime:todos-sync","phx_join",{"config":{"postgres_changes":[{"event":"*","schema":"public","table":"todos"}]}}]"#,
            now: Self.now)
        let plainID = unfiltered.channels["realtime:todos-sync"]!.bindings[0].id
        #expect(
            Self.sent(
                unfiltered.deliver(
                    Self.change(.delete, at: "2026-08-21T10:17:02.950Z", record: nil, old: key),
                    maxRecordBytes: 1_048_576)) == [
                    #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":"# + columns
                        + #","commit_timestamp":"2026-08-21T10:17:02.950Z","errors":null,"old_record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"},"schema":"public","table":"todos","type":"DELETE"},"ids":["#
                        + "\(plainID)]}]"
                ])
    }

    @Test("§5.4 records above the limit keep only ≤ 64-byte values and carry Error 413")
    func payloadTooLarge() throws {
        let (session, _) = Self.joined()
        var big = Self.row
        big["title"] = .string(String(repeating: "x", count: 65))
        let frames = Self.sent(
            session.deliver(
                Self.change(.insert, at: "2026-08-21T10:15:03.412Z", record: big, old: nil), maxRecordBytes: 100))
        let frame = try #require(frames.first)
        #expect(frame.contains(#""errors":["Error 413: Payload Too Large"]"#))
        #expect(!frame.contains("xxxxxxxx"))
        #expect(frame.contains(#""user_id": "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11""#))
    }

    @Test("§9.1 leave: ok reply then phx_close with ref = join_ref")
    func leave() {
        var (session, _) = Self.joined()
        #expect(
            Self.sent(session.receive(text: #"["3","57","realtime:todos-sync","phx_leave",{}]"#, now: Self.now)) == [
                #"["3","57","realtime:todos-sync","phx_reply",{"response":{},"status":"ok"}]"#,
                #"["3","3","realtime:todos-sync","phx_close",{}]"#,
            ])
        #expect(session.channelCount == 0)
    }

    @Test("§15.2 unmatched topic carries join_ref null; §15.1 stale join_ref is ignored")
    func unmatchedAndStale() {
        var (session, _) = Self.joined()
        #expect(
            Self.sent(
                session.receive(
                    text: #"["9","10","realtime:other","access_token",{"access_token":"x"}]"#, now: Self.now))
                == [
                    #"[null,"10","realtime:other","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#
                ])
        #expect(
            session.receive(
                text: #"["2","11","realtime:todos-sync","access_token",{"access_token":"x"}]"#, now: Self.now
            ).isEmpty)
        #expect(
            Self.sent(session.receive(text: #"["4","4","bogus","phx_join",{}]"#, now: Self.now))
                == [#"[null,"4","bogus","phx_reply",{"response":{"reason":"unmatched topic"},"status":"error"}]"#])
    }

    @Test("§15.3 duplicate join: new reply first, then phx_close for the old join ref")
    func duplicateJoin() throws {
        var (session, _) = Self.joined()
        let frames = Self.sent(
            session.receive(
                text: #"["7","7","realtime:todos-sync","phx_join",{"config":{"postgres_changes":[]}}]"#, now: Self.now))
        #expect(
            frames == [
                #"["7","7","realtime:todos-sync","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]"#,
                #"["3","3","realtime:todos-sync","phx_close",{}]"#,
            ])
    }

    @Test("§15.5 ids list matching bindings in reverse binding order")
    func idsReversed() throws {
        var session = Self.session()
        _ = session.receive(
            text:
                #"["3","3","realtime:t","phx_join",{"config":{"postgres_changes":[{"event":"INSERT","schema":"public","table":"todos"},{"event":"*","schema":"public","table":"todos"},{"event":"DELETE","schema":"public","table":"todos"}]}}]"#,
            now: Self.now)
        let ids = session.channels["realtime:t"]!.bindings.map(\.id)
        let frame = try #require(
            Self.sent(
                session.deliver(
                    Self.change(.insert, at: "2026-08-21T10:15:03.412Z", record: Self.row, old: nil),
                    maxRecordBytes: 1_048_576)
            ).first)
        #expect(frame.hasSuffix(#""ids":["# + "\(ids[1]),\(ids[0])]}]"))
    }

    @Test("Changes committed before the system ok are not delivered (§4.3)")
    func noDeliveryBeforeSystemOk() {
        var session = Self.session()
        session.policy.systemOkDelay = .seconds(2)
        let actions = session.receive(
            text: #"["3","3","realtime:todos-sync","phx_join","# + Self.joinPayload + "]", now: Self.now)
        #expect(
            actions.contains(.schedule(.subscribe(topic: "realtime:todos-sync", generation: 1), after: .seconds(2))))
        let early = Self.change(.insert, at: "2026-08-21T10:15:03.412Z", record: Self.row, old: nil)
        #expect(session.deliver(early, maxRecordBytes: 1_048_576).isEmpty)
        let system = Self.sent(
            session.timerFired(.subscribe(topic: "realtime:todos-sync", generation: 1), now: Self.now))
        #expect(system.count == 1 && system[0].contains("Subscribed to PostgreSQL"))
        #expect(session.deliver(early, maxRecordBytes: 1_048_576).count == 1)
    }
}

// MARK: Broadcast from Database (broadcast-from-database.md §B2–§B5)

extension GoldenFrameTests {
    static let broadcastRowID = "6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90"

    /// A row as `broadcast_changes` writes it for an UPDATE of job 42 (§B1.3).
    static let broadcastRow = BroadcastRow(
        id: broadcastRowID, topic: "jobs:42", event: "UPDATE",
        payload: .object([
            "id": .string(broadcastRowID), "operation": .string("UPDATE"), "schema": .string("public"),
            "table": .string("jobs"), "record": .object(["id": .int(42), "status": .string("done")]),
            "old_record": .object(["id": .int(42), "status": .string("running")]),
        ]),
        isPrivate: true, insertedAt: now)

    /// A private `jobs:42` join with replication_ready (and optionally replay) as in §B3, authorized by the driver.
    static func privateJoin(
        _ version: RealtimeVersion, replay: [BroadcastRow]? = nil
    ) -> (RealtimeSession, join: [RealtimeSession.Action], authorized: [RealtimeSession.Action]) {
        var session = self.session(version)
        let token = self.signer.mint(role: "authenticated", now: self.now, lifetime: .seconds(3600))
        let replayJSON = replay == nil ? "" : #","replay":{"since":1760000000000,"limit":25}"#
        let payload =
            #"{"config":{"broadcast":{"ack":false,"self":false"# + replayJSON
            + #","replication_ready":true},"presence":{"key":"","enabled":false},"postgres_changes":[],"private":true},"access_token":"\#(token)"}"#
        let text =
            version == .v2
            ? #"["1","1","realtime:jobs:42","phx_join","# + payload + "]"
            : #"{"topic":"realtime:jobs:42","event":"phx_join","ref":"1","join_ref":"1","payload":"# + payload + "}"
        let join = session.receive(text: text, now: self.now)
        guard case .authorize(let request)? = join.first else { return (session, join, []) }
        let authorized = session.authorized(
            topic: request.topic, generation: request.generation, outcome: .allowed(replayed: replay ?? []),
            now: self.now)
        return (session, join, authorized)
    }

    @Test("§B2/§B3 private join: a read check first, then ok and `Replication connection established`")
    func broadcastJoinAndReadiness() throws {
        let (_, join, authorized) = Self.privateJoin(.v2)
        #expect(join.count == 1)
        guard case .authorize(let request)? = join.first else {
            Issue.record("no authorize action")
            return
        }
        #expect(request.subTopic == "jobs:42" && request.reader.role == "authenticated" && request.replay == nil)
        #expect(
            Self.sent(authorized) == [
                #"["1","1","realtime:jobs:42","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]"#,
                #"["1",null,"realtime:jobs:42","system",{"channel":"jobs:42","extension":"system","message":"Replication connection established","status":"ok"}]"#,
            ])
    }

    @Test("§B2 refusal reply, exactly as the server sends it")
    func broadcastRefusal() {
        var (session, join, _) = (Self.session(.v2), [RealtimeSession.Action](), [RealtimeSession.Action]())
        let token = Self.signer.mint(role: "anon", now: Self.now, lifetime: .seconds(3600))
        join = session.receive(
            text: #"["1","1","realtime:jobs:42","phx_join",{"config":{"private":true},"access_token":"\#(token)"}]"#,
            now: Self.now)
        guard case .authorize(let request)? = join.first else {
            Issue.record("no authorize action")
            return
        }
        let refused = session.authorized(
            topic: request.topic, generation: request.generation, outcome: .refused, now: Self.now)
        #expect(
            Self.sent(refused) == [
                #"["1","1","realtime:jobs:42","phx_reply",{"response":{"reason":"Unauthorized: You do not have permissions to read from this Channel topic: jobs:42"},"status":"error"}]"#
            ])
        #expect(session.channelCount == 0)
    }

    @Test("§B4 vsn 2.0.0 live: binary kind 4, header 04 10 06 2D 01, metadata {\"id\":…}, jsonb payload")
    func broadcastKind4() throws {
        let (session, _, _) = Self.privateJoin(.v2)
        let actions = session.deliverBroadcast(Self.broadcastRow)
        guard case .sendBinary(let bytes)? = actions.first, actions.count == 1 else {
            Issue.record("expected one binary frame, got \(actions)")
            return
        }
        let payload =
            #"{"id": "6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90", "table": "jobs", "record": {"id": 42, "status": "done"}, "schema": "public", "operation": "UPDATE", "old_record": {"id": 42, "status": "running"}}"#
        let expected: [UInt8] =
            [0x04, 0x10, 0x06, 0x2D, 0x01] + Array("realtime:jobs:42".utf8) + Array("UPDATE".utf8)
            + Array(#"{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90"}"#.utf8) + Array(payload.utf8)
        #expect(bytes == expected)
    }

    @Test("§B4 vsn 1.0.0 live: a JSON text object, no join_ref")
    func broadcastV1() {
        let (session, _, _) = Self.privateJoin(.v1)
        #expect(
            Self.sent(session.deliverBroadcast(Self.broadcastRow)) == [
                #"{"event":"broadcast","payload":{"event":"UPDATE","meta":{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90"},"payload":{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90","old_record":{"id":42,"status":"running"},"operation":"UPDATE","record":{"id":42,"status":"done"},"schema":"public","table":"jobs"},"type":"broadcast"},"ref":null,"topic":"realtime:jobs:42"}"#
            ])
    }

    @Test("§B4/§B5 replayed rows: text pushes with join_ref and replayed:true after the ok, before readiness; live duplicate dropped")
    func broadcastReplay() {
        let (session, _, authorized) = Self.privateJoin(.v2, replay: [Self.broadcastRow])
        #expect(
            Self.sent(authorized) == [
                #"["1","1","realtime:jobs:42","phx_reply",{"response":{"postgres_changes":[]},"status":"ok"}]"#,
                #"["1",null,"realtime:jobs:42","broadcast",{"event":"UPDATE","meta":{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90","replayed":true},"payload":{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90","old_record":{"id":42,"status":"running"},"operation":"UPDATE","record":{"id":42,"status":"done"},"schema":"public","table":"jobs"},"type":"broadcast"}]"#,
                #"["1",null,"realtime:jobs:42","system",{"channel":"jobs:42","extension":"system","message":"Replication connection established","status":"ok"}]"#,
            ])
        // §B5 "Server dedupe": the live copy of a replayed row is not sent again.
        #expect(session.deliverBroadcast(Self.broadcastRow).isEmpty)
    }

    @Test("§B3 readiness timeout: system error, then phx_close")
    func broadcastReadinessTimeout() {
        var session = Self.session(.v2)
        session.policy.replicationReadyDelay = nil
        let token = Self.signer.mint(role: "authenticated", now: Self.now, lifetime: .seconds(3600))
        let join = session.receive(
            text:
                #"["1","1","realtime:jobs:42","phx_join",{"config":{"private":true,"broadcast":{"replication_ready":"false"}},"access_token":"\#(token)"}]"#,
            now: Self.now)
        guard case .authorize(let request)? = join.first else {
            Issue.record("no authorize action")
            return
        }
        let authorized = session.authorized(
            topic: request.topic, generation: request.generation, outcome: .allowed(replayed: []), now: Self.now)
        #expect(authorized.contains(.schedule(.replicationTimeout(topic: "realtime:jobs:42", joinGeneration: 1), after: .seconds(60))))
        let fired = session.timerFired(.replicationTimeout(topic: "realtime:jobs:42", joinGeneration: 1), now: Self.now)
        #expect(
            Self.sent(fired) == [
                #"["1",null,"realtime:jobs:42","system",{"channel":"jobs:42","extension":"system","message":"Replication connection was not established in time","status":"error"}]"#,
                #"["1","1","realtime:jobs:42","phx_close",{}]"#,
            ])
    }
}

extension GoldenFrameTests {
    static let binaryRow = BroadcastRow(
        id: broadcastRowID, topic: "jobs:42", event: "blob", payload: nil, binaryPayload: [0x00, 0xFF, 0x10],
        isPrivate: true, insertedAt: now)

    @Test("§B4 send_binary rows: kind 4 encoding 0 on vsn 2.0.0 (live and replayed), never on vsn 1.0.0")
    func broadcastBinaryRows() {
        let (session, _, _) = Self.privateJoin(.v2)
        let live: [UInt8] =
            [0x04, 0x10, 0x04, 0x2D, 0x00] + Array("realtime:jobs:42".utf8) + Array("blob".utf8)
            + Array(#"{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90"}"#.utf8) + [0x00, 0xFF, 0x10]
        #expect(session.deliverBroadcast(Self.binaryRow) == [.sendBinary(live)])
        let (_, _, replayed) = Self.privateJoin(.v2, replay: [Self.binaryRow])
        let metadata = #"{"id":"6f1c0a52-4b1e-4d8a-9c35-1f0e2d7b8a90","replayed":true}"#
        let replayedFrame: [UInt8] =
            [0x04, 0x10, 0x04, UInt8(metadata.utf8.count), 0x00] + Array("realtime:jobs:42".utf8)
            + Array("blob".utf8) + Array(metadata.utf8) + [0x00, 0xFF, 0x10]
        #expect(replayed.contains(.sendBinary(replayedFrame)))
        let (v1, _, _) = Self.privateJoin(.v1)
        #expect(v1.deliverBroadcast(Self.binaryRow).isEmpty)
    }

    @Test("§B2 an access_token push on a private channel re-checks the read policy; refusal closes the channel")
    func broadcastRefreshRecheck() {
        var (session, _, _) = Self.privateJoin(.v2)
        let fresh = Self.signer.mint(
            role: "authenticated", now: Self.now, lifetime: .seconds(7200), extraClaims: ["sub": .string("u")])
        let actions = session.receive(
            text: #"["1","2","realtime:jobs:42","access_token",{"access_token":"\#(fresh)"}]"#, now: Self.now)
        let requests = actions.compactMap { action -> AuthorizationRequest? in
            if case .authorize(let request) = action { return request } else { return nil }
        }
        #expect(requests.count == 1)
        guard let request = requests.first else { return }
        #expect(request.purpose == .refresh && request.reader.claims["sub"] == .string("u"))
        let refused = session.authorized(
            topic: request.topic, generation: request.generation, outcome: .refused, now: Self.now)
        #expect(
            Self.sent(refused) == [
                #"["1",null,"realtime:jobs:42","system",{"channel":"jobs:42","extension":"system","message":"You no longer have permission to read from this Channel topic: jobs:42","status":"error"}]"#,
                #"["1","1","realtime:jobs:42","phx_close",{}]"#,
            ])
        #expect(session.channelCount == 0)
    }
}

extension GoldenFrameTests {
    @Test("§B2 a second join of the topic while the read check runs supersedes it: the stale outcome is ignored")
    func broadcastSupersededJoin() {
        var session = Self.session(.v2)
        let token = Self.signer.mint(role: "authenticated", now: Self.now, lifetime: .seconds(3600))
        let first = session.receive(
            text: #"["1","1","realtime:jobs:42","phx_join",{"config":{"private":true},"access_token":"\#(token)"}]"#,
            now: Self.now)
        guard case .authorize(let request)? = first.first else {
            Issue.record("no authorize action")
            return
        }
        let second = session.receive(
            text: #"["2","2","realtime:jobs:42","phx_join",{"config":{"private":false}}]"#, now: Self.now)
        #expect(Self.sent(second).first?.hasPrefix(#"["2","2","realtime:jobs:42","phx_reply""#) == true)
        let stale = session.authorized(
            topic: request.topic, generation: request.generation, outcome: .allowed(replayed: []), now: Self.now)
        #expect(stale.isEmpty)
        #expect(session.channelCount == 1)
        #expect(session.order == ["realtime:jobs:42"])
    }
}
