/// The Phoenix serializer version a socket negotiated (realtime-protocol.md §1.2, §2).
public enum RealtimeVersion: String, Sendable, Hashable {
    /// JSON objects; server frames carry no `join_ref` (§2.1).
    case v1 = "1.0.0"
    /// JSON 5-arrays `[join_ref, ref, topic, event, payload]` (§2.2).
    case v2 = "2.0.0"
}

/// A decoded client frame. Refs are kept as the JSON the client sent and echoed verbatim.
struct ClientFrame: Equatable {
    var joinRef: LocalJSON
    var ref: LocalJSON
    var topic: String
    var event: String
    var payload: LocalJSON

    /// Decodes a text frame; nil for anything malformed (the caller drops it, §2.2).
    static func decode(_ text: String, version: RealtimeVersion) -> ClientFrame? {
        guard let json = try? LocalJSON(parsing: text) else { return nil }
        switch version {
        case .v2:
            guard let items = json.arrayValue, items.count >= 5,
                let topic = items[2].stringValue, let event = items[3].stringValue
            else { return nil }
            return ClientFrame(joinRef: items[0], ref: items[1], topic: topic, event: event, payload: items[4])
        case .v1:
            // `Message.from_map!` requires topic, event, payload and ref (ref may be null) (§2.1).
            guard let object = json.objectValue, let topic = object["topic"]?.stringValue,
                let event = object["event"]?.stringValue, let payload = object["payload"], let ref = object["ref"]
            else { return nil }
            return ClientFrame(
                joinRef: object["join_ref"] ?? .null, ref: ref, topic: topic, event: event, payload: payload)
        }
    }
}

/// A server frame with its payload already rendered as JSON text (some payloads need a key order that a plain
/// sorted encoder cannot give: the join echo, §15.4, and jsonb-formatted change data, §5.2).
struct ServerFrame: Equatable {
    var joinRef: LocalJSON
    var ref: LocalJSON
    var topic: String
    var event: String
    var payload: String

    /// Encodes the frame for the socket's version (§2.1: V1 frames never carry `join_ref`).
    func encoded(_ version: RealtimeVersion) -> String {
        var out = ""
        switch version {
        case .v2:
            out += "["
            self.joinRef.write(to: &out, style: .compact)
            out += ","
            self.ref.write(to: &out, style: .compact)
            out += ","
            LocalJSON.writeString(self.topic, to: &out)
            out += ","
            LocalJSON.writeString(self.event, to: &out)
            out += "," + self.payload + "]"
        case .v1:
            out += "{\"event\":"
            LocalJSON.writeString(self.event, to: &out)
            out += ",\"payload\":" + self.payload + ",\"ref\":"
            self.ref.write(to: &out, style: .compact)
            out += ",\"topic\":"
            LocalJSON.writeString(self.topic, to: &out)
            out += "}"
        }
        return out
    }

    /// `phx_reply` with status and a response rendered as JSON text.
    static func reply(
        joinRef: LocalJSON, ref: LocalJSON, topic: String, status: String, response: String
    ) -> ServerFrame {
        var payload = "{\"response\":" + response + ",\"status\":"
        LocalJSON.writeString(status, to: &payload)
        payload += "}"
        return ServerFrame(joinRef: joinRef, ref: ref, topic: topic, event: "phx_reply", payload: payload)
    }

    /// An error reply `{"response":{"reason":…},"status":"error"}` (§4.4).
    static func errorReply(joinRef: LocalJSON, ref: LocalJSON, topic: String, reason: String) -> ServerFrame {
        let response = LocalJSON.object(["reason": .string(reason)]).encoded()
        return .reply(joinRef: joinRef, ref: ref, topic: topic, status: "error", response: response)
    }

    /// `system` push (§4.5), join_ref = channel's join ref, ref null.
    static func system(
        joinRef: LocalJSON,
        topic: String,
        channel: String,
        extension name: String,
        message: String,
        status: String
    ) -> ServerFrame {
        let payload = LocalJSON.object([
            "channel": .string(channel),
            "extension": .string(name),
            "message": .string(message),
            "status": .string(status),
        ]).encoded()
        return ServerFrame(joinRef: joinRef, ref: .null, topic: topic, event: "system", payload: payload)
    }

    /// `phx_close` / `phx_error` with ref = join_ref (§9.1).
    static func channelEnd(_ event: String, joinRef: LocalJSON, topic: String) -> ServerFrame {
        ServerFrame(joinRef: joinRef, ref: joinRef, topic: topic, event: event, payload: "{}")
    }
}
