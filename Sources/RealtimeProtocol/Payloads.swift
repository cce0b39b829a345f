// Typed views over the JSON payloads of realtime-protocol.md §4 (join, replies, system messages).
// Decoders tolerate extra keys and report missing keys or wrong types as `RealtimeProtocolError`.

public import JobSyncCore

// MARK: - Bindings (§4.2, §4.3)

/// Which row events a `postgres_changes` binding asks for (§4.2). Encoded upper-case; `*` means all.
public enum PostgresChangeEvent: String, Hashable, Sendable, CaseIterable, CustomStringConvertible {
    /// `"*"`: INSERT, UPDATE and DELETE.
    case all = "*"
    /// `"INSERT"`.
    case insert = "INSERT"
    /// `"UPDATE"`.
    case update = "UPDATE"
    /// `"DELETE"`.
    case delete = "DELETE"

    /// Parses a wire value case-insensitively, as the server does (§4.2). Unknown values give `nil`.
    public init?(wireValue: String) {
        switch wireValue.uppercased() {
        case "*": self = .all
        case "INSERT": self = .insert
        case "UPDATE": self = .update
        case "DELETE": self = .delete
        default: return nil
        }
    }

    /// Whether a change of the given type is selected by this event (`*` selects every type).
    public func matches(_ type: ChangeType) -> Bool {
        switch (self, type) {
        case (.all, _), (.insert, .insert), (.update, .update), (.delete, .delete): true
        default: false
        }
    }

    /// The wire value.
    public var description: String { self.rawValue }
}

/// One entry of `config.postgres_changes` in a join payload (§4.2).
public struct PostgresChangeBinding: Hashable, Sendable {
    /// The row events wanted.
    public var event: PostgresChangeEvent
    /// The schema, e.g. `public`.
    public var schema: String
    /// The table, e.g. `jobs`.
    public var table: String
    /// A PostgREST-style filter such as `id=in.(…)` (§6), or `nil` for none. `nil` is encoded by omitting the
    /// key: an explicit `"filter": null` makes the server report a subscription error (§15.6).
    public var filter: String?

    /// Creates a binding.
    public init(event: PostgresChangeEvent, schema: String, table: String, filter: String? = nil) {
        self.event = event
        self.schema = schema
        self.table = table
        self.filter = filter
    }

    /// The exact wire object: `{"event":…,"schema":…,"table":…[,"filter":…]}`.
    public var jsonValue: JSONValue {
        var object: JSONObject = [
            "event": .string(self.event.rawValue),
            "schema": .string(self.schema),
            "table": .string(self.table),
        ]
        if let filter = self.filter {
            object["filter"] = .string(filter)
        }
        return .object(object)
    }
}

// MARK: - Join payload (§4.2)

/// Builder for a `phx_join` payload (§4.2). Defaults match what realtime-js sends.
package struct JoinPayload: Hashable, Sendable {
    /// `config.broadcast.ack`.
    public var broadcastAck: Bool
    /// `config.broadcast.self`.
    public var broadcastSelf: Bool
    /// `config.presence.key`; empty lets the server pick one.
    public var presenceKey: String
    /// `config.presence.enabled`.
    public var presenceEnabled: Bool
    /// `config.postgres_changes`, in the order the server will echo them.
    public var postgresChanges: [PostgresChangeBinding]
    /// `config.private`.
    public var isPrivate: Bool
    /// `config.broadcast.replay` (broadcast-from-database.md §B3, §B5), or `nil` to omit it.
    public var broadcastReplay: BroadcastReplayOption?
    /// `config.broadcast.replication_ready: true` when set (§B3); omitted otherwise.
    public var broadcastReplicationReady: Bool
    /// The user JWT (`access_token`); omitted when `nil`. Never log it.
    public var accessToken: String?

    /// Creates a join payload.
    public init(
        postgresChanges: [PostgresChangeBinding] = [],
        accessToken: String? = nil,
        isPrivate: Bool = false,
        broadcastAck: Bool = false,
        broadcastSelf: Bool = false,
        presenceKey: String = "",
        presenceEnabled: Bool = false,
        broadcastReplay: BroadcastReplayOption? = nil,
        broadcastReplicationReady: Bool = false
    ) {
        self.broadcastReplay = broadcastReplay
        self.broadcastReplicationReady = broadcastReplicationReady
        self.postgresChanges = postgresChanges
        self.accessToken = accessToken
        self.isPrivate = isPrivate
        self.broadcastAck = broadcastAck
        self.broadcastSelf = broadcastSelf
        self.presenceKey = presenceKey
        self.presenceEnabled = presenceEnabled
    }

    /// The payload in the key order of §4.2:
    /// `{"config":{"broadcast":{"ack","self"[,"replay":{"since"[,"limit"]}][,"replication_ready":true]},
    /// "presence":{"key","enabled"},"postgres_changes":[…],"private"}[,"access_token"]}` (§B3 for the broadcast
    /// members).
    public var jsonValue: JSONValue {
        var broadcast: JSONObject = ["ack": .bool(self.broadcastAck), "self": .bool(self.broadcastSelf)]
        if let replay = self.broadcastReplay {
            broadcast["replay"] = replay.jsonValue
        }
        if self.broadcastReplicationReady {
            broadcast["replication_ready"] = .bool(true)
        }
        let config: JSONObject = [
            "broadcast": .object(broadcast),
            "presence": .object(["key": .string(self.presenceKey), "enabled": .bool(self.presenceEnabled)]),
            "postgres_changes": .array(self.postgresChanges.map(\.jsonValue)),
            "private": .bool(self.isPrivate),
        ]
        var payload: JSONObject = ["config": .object(config)]
        if let accessToken = self.accessToken {
            payload["access_token"] = .string(accessToken)
        }
        return .object(payload)
    }
}

