import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Broadcast from Database frames (broadcast-from-database.md §B3, §B4), byte-exact where the client writes them.
@Suite("Codec: Broadcast from Database (§B3, §B4)")
struct BroadcastCodecTests {
    let v1 = PhoenixSerializer(version: .v1)
    let v2 = PhoenixSerializer(version: .v2)
    static let uuid = "6f1c2b3a-4d5e-4f60-8a7b-9c0d1e2f3a4b"

    // MARK: Join payload (§B3)

    @Test("§B3 private join with replay and replication_ready, vsn 2.0.0: byte-exact with the §B3 frame")
    func joinPayloadGolden() {
        let payload = JoinPayload(
            accessToken: "<JWT>", isPrivate: true,
            broadcastReplay: BroadcastReplayOption(since: 1_760_000_000_000, limit: 25),
            broadcastReplicationReady: true)
        let message = PhoenixMessage(
            joinRef: "1", ref: "1", topic: "realtime:jobs:42", event: .join, payload: payload.jsonValue)
        let expected =
            #"["1","1","realtime:jobs:42","phx_join",{"config":{"broadcast":{"ack":false,"self":false,"#
            + #""replay":{"since":1760000000000,"limit":25},"replication_ready":true},"#
            + #""presence":{"key":"","enabled":false},"postgres_changes":[],"private":true},"access_token":"<JWT>"}]"#
        #expect(self.v2.encode(message) == expected)
    }

    @Test("§B3 replay.since is a JSON integer (never a Double); limit omitted when nil, clamped to 1...25")
    func replayOptionEncoding() {
        #expect(BroadcastReplayOption(since: 1_760_000_000_123).jsonValue.serialized() == #"{"since":1760000000123}"#)
        #expect(
            BroadcastReplayOption(since: 5, limit: 0).jsonValue.serialized() == #"{"since":5,"limit":1}"#)
        #expect(
            BroadcastReplayOption(since: 5, limit: 1_000).jsonValue.serialized() == #"{"since":5,"limit":25}"#)
        #expect(
            BroadcastReplayOption(since: 5, limit: 7).jsonValue.serialized() == #"{"since":5,"limit":7}"#)
    }

    @Test("§B3 without broadcast options the join payload keeps the plain §4.2 broadcast object")
    func joinPayloadWithoutBroadcastOptions() {
        let text = JoinPayload(accessToken: nil).jsonValue.serialized()
        #expect(text.contains(#""broadcast":{"ack":false,"self":false}"#))
        #expect(!text.contains("replay") && !text.contains("replication_ready"))
        #expect(text.contains(#""private":false"#))
    }

    // MARK: Messages (§B4)

    @Test("§B4 vsn 1.0.0 live text push (object form): event, payload, meta.id; not replayed")
    func v1LiveText() throws {
        let frame =
            #"{"event":"broadcast","payload":{"event":"UPDATE","meta":{"id":"\#(Self.uuid)"},"#
            + #""payload":{"id":"\#(Self.uuid)","#
            + #""operation":"UPDATE","schema":"public","table":"jobs","record":{"id":42},"old_record":{"id":42}},"#
            + #""type":"broadcast"},"ref":null,"topic":"realtime:jobs:42"}"#
        let message = try self.v1.decode(text: frame)
        #expect(message.event == .broadcast)
        #expect(message.joinRef == nil)
        let broadcast = try BroadcastMessage(broadcastPayload: message.payload)
        #expect(broadcast.event == "UPDATE")
        #expect(broadcast.id == Self.uuid)
        #expect(!broadcast.isReplayed)
        #expect(broadcast.payload["record"]?["id"] == .number(JSONNumber(42)))
        #expect(broadcast.payload["operation"] == .string("UPDATE"))
    }

