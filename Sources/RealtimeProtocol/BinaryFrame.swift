// Binary frames of vsn 2.0.0 (realtime-protocol.md §2.3).

import JobSyncCore

extension PhoenixSerializer {
    /// The kind byte of a vsn 2.0.0 binary frame (§2.3).
    public enum BinaryKind: UInt8, Hashable, Sendable {
        /// Push (server→client layout has no ref).
        case push = 0
        /// Reply to a push.
        case reply = 1
        /// Broadcast.
        case broadcast = 2
        /// User broadcast push (client→server only).
        case userBroadcastPush = 3
        /// User broadcast (server→client).
        case userBroadcast = 4
    }

    /// Decodes a server→client binary frame (§2.3).
    ///
    /// - Kind 4 (user broadcast) becomes a `broadcast` message whose payload is
    ///   `{"type":"broadcast","event":…,"payload":…,"meta":…}` (`meta` only when metadata is present).
    /// - Kind 1 (reply) becomes `phx_reply` with payload `{"response":…,"status":…}`.
    /// - Kinds 0 and 2 become a message with the frame's event and its payload.
    ///
    /// Payloads must be JSON. Returns `nil` (a skip to count) for kind 3, unknown kinds, and payloads that are
    /// raw binary (kind 4 encoding 0, or bytes that are not JSON), since `JSONValue` cannot carry bytes.
    /// - Throws: `RealtimeProtocolError.Code.unsupportedBinaryFrame` if the frame is empty or truncated (any
    ///   length field runs past the buffer), a string field is not UTF-8, or the version is 1.0.0 (which has no
    ///   binary frames); `.malformedJSON` if kind-4 metadata marked as JSON does not parse.
    public func decode(binary: [UInt8]) throws(RealtimeProtocolError) -> PhoenixMessage? {
        guard self.version == .v2 else {
            throw RealtimeProtocolError(.unsupportedBinaryFrame, "binary frame received under vsn 1.0.0")
        }
        var reader = BinaryReader(bytes: binary)
        let kindByte = try reader.byte()
        guard let kind = BinaryKind(rawValue: UInt8(kindByte)) else { return nil }
        switch kind {
        case .push:
            let joinRefLength = try reader.byte()
            let topicLength = try reader.byte()
            let eventLength = try reader.byte()
            let joinRef = try reader.string(joinRefLength, name: "join_ref")
            let topic = try reader.string(topicLength, name: "topic")
            let event = try reader.string(eventLength, name: "event")
            guard let payload = self.jsonOrNil(reader.rest()) else { return nil }
            return PhoenixMessage(
                joinRef: Self.optionalRef(joinRef), ref: nil, topic: Topic(rawValue: topic),
                event: PhoenixEvent(rawValue: event), payload: payload)
        case .reply:
            let joinRefLength = try reader.byte()
            let refLength = try reader.byte()
            let topicLength = try reader.byte()
            let statusLength = try reader.byte()
            let joinRef = try reader.string(joinRefLength, name: "join_ref")
            let ref = try reader.string(refLength, name: "ref")
            let topic = try reader.string(topicLength, name: "topic")
            let status = try reader.string(statusLength, name: "status")
            guard let response = self.jsonOrNil(reader.rest()) else { return nil }
            return PhoenixMessage(
                joinRef: Self.optionalRef(joinRef), ref: Self.optionalRef(ref), topic: Topic(rawValue: topic),
                event: .reply, payload: .object(["response": response, "status": .string(status)]))
        case .broadcast:
            let topicLength = try reader.byte()
            let eventLength = try reader.byte()
            let topic = try reader.string(topicLength, name: "topic")
            let event = try reader.string(eventLength, name: "event")
            guard let payload = self.jsonOrNil(reader.rest()) else { return nil }
            return PhoenixMessage(
                joinRef: nil, ref: nil, topic: Topic(rawValue: topic), event: PhoenixEvent(rawValue: event),
                payload: payload)
        case .userBroadcastPush:
            return nil
        case .userBroadcast:
            let topicLength = try reader.byte()
            let eventLength = try reader.byte()
            let metadataLength = try reader.byte()
            let encoding = try reader.byte()
            let topic = try reader.string(topicLength, name: "topic")
            let event = try reader.string(eventLength, name: "event")
            let metadata = try reader.bytes(metadataLength)
            guard encoding == 1, let userPayload = self.jsonOrNil(reader.rest()) else { return nil }
            var payload: JSONObject = [
                "type": .string("broadcast"), "event": .string(event), "payload": userPayload,
            ]
            if !metadata.isEmpty {
                payload["meta"] = try JSONValue.parseFrame(metadata, maxDepth: self.maxDepth)
            }
            return PhoenixMessage(
                joinRef: nil, ref: nil, topic: Topic(rawValue: topic), event: .broadcast, payload: .object(payload))
        }
    }

    private func jsonOrNil(_ bytes: ArraySlice<UInt8>) -> JSONValue? {
        try? JSONValue.parse(bytes, maxDepth: self.maxDepth)
    }

    private static func optionalRef(_ text: String) -> Ref? {
        text.isEmpty ? nil : Ref(rawValue: text)
    }
}

/// Bounds-checked cursor over a binary frame.
private struct BinaryReader {
    let bytes: [UInt8]
    var index = 0

    mutating func byte() throws(RealtimeProtocolError) -> Int {
        guard self.index < self.bytes.count else {
            throw RealtimeProtocolError(
                .unsupportedBinaryFrame, "binary frame truncated in header at byte offset \(self.index)")
        }
        defer { self.index += 1 }
        return Int(self.bytes[self.index])
    }

    mutating func bytes(_ count: Int) throws(RealtimeProtocolError) -> ArraySlice<UInt8> {
        guard self.bytes.count - self.index >= count else {
            throw RealtimeProtocolError(
                .unsupportedBinaryFrame,
                "binary frame truncated: field of \(count) bytes at offset \(self.index) exceeds \(self.bytes.count)")
        }
        defer { self.index += count }
        return self.bytes[self.index..<(self.index + count)]
    }

    mutating func string(_ count: Int, name: String) throws(RealtimeProtocolError) -> String {
        let slice = try self.bytes(count)
        guard let text = String(validating: slice, as: UTF8.self) else {
            throw RealtimeProtocolError(.unsupportedBinaryFrame, "binary frame field '\(name)' is not UTF-8")
        }
        return text
    }

    func rest() -> ArraySlice<UInt8> {
        self.bytes[self.index...]
    }
}