/// The payload of a client `access_token` push (§8.1): `{"access_token": <token>}`.
public func accessTokenPayload(_ token: String) -> JSONValue {
    .object(["access_token": .string(token)])
}

// MARK: - Replies (§3, §4.3, §4.4, §9.1)

/// The `status` of a reply or of a `system` message.
package enum ReplyStatus: Hashable, Sendable, CustomStringConvertible {
    /// `"ok"`.
    case ok
    /// `"error"`.
    case error
    /// Any other value, kept verbatim.
    case other(String)

    /// Parses the wire value (exact, lower-case).
    public init(rawValue: String) {
        switch rawValue {
        case "ok": self = .ok
        case "error": self = .error
        default: self = .other(rawValue)
        }
    }

    /// The wire value.
    public var rawValue: String {
        switch self {
        case .ok: "ok"
        case .error: "error"
        case .other(let value): value
        }
    }

    /// The wire value.
    public var description: String { self.rawValue }
}

/// A decoded `phx_reply` payload: `{"response": …, "status": …}`.
package struct Reply: Hashable, Sendable {
    /// The reply status.
    public var status: ReplyStatus
    /// The `response` member; an empty object when the server sent none.
    public var response: JSONValue

    /// Creates a reply.
    public init(status: ReplyStatus, response: JSONValue = .object([:])) {
        self.status = status
        self.response = response
    }

    /// Decodes the payload of a `phx_reply` message.
    /// - Throws: `RealtimeProtocolError` (`.unexpectedType`, `.missingField`) if the payload is not an object
    ///   with a string `status`.
    public init(payload: JSONValue) throws(RealtimeProtocolError) {
        let object = try payload.requireObject("phx_reply payload")
        self.status = ReplyStatus(rawValue: try object.requiredString("status", in: "phx_reply payload"))
        self.response = object["response"] ?? .object([:])
    }

    /// The error reason of an `error` reply (`response.reason`, §4.4), or `nil`.
    public var errorReason: ErrorReason? {
        guard self.status == .error, let reason = self.response["reason"]?.stringValue else { return nil }
        return ErrorReason(reason)
    }

    /// The exact wire payload `{"response":…,"status":…}`.
    public var jsonValue: JSONValue {
        .object(["response": self.response, "status": .string(self.status.rawValue)])
    }
}

/// One binding echoed by the server in a successful join reply (§4.3), with the id it assigned.
package struct ServerBinding: Hashable, Sendable {
    /// The binding id (`phash2` of the binding map, in `[0, 2^27)`), used by `postgres_changes.ids` (§5.5).
    public var id: Int
    /// The echoed event, parsed case-insensitively; `nil` if absent or not a known event.
    public var event: PostgresChangeEvent?
    /// The echoed schema, if any.
    public var schema: String?
    /// The echoed table, if any.
    public var table: String?
    /// The echoed filter, if any (`null` and absent are the same).
    public var filter: String?

    /// Creates a server binding.
    public init(
        id: Int, event: PostgresChangeEvent?, schema: String?, table: String?, filter: String? = nil
    ) {
        self.id = id
        self.event = event
        self.schema = schema
        self.table = table
        self.filter = filter
    }

    /// Decodes one entry of `response.postgres_changes`. The id may be a JSON integer or a decimal string.
    public init(json: JSONValue) throws(RealtimeProtocolError) {
        let context = "join reply binding"
        let object = try json.requireObject(context)
        guard let idValue = object["id"] else {
            throw RealtimeProtocolError(.missingField, "\(context): missing field 'id'")
        }
        guard let id = idValue.lenientInt, id >= 0 else {
            throw RealtimeProtocolError(
                .unexpectedType, "\(context): field 'id' is not a non-negative integer (\(idValue.typeName))")
        }
        self.id = id
        self.event = try object.optionalString("event", in: context).flatMap(PostgresChangeEvent.init(wireValue:))
        self.schema = try object.optionalString("schema", in: context)
        self.table = try object.optionalString("table", in: context)
        self.filter = try object.optionalString("filter", in: context)
    }

    /// Whether this echo matches a client binding the way realtime-js checks it (§4.3): same event
    /// (case-insensitive), schema, table and filter, with `null` and absent filters equal.
    public func matches(_ binding: PostgresChangeBinding) -> Bool {
        self.event == binding.event && self.schema == binding.schema && self.table == binding.table
            && self.filter == binding.filter
    }
}

