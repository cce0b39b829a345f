/// A Phoenix channel topic, e.g. `realtime:jobs-sync` or `phoenix`.
public struct Topic: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    /// The socket-level topic used by heartbeats.
    public static let phoenix: Topic = "phoenix"
    /// `realtime:<name>`.
    public static func realtime(_ name: String) -> Topic { Topic(rawValue: "realtime:" + name) }
    public var description: String { self.rawValue }
}

/// An opaque message reference (`ref` or `join_ref`). Refs are decimal strings from one per-socket counter.
public struct Ref: RawRepresentable, Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public var rawValue: String
    public init(rawValue: String) { self.rawValue = rawValue }
    public init(stringLiteral value: String) { self.rawValue = value }
    public var description: String { self.rawValue }
}

/// A Phoenix / Realtime event name. Unknown names are kept, never rejected.
public enum PhoenixEvent: Hashable, Sendable, CustomStringConvertible {
    case join, leave, reply, close, error, heartbeat
    case system, postgresChanges, broadcast, presenceState, presenceDiff, accessToken
    case unknown(String)

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

    public var description: String { self.rawValue }
}

/// One Phoenix message, independent of the wire version.
public struct PhoenixMessage: Hashable, Sendable {
    public var joinRef: Ref?
    public var ref: Ref?
    public var topic: Topic
    public var event: PhoenixEvent
    public var payload: JSONValue

    public init(joinRef: Ref?, ref: Ref?, topic: Topic, event: PhoenixEvent, payload: JSONValue) {
        self.joinRef = joinRef
        self.ref = ref
        self.topic = topic
        self.event = event
        self.payload = payload
    }
}
