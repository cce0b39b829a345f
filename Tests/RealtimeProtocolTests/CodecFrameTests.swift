import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Exact frames from realtime-protocol.md, decoded under the version the doc shows them in.
@Suite("Codec: documented frames")
struct CodecFrameTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var section: String
        var version: ProtocolVersion
        var frame: String
        var joinRef: Ref?
        var ref: Ref?
        var topic: Topic
        var event: PhoenixEvent
        var testDescription: String { "\(self.section) vsn \(self.version.rawValue) \(self.event)" }
    }

    static let columns =
        #"[{"name": "id", "type": "uuid"}, {"name": "user_id", "type": "uuid"}, "#
        + #"{"name": "title", "type": "text"}, {"name": "done", "type": "bool"}, "#
        + #"{"name": "updated_at", "type": "timestamptz"}]"#

    static let insertFrame =
        #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":[{"name": "id", "type": "uuid"}, "#
        + #"{"name": "user_id", "type": "uuid"}, {"name": "title", "type": "text"}, {"name": "done", "type": "bool"}, "#
        + #"{"name": "updated_at", "type": "timestamptz"}],"#
        + #""commit_timestamp":"2026-08-21T10:15:03.412Z","errors":null,"#
        + #""record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", "done": false, "title": "Buy milk", "#
        + #""user_id": "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11", "updated_at": "2026-08-21T10:15:03.401882+00:00"},"#
        + #""schema":"public","table":"todos","type":"INSERT"},"ids":[84421330]}]"#

    // §5.2 abbreviates the columns as `[…same…]`; the INSERT frame's list is substituted.
    static let updateFrame =
        #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":"# + columns
        + #","commit_timestamp":"2026-08-21T10:16:40.007Z","errors":null,"#
        + #""old_record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"},"#
        + #""record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", "done": true, "title": "Buy milk", "#
        + #""user_id": "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11", "updated_at": "2026-08-21T10:16:40.0012+00:00"},"#
        + #""schema":"public","table":"todos","type":"UPDATE"},"ids":[84421330]}]"#

    static let deleteFrame =
        #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{"columns":"# + columns
        + #","commit_timestamp":"2026-08-21T10:17:02.950Z","errors":null,"#
        + #""old_record":{"id": "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"},"#
        + #""schema":"public","table":"todos","type":"DELETE"},"ids":[84421330]}]"#

    static let joinReplyFrame =
        #"["3","3","realtime:todos-sync","phx_reply",{"response":{"postgres_changes":[{"id":84421330,"event":"*","#
        + #""filter":"user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11","schema":"public","table":"todos"}]},"#
        + #""status":"ok"}]"#

    static let cases: [Case] = [
        Case(
            section: "§2.1", version: .v1,
            frame: #"{"topic":"realtime:todos-sync","event":"phx_join","payload":{"config":{}},"ref":"3","#
                + #""join_ref":"3"}"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .join),
        Case(
            section: "§2.1", version: .v1,
            frame: #"{"event":"phx_reply","payload":{"response":{"postgres_changes":[]},"status":"ok"},"ref":"3","#
                + #""topic":"realtime:todos-sync"}"#,
            joinRef: nil, ref: "3", topic: "realtime:todos-sync", event: .reply),
        Case(
            section: "§2.2", version: .v2, frame: #"["3","3","realtime:todos-sync","phx_join",{"config":{}}]"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .join),
        Case(
            section: "§3", version: .v2, frame: #"[null,"26","phoenix","heartbeat",{}]"#,
            joinRef: nil, ref: "26", topic: .phoenix, event: .heartbeat),
        Case(
            section: "§3", version: .v1, frame: #"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"26"}"#,
            joinRef: nil, ref: "26", topic: .phoenix, event: .heartbeat),
        Case(
            section: "§3", version: .v2, frame: #"[null,"26","phoenix","phx_reply",{"response":{},"status":"ok"}]"#,
            joinRef: nil, ref: "26", topic: .phoenix, event: .reply),
        Case(
            section: "§3", version: .v1,
            frame: #"{"event":"phx_reply","payload":{"response":{},"status":"ok"},"ref":"26","topic":"phoenix"}"#,
            joinRef: nil, ref: "26", topic: .phoenix, event: .reply),
        Case(
            section: "§4.2", version: .v2,
            frame: #"["3","3","realtime:todos-sync","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"#
                + #""presence":{"key":"","enabled":false},"postgres_changes":[{"event":"*","schema":"public","#
                + #""table":"todos","filter":"user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11"}],"private":false},"#
                + #""access_token":"eyJhbGciOi..."}]"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .join),
        Case(
            section: "§4.3", version: .v2, frame: joinReplyFrame,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .reply),
        Case(
            section: "§4.4", version: .v2,
            frame: #"["3","3","realtime:todos-sync","phx_reply",{"response":{"reason":"#
                + #""ChannelRateLimitReached: Too many channels"},"status":"error"}]"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .reply),
        Case(
            section: "§4.5", version: .v2,
            frame: #"["3",null,"realtime:todos-sync","system",{"channel":"todos-sync","extension":"postgres_changes","#
                + #""message":"Subscribed to PostgreSQL","status":"ok"}]"#,
            joinRef: "3", ref: nil, topic: "realtime:todos-sync", event: .system),
        Case(
            section: "§4.5", version: .v1,
            frame: #"{"event":"system","payload":{"channel":"todos-sync","extension":"postgres_changes","#
                + #""message":"Subscribed to PostgreSQL","status":"ok"},"ref":null,"topic":"realtime:todos-sync"}"#,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .system),
        Case(
            section: "§5.1", version: .v2,
            frame: #"[null,null,"realtime:todos-sync","postgres_changes",{"data":{},"ids":[84421330]}]"#,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .postgresChanges),
        Case(
            section: "§5.1", version: .v1,
            frame: #"{"event":"postgres_changes","payload":{"data":{},"ids":[84421330]},"ref":null,"#
                + #""topic":"realtime:todos-sync"}"#,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .postgresChanges),
        Case(
            section: "§5.2 INSERT", version: .v2, frame: insertFrame,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .postgresChanges),
        Case(
            section: "§5.2 UPDATE", version: .v2, frame: updateFrame,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .postgresChanges),
        Case(
            section: "§5.2 DELETE", version: .v2, frame: deleteFrame,
            joinRef: nil, ref: nil, topic: "realtime:todos-sync", event: .postgresChanges),
        Case(
            section: "§8.1", version: .v2,
            frame: #"["3","41","realtime:todos-sync","access_token",{"access_token":"eyJhbGciOi...new"}]"#,
            joinRef: "3", ref: "41", topic: "realtime:todos-sync", event: .accessToken),
        Case(
            section: "§8.2", version: .v2,
            frame: #"["3",null,"realtime:todos-sync","system",{"channel":"todos-sync","extension":"system","#
                + #""message":"Token has expired 0 seconds ago","status":"error"}]"#,
            joinRef: "3", ref: nil, topic: "realtime:todos-sync", event: .system),
        Case(
            section: "§8.2", version: .v2, frame: #"["3","3","realtime:todos-sync","phx_close",{}]"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .close),
        Case(
            section: "§9.1", version: .v2, frame: #"["3","57","realtime:todos-sync","phx_leave",{}]"#,
            joinRef: "3", ref: "57", topic: "realtime:todos-sync", event: .leave),
        Case(
            section: "§9.1", version: .v2,
            frame: #"["3","57","realtime:todos-sync","phx_reply",{"response":{},"status":"ok"}]"#,
            joinRef: "3", ref: "57", topic: "realtime:todos-sync", event: .reply),
        Case(
            section: "§9.1", version: .v2, frame: #"["3","3","realtime:todos-sync","phx_error",{}]"#,
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .error),
    ]

    @Test("§2–§9 documented frames decode with the right refs, topic and event", arguments: cases)
    func documentedFrameDecodes(_ testCase: Case) throws {
        let message = try PhoenixSerializer(version: testCase.version).decode(text: testCase.frame)
        #expect(message.joinRef == testCase.joinRef)
        #expect(message.ref == testCase.ref)
        #expect(message.topic == testCase.topic)
        #expect(message.event == testCase.event)
        #expect(message.payload.objectValue != nil)
    }

    @Test("§2–§9 documented frames survive decode → encode → decode", arguments: cases)
    func documentedFrameRoundTrips(_ testCase: Case) throws {
        let serializer = PhoenixSerializer(version: testCase.version)
        let message = try serializer.decode(text: testCase.frame)
        #expect(try serializer.decode(text: serializer.encode(message)) == message)
    }

    @Test("§2.2 V2 frames re-encode byte-exact when written without whitespace")
    func v2CompactFramesReencodeExactly() throws {
        let serializer = PhoenixSerializer(version: .v2)
        let compact = Self.cases.filter { $0.version == .v2 && !$0.frame.contains(": ") }
        #expect(compact.count > 10)
        for testCase in compact {
            #expect(serializer.encode(try serializer.decode(text: testCase.frame)) == testCase.frame)
        }
    }

    @Test("§4.3 join reply decodes into server bindings that match the request")
    func joinReplyBindings() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: Self.joinReplyFrame)
        let reply = try Reply(payload: message.payload)
        #expect(reply.status == .ok)
        let joinReply = try JoinReply(response: reply.response)
        #expect(joinReply.postgresChanges.map(\.id) == [84_421_330])
        let requested = PostgresChangeBinding(
            event: .all, schema: "public", table: "todos", filter: "user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11")
        #expect(joinReply.matches([requested]))
        #expect(!joinReply.matches([PostgresChangeBinding(event: .insert, schema: "public", table: "todos")]))
        #expect(!joinReply.matches([]))
    }

    @Test("§5.2 INSERT frame decodes into a typed change")
    func insertChange() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: Self.insertFrame)
        let changes = try PostgresChangesMessage(payload: message.payload)
        #expect(changes.ids == [84_421_330])
        let change = changes.change
        #expect(change.type == .insert)
        #expect(change.schema == "public")
        #expect(change.table == "todos")
        #expect(change.commitTimestamp == "2026-08-21T10:15:03.412Z")
        #expect(change.commitTimestampMilliseconds == 1_787_307_303_412)
        #expect(change.columns.count == 5)
        #expect(change.columns.first == PostgresChange.Column(name: "id", type: "uuid"))
        #expect(change.record?["title"] == .string("Buy milk"))
        #expect(change.record?["done"] == .bool(false))
        #expect(change.oldRecord == nil)
        #expect(change.errors == nil)
        #expect(!change.isTruncated)
    }

    @Test("§5.2 UPDATE frame carries record and old_record (primary key only)")
    func updateChange() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: Self.updateFrame)
        let change = try PostgresChangesMessage(payload: message.payload).change
        #expect(change.type == .update)
        #expect(change.record?["done"] == .bool(true))
        #expect(change.oldRecord?.keys == ["id"])
        #expect(change.commitTimestampMilliseconds == 1_787_307_400_007)
    }

    @Test("§5.2 DELETE frame has no record")
    func deleteChange() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: Self.deleteFrame)
        let change = try PostgresChangesMessage(payload: message.payload).change
        #expect(change.type == .delete)
        #expect(change.record == nil)
        #expect(change.oldRecord?["id"] == .string("2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"))
    }

    @Test("§5.2 error rows: no primary key (400) and payload too large (413)")
    func errorRows() throws {
        let noPK = try PostgresChangesMessage(
            payload: JSONValue.parse(
                #"{"data":{"columns":[],"commit_timestamp":null,"errors":["Error 400: Bad Request, no primary key"],"#
                    + #""record":{},"schema":"public","table":"t","type":"INSERT"},"ids":[1,2]}"#))
        #expect(noPK.ids == [1, 2])
        #expect(noPK.change.commitTimestamp == nil)
        #expect(noPK.change.commitTimestampMilliseconds == nil)
        #expect(noPK.change.hasErrors)
        #expect(!noPK.change.isTruncated)
        #expect(noPK.change.record == JSONObject())
        let truncated = try PostgresChangesMessage(
            payload: JSONValue.parse(
                #"{"data":{"columns":[],"commit_timestamp":"2026-08-21T10:15:03.412Z","#
                    + #""errors":["Error 413: Payload Too Large"],"record":{"id":"x"},"schema":"public","#
                    + #""table":"jobs","type":"UPDATE","old_record":{}},"ids":["7"]}"#))
        #expect(truncated.ids == [7])
        #expect(truncated.change.isTruncated)
        #expect(noPK.change.errors?.map(\.status) == [400])
        #expect(truncated.change.errors?.map(\.text) == ["Error 413: Payload Too Large"])
    }

    @Test("§5.4 an error's status is read from `Error <status>:`; only status 413 means truncated")
    func rowErrorStatus() {
        #expect(PostgresChange.RowError("Error 413: Payload Too Large").status == 413)
        #expect(PostgresChange.RowError("Error 401: Unauthorized").status == 401)
        #expect(PostgresChange.RowError("Error 4130: what").status == nil)
        #expect(PostgresChange.RowError("413").status == nil)
        #expect(PostgresChange.RowError("").status == nil)
        let mentions = PostgresChange(
            type: .update, schema: "public", table: "jobs", errors: [.init("Error 401: row of 413 bytes")])
        #expect(!mentions.isTruncated)
        #expect(mentions.hasErrors)
    }

    @Test("§4.5 system ok is postgres_changes OK; §8.2 system error is a channel error")
    func systemMessages() throws {
        let serializer = PhoenixSerializer(version: .v2)
        let ok = try SystemMessage(payload: serializer.decode(text: Self.cases[10].frame).payload)
        #expect(ok.channel == "todos-sync")
        #expect(ok.isPostgresChangesOK)
        #expect(!ok.isChannelError)
        let expired = try SystemMessage(payload: serializer.decode(text: Self.cases[18].frame).payload)
        #expect(expired.isChannelError)
        #expect(!expired.isPostgresChangesOK)
        #expect(expired.errorReason.kind == .tokenExpired)
    }
}
