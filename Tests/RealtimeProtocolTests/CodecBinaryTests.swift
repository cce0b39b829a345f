import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// vsn 2.0.0 binary frames (§2.3).
@Suite("Codec: binary frames (§2.3)")
struct CodecBinaryTests {
    let v2 = PhoenixSerializer(version: .v2)

    static func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }

    /// Kind 4: topic_len, user_event_len, metadata_len, payload_encoding, topic, user_event, metadata, payload.
    static func userBroadcast(
        topic: String = "realtime:room", event: String = "cursor", metadata: String = #"{"id":"abc"}"#,
        encoding: UInt8 = 1, payload: String = #"{"x":1}"#
    ) -> [UInt8] {
        [4, UInt8(topic.utf8.count), UInt8(event.utf8.count), UInt8(metadata.utf8.count), encoding]
            + bytes(topic) + bytes(event) + bytes(metadata) + bytes(payload)
    }

    @Test("§2.3 kind 4 user broadcast becomes a broadcast message with type/event/payload/meta")
    func userBroadcastKind4() throws {
        let message = try #require(try self.v2.decode(binary: Self.userBroadcast()))
        #expect(message.event == .broadcast)
        #expect(message.topic == "realtime:room")
        #expect(message.joinRef == nil)
        #expect(message.ref == nil)
        #expect(
            message.payload.serialized()
                == #"{"type":"broadcast","event":"cursor","payload":{"x":1},"meta":{"id":"abc"}}"#)
    }

    @Test("§2.3 kind 4 without metadata has no meta key")
    func userBroadcastNoMeta() throws {
        let message = try #require(try self.v2.decode(binary: Self.userBroadcast(metadata: "")))
        #expect(message.payload["meta"] == nil)
        #expect(message.payload["event"] == .string("cursor"))
    }

    @Test("§2.3 kind 4 with a raw binary payload (encoding 0) is skipped")
    func userBroadcastBinaryPayload() throws {
        #expect(try self.v2.decode(binary: Self.userBroadcast(encoding: 0, payload: "\u{1}\u{2}")) == nil)
    }

    @Test("§2.3 kind 1 reply becomes phx_reply {response, status}")
    func replyKind1() throws {
        let frame: [UInt8] =
            [1, 1, 2, 4, 2] + Self.bytes("3") + Self.bytes("12") + Self.bytes("t:ab") + Self.bytes("ok")
            + Self.bytes(#"{"a":true}"#)
        let message = try #require(try self.v2.decode(binary: frame))
        #expect(message.event == .reply)
        #expect(message.joinRef == "3")
        #expect(message.ref == "12")
        #expect(message.topic == "t:ab")
        let reply = try Reply(payload: message.payload)
        #expect(reply.status == .ok)
        #expect(reply.response == .object(["a": .bool(true)]))
    }

    @Test("§2.3 kind 0 push (server layout, no ref) and kind 2 broadcast decode")
    func pushAndBroadcast() throws {
        let push: [UInt8] = [0, 0, 1, 2] + Self.bytes("t") + Self.bytes("ev") + Self.bytes("{}")
        let pushMessage = try #require(try self.v2.decode(binary: push))
        #expect(
            pushMessage
                == PhoenixMessage(joinRef: nil, ref: nil, topic: "t", event: .unknown("ev"), payload: .object([:])))
        let broadcast: [UInt8] = [2, 1, 9] + Self.bytes("t") + Self.bytes("broadcast") + Self.bytes("[1]")
        let broadcastMessage = try #require(try self.v2.decode(binary: broadcast))
        #expect(broadcastMessage.event == .broadcast)
        #expect(broadcastMessage.payload == .array([.number(JSONNumber(1))]))
    }

    @Test("§2.3 kind 3 (client→server only) and unknown kinds are skipped", arguments: [3, 5, 127, 255] as [UInt8])
    func skippedKinds(_ kind: UInt8) throws {
        #expect(try self.v2.decode(binary: [kind, 0, 0, 0, 0, 0]) == nil)
    }

    @Test("§2.3 empty binary frame is an error")
    func empty() throws {
        let error = try #require(throws: RealtimeProtocolError.self) { try self.v2.decode(binary: []) }
        #expect(error.code == .unsupportedBinaryFrame)
    }

    @Test("§2.3 every truncation of a kind 4 and a kind 1 frame: header cuts are errors, payload cuts are skips")
    func truncations() throws {
        // (frame, length of the header plus the length-prefixed fields)
        let frames: [([UInt8], Int)] = [
            (Self.userBroadcast(), 5 + 13 + 6 + 12),
            (
                [1, 1, 2, 4, 2] + Self.bytes("3") + Self.bytes("12") + Self.bytes("t:ab") + Self.bytes("ok")
                    + Self.bytes(#"{"a":1}"#), 5 + 1 + 2 + 4 + 2
            ),
        ]
        for (frame, prefix) in frames {
            #expect(try self.v2.decode(binary: frame) != nil)
            for length in 0..<frame.count {
                let cut = Array(frame[0..<length])
                if length < prefix {
                    let error = try #require(throws: RealtimeProtocolError.self) { try self.v2.decode(binary: cut) }
                    #expect(error.code == .unsupportedBinaryFrame)
                } else {
                    // The payload has no length prefix: a cut payload is not JSON, so the frame is skipped.
                    #expect(try self.v2.decode(binary: cut) == nil)
                }
            }
        }
    }

    @Test("§2.3 lengths past the end of the buffer are errors")
    func lengthsPastEnd() throws {
        let error = try #require(throws: RealtimeProtocolError.self) {
            try self.v2.decode(binary: [4, 200, 1, 0, 1] + Self.bytes("short"))
        }
        #expect(error.code == .unsupportedBinaryFrame)
    }

    @Test("§2.3 a non-UTF-8 topic is an error")
    func nonUTF8Topic() throws {
        let error = try #require(throws: RealtimeProtocolError.self) {
            try self.v2.decode(binary: [2, 1, 1, 0xFF] + Self.bytes("e{}"))
        }
        #expect(error.code == .unsupportedBinaryFrame)
    }

    @Test("§2.3 binary frames under vsn 1.0.0 are an error")
    func binaryUnderV1() throws {
        let error = try #require(throws: RealtimeProtocolError.self) {
            try PhoenixSerializer(version: .v1).decode(binary: Self.userBroadcast())
        }
        #expect(error.code == .unsupportedBinaryFrame)
    }
}
