package import JobSyncCore

/// A Phoenix channel topic, e.g. `realtime:jobs-sync` or `phoenix`.
package struct Topic: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The topic text.
    public var rawValue: String
    /// Wraps a topic.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// Wraps a literal topic.
    public init(stringLiteral value: String) { self.rawValue = value }
    /// The socket-level topic used by heartbeats.
    public static let phoenix: Topic = "phoenix"
    /// `realtime:<name>`.
    public static func realtime(_ name: String) -> Topic { Topic(rawValue: "realtime:" + name) }
    /// The topic text.
    public var description: String { self.rawValue }
}

/// An opaque message reference (`ref` or `join_ref`). Refs are decimal strings from one per-socket counter.
package struct Ref: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    /// The ref text.
    public var rawValue: String
    /// Wraps a ref.
    public init(rawValue: String) { self.rawValue = rawValue }
    /// Wraps a literal ref.
    public init(stringLiteral value: String) { self.rawValue = value }
    /// The ref text.
    public var description: String { self.rawValue }
}

/// A Phoenix / Realtime event name. Unknown names are kept, never rejected.
package enum PhoenixEvent: Hashable, Sendable, CustomStringConvertible {
    /// `phx_join`, `phx_leave`, `phx_reply`, `phx_close`, `phx_error`, `heartbeat`.
    case join, leave, reply, close, error, heartbeat
    /// `system`, `postgres_changes`, `broadcast`, `presence_state`, `presence_diff`, `access_token`.
    case system, postgresChanges, broadcast, presenceState, presenceDiff, accessToken
    /// Any other event name, kept verbatim.
    case unknown(String)

    /// Maps a wire name to its case (exact match; anything else is `.unknown`).
    public init(rawValue: String) {
        switch rawValue {
        case "phx_join": self = .join
        case "phx_leave": self = .leave
        case "phx_reply": self = .reply
        case "phx_close": self = .close
        case "phx_error": self = .error
        case "heartbeat": self = .heartbeat
        case "system": self = .system
        case "postgres_changes": self = .postgresChanges
        case "broadcast": self = .broadcast
        case "presence_state": self = .presenceState
        case "presence_diff": self = .presenceDiff
        case "access_token": self = .accessToken
        default: self = .unknown(rawValue)
        }
    }

    /// The wire name.
    public var rawValue: String {
        switch self {
        case .join: "phx_join"
        case .leave: "phx_leave"
        case .reply: "phx_reply"
        case .close: "phx_close"
        case .error: "phx_error"
        case .heartbeat: "heartbeat"
        case .system: "system"
        case .postgresChanges: "postgres_changes"
        case .broadcast: "broadcast"
        case .presenceState: "presence_state"
        case .presenceDiff: "presence_diff"
        case .accessToken: "access_token"
        case .unknown(let name): name
        }
    }

    /// The wire name.
    public var description: String { self.rawValue }
}

/// One Phoenix message, independent of the wire version.
package struct PhoenixMessage: Hashable, Sendable {
    /// The join ref of the channel the message belongs to (`nil` for heartbeats, fastlane pushes, and V1 server
    /// frames).
    public var joinRef: Ref?
    /// The message ref (`nil` for server pushes).
    public var ref: Ref?
    /// The topic.
    public var topic: Topic
    /// The event.
    public var event: PhoenixEvent
    /// The payload, usually an object.
    public var payload: JSONValue

    /// Creates a message.
    public init(joinRef: Ref?, ref: Ref?, topic: Topic, event: PhoenixEvent, payload: JSONValue) {
        self.joinRef = joinRef
        self.ref = ref
        self.topic = topic
        self.event = event
        self.payload = payload
    }
}
