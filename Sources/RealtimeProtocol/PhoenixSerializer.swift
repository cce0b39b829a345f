package import JobSyncCore

/// The Phoenix serializer version negotiated with the `vsn` query parameter (§1.2).
public enum ProtocolVersion: String, Hashable, Sendable, CaseIterable {
    /// `1.0.0`: JSON objects, text frames only (§2.1). The server's default when `vsn` is absent.
    case v1 = "1.0.0"
    /// `2.0.0`: 5-element JSON arrays, plus binary broadcast frames (§2.2, §2.3).
    case v2 = "2.0.0"
}

/// Encodes and decodes Phoenix frames for one ``ProtocolVersion``.
///
/// Decoding never traps: malformed frames produce a `RealtimeProtocolError`, and binary frames of kinds this
/// client has no use for produce `nil` (a skip the caller should count).
package struct PhoenixSerializer: Hashable, Sendable {
    /// The wire version.
    public var version: ProtocolVersion
    /// The deepest JSON nesting accepted in a frame.
    public var maxDepth: Int

    /// Creates a serializer.
    public init(version: ProtocolVersion, maxDepth: Int = JSONValue.defaultMaxDepth) {
        self.version = version
        self.maxDepth = maxDepth
    }

    // MARK: Text frames

    /// Decodes a text frame.
    /// - Throws: `RealtimeProtocolError`: `.malformedJSON`/`.nestingTooDeep` for bad JSON, `.malformedFrame` for
    ///   JSON that is not a frame of this version.
    public func decode(text: String) throws(RealtimeProtocolError) -> PhoenixMessage {
        try self.decode(frame: try JSONValue.parseFrame(text.utf8, maxDepth: self.maxDepth))
    }

    /// Decodes a text frame given as UTF-8 bytes.
    public func decode(textBytes: some Collection<UInt8>) throws(RealtimeProtocolError) -> PhoenixMessage {
        try self.decode(frame: try JSONValue.parseFrame(textBytes, maxDepth: self.maxDepth))
    }

    /// Interprets an already parsed JSON text frame.
    public func decode(frame: JSONValue) throws(RealtimeProtocolError) -> PhoenixMessage {
        switch self.version {
        case .v1: try Self.decodeV1(frame)
        case .v2: try Self.decodeV2(frame)
        }
    }

    // §2.2: an array of at least 5 elements; elements past the fifth are ignored, as the server does.
    private static func decodeV2(_ frame: JSONValue) throws(RealtimeProtocolError) -> PhoenixMessage {
        guard case .array(let elements) = frame else {
            throw RealtimeProtocolError(.malformedFrame, "vsn 2.0.0 frame is \(frame.typeName), expected array")
        }
        guard elements.count >= 5 else {
            throw RealtimeProtocolError(
                .malformedFrame, "vsn 2.0.0 frame has \(elements.count) elements, expected 5")
        }
        return PhoenixMessage(
            joinRef: try Self.ref(elements[0], name: "join_ref"),
            ref: try Self.ref(elements[1], name: "ref"),
            topic: Topic(rawValue: try Self.string(elements[2], name: "topic")),
            event: PhoenixEvent(rawValue: try Self.string(elements[3], name: "event")),
            payload: elements[4]
        )
    }

    // §2.1: {topic, event, payload, ref}, join_ref optional. A missing `ref` is read as null.
    private static func decodeV1(_ frame: JSONValue) throws(RealtimeProtocolError) -> PhoenixMessage {
        guard case .object(let object) = frame else {
            throw RealtimeProtocolError(.malformedFrame, "vsn 1.0.0 frame is \(frame.typeName), expected object")
        }
        guard let topic = object["topic"] else {
            throw RealtimeProtocolError(.malformedFrame, "vsn 1.0.0 frame has no 'topic'")
        }
        guard let event = object["event"] else {
            throw RealtimeProtocolError(.malformedFrame, "vsn 1.0.0 frame has no 'event'")
        }
        guard let payload = object["payload"] else {
            throw RealtimeProtocolError(.malformedFrame, "vsn 1.0.0 frame has no 'payload'")
        }
        return PhoenixMessage(
            joinRef: try Self.ref(object["join_ref"] ?? .null, name: "join_ref"),
            ref: try Self.ref(object["ref"] ?? .null, name: "ref"),
            topic: Topic(rawValue: try Self.string(topic, name: "topic")),
            event: PhoenixEvent(rawValue: try Self.string(event, name: "event")),
            payload: payload
        )
    }

    private static func ref(_ value: JSONValue, name: String) throws(RealtimeProtocolError) -> Ref? {
        switch value {
        case .null: return nil
        case .string(let text): return Ref(rawValue: text)
        default:
            throw RealtimeProtocolError(.malformedFrame, "'\(name)' is \(value.typeName), expected string or null")
        }
    }

    private static func string(_ value: JSONValue, name: String) throws(RealtimeProtocolError) -> String {
        guard case .string(let text) = value else {
            throw RealtimeProtocolError(.malformedFrame, "'\(name)' is \(value.typeName), expected string")
        }
        return text
    }

    /// Encodes a message as a text frame: the V2 array `[join_ref,ref,topic,event,payload]`, or the V1 object
    /// `{"topic","event","payload","ref","join_ref"}` with both ref keys always present (null when absent).
    public func encode(_ message: PhoenixMessage) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(128)
        self.encode(message, into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Encodes a message as text-frame bytes (see ``encode(_:)``).
    public func encode(_ message: PhoenixMessage, into output: inout [UInt8]) {
        let joinRef: JSONValue = message.joinRef.map { .string($0.rawValue) } ?? .null
        let ref: JSONValue = message.ref.map { .string($0.rawValue) } ?? .null
        switch self.version {
        case .v2:
            JSONValue.array([
                joinRef, ref, .string(message.topic.rawValue), .string(message.event.rawValue), message.payload,
            ]).serialize(into: &output)
        case .v1:
            JSONValue.object([
                "topic": .string(message.topic.rawValue),
                "event": .string(message.event.rawValue),
                "payload": message.payload,
                "ref": ref,
                "join_ref": joinRef,
            ]).serialize(into: &output)
        }
    }

    // MARK: Client pushes

    /// A heartbeat (§3): topic `phoenix`, event `heartbeat`, payload `{}`, join_ref null.
    public static func heartbeat(ref: Ref) -> PhoenixMessage {
        PhoenixMessage(joinRef: nil, ref: ref, topic: .phoenix, event: .heartbeat, payload: .object([:]))
    }

    /// A `phx_join` (§4.2). Phoenix sends the join with `ref == join_ref`; pass a different `ref` only if needed.
    public static func join(topic: Topic, joinRef: Ref, ref: Ref? = nil, payload: JoinPayload) -> PhoenixMessage {
        PhoenixMessage(joinRef: joinRef, ref: ref ?? joinRef, topic: topic, event: .join, payload: payload.jsonValue)
    }

    /// A `phx_leave` (§9.1), payload `{}`.
    public static func leave(topic: Topic, joinRef: Ref, ref: Ref) -> PhoenixMessage {
        PhoenixMessage(joinRef: joinRef, ref: ref, topic: topic, event: .leave, payload: .object([:]))
    }

    /// An `access_token` push (§8.1), payload `{"access_token": token}`. The server does not reply on success.
    public static func accessToken(topic: Topic, joinRef: Ref, ref: Ref, token: String) -> PhoenixMessage {
        PhoenixMessage(
            joinRef: joinRef, ref: ref, topic: topic, event: .accessToken, payload: accessTokenPayload(token))
    }
}
