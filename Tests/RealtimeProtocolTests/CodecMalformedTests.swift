import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Malformed text frames: each gives a typed error, never a crash.
@Suite("Codec: malformed text frames")
struct CodecMalformedTests {
    struct Bad: CustomTestStringConvertible, Sendable {
        var version: ProtocolVersion
        var frame: String
        var code: RealtimeProtocolError.Code
        var testDescription: String { "vsn \(self.version.rawValue): \(self.frame.prefix(40))" }
    }

    static let bad: [Bad] = [
        // Not JSON / empty.
        Bad(version: .v2, frame: "", code: .malformedJSON),
        Bad(version: .v1, frame: "", code: .malformedJSON),
        Bad(version: .v2, frame: "hello", code: .malformedJSON),
        Bad(version: .v2, frame: #"[null,"1","phoenix","heartbeat",{}"#, code: .malformedJSON),
        Bad(version: .v1, frame: #"{"topic":"phoenix""#, code: .malformedJSON),
        // §2.2 wrong arity or not an array.
        Bad(version: .v2, frame: "[]", code: .malformedFrame),
        Bad(version: .v2, frame: #"[null,"1","phoenix","heartbeat"]"#, code: .malformedFrame),
        Bad(
            version: .v2, frame: #"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"1"}"#,
            code: .malformedFrame),
        Bad(version: .v2, frame: "null", code: .malformedFrame),
        Bad(version: .v2, frame: "42", code: .malformedFrame),
        // §2.2 wrong element types.
        Bad(version: .v2, frame: #"[1,"1","phoenix","heartbeat",{}]"#, code: .malformedFrame),
        Bad(version: .v2, frame: #"[null,26,"phoenix","heartbeat",{}]"#, code: .malformedFrame),
        Bad(version: .v2, frame: #"[null,"1",null,"heartbeat",{}]"#, code: .malformedFrame),
        Bad(version: .v2, frame: #"[null,"1","phoenix",["heartbeat"],{}]"#, code: .malformedFrame),
        Bad(version: .v2, frame: #"[null,"1","phoenix",true,{}]"#, code: .malformedFrame),
        // §2.1 missing keys or wrong types.
        Bad(version: .v1, frame: "[]", code: .malformedFrame),
        Bad(version: .v1, frame: #"{"event":"heartbeat","payload":{},"ref":"1"}"#, code: .malformedFrame),
        Bad(version: .v1, frame: #"{"topic":"phoenix","payload":{},"ref":"1"}"#, code: .malformedFrame),
        Bad(version: .v1, frame: #"{"topic":"phoenix","event":"heartbeat","ref":"1"}"#, code: .malformedFrame),
        Bad(version: .v1, frame: #"{"topic":1,"event":"heartbeat","payload":{},"ref":"1"}"#, code: .malformedFrame),
        Bad(version: .v1, frame: #"{"topic":"p","event":"heartbeat","payload":{},"ref":7}"#, code: .malformedFrame),
        Bad(
            version: .v1, frame: #"{"topic":"p","event":"e","payload":{},"ref":null,"join_ref":{}}"#,
            code: .malformedFrame),
        // Deep nesting inside a frame.
        Bad(
            version: .v2,
            frame: #"[null,null,"t","e","# + String(repeating: "[", count: 600) + String(repeating: "]", count: 600)
                + "]",
            code: .nestingTooDeep),
        // Lone surrogate in a topic.
        Bad(version: .v2, frame: #"[null,null,"\ud800","e",{}]"#, code: .malformedJSON),
    ]

    @Test("§2.1/§2.2 malformed frames give typed errors", arguments: bad)
    func malformed(_ bad: Bad) throws {
        let error = try #require(throws: RealtimeProtocolError.self) {
            try PhoenixSerializer(version: bad.version).decode(text: bad.frame)
        }
        #expect(error.code == bad.code)
    }

    @Test("§2.2 frames with more than 5 elements are accepted (first five used), as the server does")
    func extraElements() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: #"[null,"1","phoenix","heartbeat",{},"x",7]"#)
        #expect(message == PhoenixSerializer.heartbeat(ref: "1"))
    }

    @Test("§2.2 payload may be any JSON value")
    func nonObjectPayload() throws {
        let message = try PhoenixSerializer(version: .v2).decode(text: #"[null,null,"t","e",[1,"two"]]"#)
        #expect(message.payload == .array([.number(JSONNumber(1)), .string("two")]))
    }

    @Test("§2.1 a V1 frame without ref reads ref as nil; a join_ref, if present, is kept")
    func v1Lenient() throws {
        let serializer = PhoenixSerializer(version: .v1)
        let noRef = try serializer.decode(text: #"{"topic":"t","event":"e","payload":{}}"#)
        #expect(noRef.ref == nil)
        #expect(noRef.joinRef == nil)
        let withJoinRef = try serializer.decode(
            text: #"{"topic":"t","event":"e","payload":{},"ref":"5","join_ref":"4"}"#)
        #expect(withJoinRef.joinRef == "4")
        #expect(withJoinRef.ref == "5")
    }

    @Test("unknown events are kept as .unknown", arguments: ["presence_track", "PHX_JOIN", "", "INSERT", "événement"])
    func unknownEvent(_ name: String) throws {
        let text = JSONValue.array([.null, .null, .string("realtime:x"), .string(name), .object([:])]).serialized()
        let message = try PhoenixSerializer(version: .v2).decode(text: text)
        #expect(message.event == .unknown(name))
        #expect(message.event.rawValue == name)
    }

    @Test(
        "known events map to their cases and back",
        arguments: [
            "phx_join", "phx_leave", "phx_reply", "phx_close", "phx_error", "heartbeat", "system", "postgres_changes",
            "broadcast", "presence_state", "presence_diff", "access_token",
        ])
    func knownEvent(_ name: String) {
        let event = PhoenixEvent(rawValue: name)
        #expect(event != .unknown(name))
        #expect(event.rawValue == name)
    }

    @Test("decode from UTF-8 bytes equals decode from String")
    func bytesAndStringAgree() throws {
        let serializer = PhoenixSerializer(version: .v2)
        let text = CodecFrameTests.insertFrame
        #expect(try serializer.decode(textBytes: Array(text.utf8)) == serializer.decode(text: text))
    }

    @Test("truncations of every documented frame give a typed error, never a crash")
    func everyTruncation() {
        for testCase in CodecFrameTests.cases {
            let bytes = Array(testCase.frame.utf8)
            let serializer = PhoenixSerializer(version: testCase.version)
            for length in 0..<bytes.count {
                #expect(throws: RealtimeProtocolError.self) { try serializer.decode(textBytes: bytes[0..<length]) }
            }
        }
    }

    @Test("frame errors are safe to print: they never contain payload values")
    func errorsAreSafe() throws {
        let error = try #require(throws: RealtimeProtocolError.self) {
            try PhoenixSerializer(version: .v2).decode(text: #"["eyJhbGciOi.secret",7,"t","e",{}]"#)
        }
        #expect(!error.description.contains("eyJ"))
        #expect(error.description.hasPrefix("malformedFrame: "))
    }
}