/// The `response` of a successful join reply (§4.3).
package struct JoinReply: Hashable, Sendable {
    /// The accepted bindings in request order, each with its server id.
    public var postgresChanges: [ServerBinding]

    /// Creates a join reply.
    public init(postgresChanges: [ServerBinding]) {
        self.postgresChanges = postgresChanges
    }

    /// Decodes the `response` object of an `ok` join reply. A missing or `null` `postgres_changes` means no
    /// bindings.
    public init(response: JSONValue) throws(RealtimeProtocolError) {
        let object = try response.requireObject("join reply response")
        let entries = try object.optionalArray("postgres_changes", in: "join reply response") ?? []
        var bindings: [ServerBinding] = []
        bindings.reserveCapacity(entries.count)
        for entry in entries {
            bindings.append(try ServerBinding(json: entry))
        }
        self.postgresChanges = bindings
    }

    /// Whether the echo matches the request positionally (§4.3): same count and each entry `matches`.
    public func matches(_ requested: [PostgresChangeBinding]) -> Bool {
        self.postgresChanges.count == requested.count
            && zip(self.postgresChanges, requested).allSatisfy { $0.matches($1) }
    }
}

// MARK: - System messages (§4.5)

/// A decoded `system` push (§4.5): `{"channel","extension","message","status"}`.
package struct SystemMessage: Hashable, Sendable {
    /// The sub-topic without the `realtime:` prefix; empty if absent.
    public var channel: String
    /// `postgres_changes`, `system`, …; empty if absent.
    public var `extension`: String
    /// `ok` or `error`.
    public var status: ReplyStatus
    /// Human-readable text, e.g. `Subscribed to PostgreSQL`; empty if absent.
    public var message: String

    /// Creates a system message.
    public init(channel: String, extension: String, status: ReplyStatus, message: String) {
        self.channel = channel
        self.extension = `extension`
        self.status = status
        self.message = message
    }

    /// Decodes a `system` payload. Only `status` is required; other fields default to empty.
    public init(payload: JSONValue) throws(RealtimeProtocolError) {
        let context = "system payload"
        let object = try payload.requireObject(context)
        self.status = ReplyStatus(rawValue: try object.requiredString("status", in: context))
        self.channel = try object.optionalString("channel", in: context) ?? ""
        self.extension = try object.optionalString("extension", in: context) ?? ""
        self.message = try Self.messageText(object["message"])
    }

    // `message` is normally a string, but some server paths put an inspected term there; keep any scalar as text.
    private static func messageText(_ value: JSONValue?) throws(RealtimeProtocolError) -> String {
        switch value {
        case .none, .null?: return ""
        case .string(let text)?: return text
        case .number(let number)?: return number.text
        case .bool(let flag)?: return flag ? "true" : "false"
        case .array?, .object?:
            throw RealtimeProtocolError(.unexpectedType, "system payload: field 'message' is not a string")
        }
    }

    /// `extension == "postgres_changes"` and `status == ok`: the subscription is live (§4.5).
    public var isPostgresChangesOK: Bool {
        self.extension == "postgres_changes" && self.status == .ok
    }

    /// `extension == "postgres_changes"` and `status == error`: the bindings failed; the channel stays open.
    public var isPostgresChangesError: Bool {
        self.extension == "postgres_changes" && self.status == .error
    }

    /// `extension == "system"` and `status == ok`: on a channel joined with `replication_ready`, the replication
    /// connection is established ("Replication connection established", broadcast-from-database.md §B3). The text
    /// is not checked, so a reworded message still counts.
    public var isReplicationReady: Bool {
        self.extension == "system" && self.status == .ok
    }

    /// `extension == "system"` and `status == error`: a `phx_close` follows immediately (§4.5, §8.2).
    public var isChannelError: Bool {
        self.extension == "system" && self.status == .error
    }

    /// The message parsed as an error reason (for classification of `error` messages).
    public var errorReason: ErrorReason { ErrorReason(self.message) }

    /// The wire payload, keys in server (alphabetical) order.
    public var jsonValue: JSONValue {
        .object([
            "channel": .string(self.channel),
            "extension": .string(self.extension),
            "message": .string(self.message),
            "status": .string(self.status.rawValue),
        ])
    }
}