    @Test("§B4 replayed JSON row: text push with join_ref set and meta.replayed true, keys in another order")
    func replayedTextPush() throws {
        let frame =
            #"["1",null,"realtime:jobs:42","broadcast",{"meta":{"replayed":true,"id":"r-1"},"type":"broadcast","#
            + #""payload":{"operation":"INSERT"},"event":"INSERT"}]"#
        let message = try self.v2.decode(text: frame)
        #expect(message.joinRef == "1")
        #expect(message.ref == nil)
        let broadcast = try BroadcastMessage(broadcastPayload: message.payload)
        #expect(broadcast == BroadcastMessage(
            event: "INSERT", payload: .object(["operation": .string("INSERT")]), id: "r-1", isReplayed: true))
    }

    /// Kind 4 (§B4): `04 T E M enc`, topic, event, metadata, payload.
    static func kind4(
        topic: String = "realtime:jobs:42", event: String = "UPDATE", metadata: String, encoding: UInt8 = 1,
        payload: String
    ) -> [UInt8] {
        [4, UInt8(topic.utf8.count), UInt8(event.utf8.count), UInt8(metadata.utf8.count), encoding]
            + Array(topic.utf8) + Array(event.utf8) + Array(metadata.utf8) + Array(payload.utf8)
    }

    @Test("§B4 vsn 2.0.0 live kind-4 frame, header 04 10 06 2D 01, becomes a live BroadcastMessage")
    func binaryKind4Live() throws {
        let frame = Self.kind4(metadata: #"{"id":"\#(Self.uuid)"}"#, payload: #"{"table":"jobs","record":{"id":42}}"#)
        #expect(Array(frame.prefix(5)) == [0x04, 0x10, 0x06, 0x2D, 0x01])
        let message = try #require(try self.v2.decode(binary: frame))
        #expect(message.event == .broadcast && message.topic == "realtime:jobs:42" && message.joinRef == nil)
        let broadcast = try BroadcastMessage(broadcastPayload: message.payload)
        #expect(broadcast.event == "UPDATE")
        #expect(broadcast.id == Self.uuid)
        #expect(!broadcast.isReplayed)
        let record: JSONValue = .object(["id": .number(JSONNumber(42))])
        #expect(broadcast.payload == .object(["table": .string("jobs"), "record": record]))
    }

    @Test("§B4 kind-4 metadata {id, replayed:true} marks a replayed row; no metadata gives no id")
    func binaryKind4ReplayedAndNoMeta() throws {
        let replayed = try #require(
            try self.v2.decode(binary: Self.kind4(metadata: #"{"replayed":true,"id":"r-9"}"#, payload: "[1,2]")))
        let message = try BroadcastMessage(broadcastPayload: replayed.payload)
        #expect(message.isReplayed && message.id == "r-9")
        #expect(message.payload == .array([.number(JSONNumber(1)), .number(JSONNumber(2))]))
        let bare = try #require(try self.v2.decode(binary: Self.kind4(metadata: "", payload: "{}")))
        let noMeta = try BroadcastMessage(broadcastPayload: bare.payload)
        #expect(noMeta.id == nil && !noMeta.isReplayed)
    }

    @Test("§B4 kind-4 binary_payload rows (encoding 0) are skipped, never a crash")
    func binaryKind4RawBytesSkipped() throws {
        let frame = Self.kind4(metadata: #"{"id":"x"}"#, encoding: 0, payload: "\u{0}\u{1}")
        #expect(try self.v2.decode(binary: frame) == nil)
    }

    @Test(
        "§B4 malformed broadcast payloads are typed errors",
        arguments: [
            #"[1]"#,
            #"{"payload":{}}"#,
            #"{"event":7,"payload":{}}"#,
            #"{"event":"UPDATE"}"#,
            #"{"event":"UPDATE","payload":{},"meta":[1]}"#,
            #"{"event":"UPDATE","payload":{},"meta":{"id":5}}"#,
            #"{"type":"presence","event":"UPDATE","payload":{}}"#,
        ])
    func malformedPayloads(text: String) throws {
        let payload = try JSONValue.parse(text)
        #expect(throws: RealtimeProtocolError.self) { try BroadcastMessage(broadcastPayload: payload) }
    }

    @Test("§B4 meta.replayed that is not true counts as live; unknown keys are tolerated")
    func lenientMeta() throws {
        let payload = try JSONValue.parse(
            #"{"event":"e","payload":null,"meta":{"id":null,"replayed":"yes"},"extra":1}"#)
        let message = try BroadcastMessage(broadcastPayload: payload)
        #expect(message.id == nil && !message.isReplayed && message.payload == .null)
    }

    // MARK: Event filter (§B7), recent ids (§B5)

    @Test("§B7 event names match case-insensitively; * or an empty list selects all")
    func eventFilter() {
        let updates = BroadcastEventFilter(["update", "Delete"])
        #expect(updates.matches("UPDATE") && updates.matches("delete"))
        #expect(!updates.matches("INSERT"))
        #expect(BroadcastEventFilter(["*"]).matches("anything"))
        #expect(BroadcastEventFilter(["INSERT", "*"]).matches("UPDATE"))
        #expect(BroadcastEventFilter([]).matches("UPDATE"))
    }

    @Test("§B5 RecentIDs remembers the last N ids only: duplicates refused, the oldest forgotten first")
    func recentIDsBounded() {
        var recent = RecentIDs(capacity: 3)
        #expect(recent.insert("a") && recent.insert("b") && recent.insert("c"))
        let duplicate = recent.insert("b")
        #expect(!duplicate)
        let forgetsA = recent.insert("d")
        #expect(forgetsA)
        #expect(recent.count == 3)
        #expect(!recent.contains("a") && recent.contains("d"))
        let forgetsB = recent.insert("a")
        #expect(forgetsB)
        #expect(!recent.contains("b") && recent.contains("c"))
        for index in 0..<10_000 { _ = recent.insert("id-\(index)") }
        #expect(recent.count == 3)
        #expect(recent.contains("id-9999") && !recent.contains("id-9996"))
    }
}
