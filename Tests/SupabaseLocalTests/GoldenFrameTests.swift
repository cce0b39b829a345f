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
