import NIOConcurrencyHelpers

/// A handshake refusal in force (fault injection).
public struct ConnectionRefusal: Sendable, Hashable {
    /// HTTP status (e.g. 503 or 429).
    public var status: Int
    /// `Retry-After` in whole seconds, if any.
    public var retryAfterSeconds: Int?
    /// The `{"error": …}` text.
    public var message: String

    /// Creates a refusal; the message defaults to the server's text for the status.
    public init(status: Int, retryAfterSeconds: Int? = nil, message: String? = nil) {
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
        self.message = message ?? (status == 429 ? "Too many connected users" : "Error connecting to Realtime")
    }
}

/// A REST failure in force (fault injection).
public struct RESTFailure: Sendable, Hashable {
    /// HTTP status (429, 500, 503…).
    public var status: Int
    /// `Retry-After` in whole seconds, if any.
    public var retryAfterSeconds: Int?

    /// Creates a REST failure.
    public init(status: Int, retryAfterSeconds: Int? = nil) {
        self.status = status
        self.retryAfterSeconds = retryAfterSeconds
    }
}

/// An oversized answer to table reads (fault injection): what a broken server or proxy might send.
public enum OversizedRESTBody: Sendable, Hashable {
    /// `200` with a chunked body (no `Content-Length`) that never ends: `[` then spaces until the client hangs up.
    case endless
    /// `200` with `Content-Length: bytes` (at least 2) and that many bytes: `[`, spaces, `]` (a valid empty array).
    case declared(bytes: Int)
}

/// Current fault settings, shared by every connection and request.
struct FaultSettings: Sendable {
    var refusal: ConnectionRefusal?
    var systemOkDelay: Duration?
    var withholdSystemOk = false
    var forcedJoinError: ForcedJoinError?
    var heartbeat: HeartbeatReplyMode = .normal
    var changeDropFraction = 0.0
    var changeDelay: Duration = .zero
    var restFailure: RESTFailure?
    var restLatency: Duration = .zero
    var restIgnoresQuery = false
    var oversizedRESTBody: OversizedRESTBody?
    var maxRecordBytesOverride: Int?
    var tokensRevokedAtOrBefore: Int64?
    var broadcastDropFraction = 0.0
    var broadcastsRateLimited = false
    var broadcastReadRule: BroadcastReadRule?
    var replicationReadyDelay: Duration?
    var withholdReplicationReady = false
    /// What the faults did so far; kept across ``SupabaseLocalFaults/reset()``.
    var statistics = FaultStatistics()
}

/// What the injected faults of a ``SupabaseLocalStack`` did, counted since it started, so a test can prove that
/// its fault fired (``SupabaseLocalFaults/statistics``).
public struct FaultStatistics: Sendable, Hashable {
    /// Sockets closed by ``SupabaseLocalFaults/dropAllConnections(code:reason:)`` or a restart.
    public var socketsDropped = 0
    /// Sockets stalled by ``SupabaseLocalFaults/stall(for:)``.
    public var socketsStalled = 0
    /// WebSocket handshakes refused by ``SupabaseLocalFaults/refuseConnections(_:for:)``.
    public var handshakesRefused = 0
    /// REST and status-endpoint requests failed by ``SupabaseLocalFaults/failREST(_:)``.
    public var restRequestsFailed = 0
    /// Table reads answered while ``SupabaseLocalFaults/ignoreRESTQueries(_:)`` was on.
    public var restQueriesIgnored = 0
    /// Table reads answered with an oversized body by ``SupabaseLocalFaults/sendOversizedRESTBodies(_:)``.
    public var oversizedRESTBodies = 0
    /// Body bytes written for those answers before they ended or the client hung up (a client that stops
    /// reading at its cap keeps this far below what an endless body would otherwise reach).
    public var oversizedRESTBodyBytesSent = 0
    /// Those answers the client hung up on before their end (it closed the connection).
    public var oversizedRESTBodiesAbandoned = 0
    /// Sockets told that their tokens expired (``SupabaseLocalFaults/expireTokens()``).
    public var tokenExpiryNotices = 0
    /// Sockets whose channels crashed (``SupabaseLocalFaults/crashChannels()``).
    public var channelCrashes = 0
    /// Changes dropped before fan-out (``SupabaseLocalFaults/dropChanges(fraction:)``).
    public var changesDropped = 0
    /// Changes fanned out.
    public var changesDelivered = 0
    /// Changes held back by ``SupabaseLocalFaults/delayChanges(by:)``.
    public var changesDelayed = 0
    /// Committed broadcasts lost before fan-out (``SupabaseLocalFaults/dropBroadcasts(fraction:)``); still stored
    /// and replayable (broadcast-from-database.md §B6).
    public var broadcastsDropped = 0
    /// Committed broadcasts dropped at the source by ``SupabaseLocalFaults/rateLimitBroadcasts(_:)`` (§B6).
    public var broadcastsRateLimited = 0
    /// Channels closed with `Too many messages per second` by that fault (§B6).
    public var broadcastChannelsRateLimited = 0
    /// Committed broadcasts fanned out to sockets.
    public var broadcastsDelivered = 0
    /// Private joins and token refreshes refused by a read rule set with
    /// ``SupabaseLocalFaults/setBroadcastReadRule(_:)`` (§B2).
    public var broadcastReadsRefusedByRule = 0
    /// Joins whose replication connection was withheld by ``SupabaseLocalFaults/withholdReplicationReady(_:)``.
    public var replicationReadyWithheld = 0

    /// Creates empty statistics.
    public init() {}
}

/// Inputs a connection's driver receives from the outside (reader, timers, hub, faults).
enum ConnectionInput: Sendable {
    case text(String)
    case activity
    case ping([UInt8])
    case peerClosed(code: UInt16?)
    case inboundEnded
    case timer(RealtimeSession.TimerID)
    case idleCheck
    case change(TableChange)
    /// A committed broadcast to fan out (§B4).
    case broadcast(BroadcastRow)
    /// A committed broadcast dropped by the rate limit: its receivers are shut down (§B6).
    case broadcastRateLimited(BroadcastRow)
    /// The outcome of a read check the session asked for (§B2).
    case authorized(topic: String, generation: Int, outcome: AuthorizationOutcome)
    /// Drop the socket: with a close frame when `code` is set, abruptly otherwise.
    case drop(code: UInt16?, reason: String)
    case stall(Duration)
    case expireTokens
    case crashChannels
    /// Benchmark frames to render and write in batches (``SupabaseLocalStack/replay(_:batch:)``).
    case frameBurst(FrameBurst)
}

/// The live sockets, for fan-out and faults.
final class ConnectionRegistry: Sendable {
    private struct State {
        var connections: [Int: AsyncStream<ConnectionInput>.Continuation] = [:]
        var next = 0
        var accepted = 0
    }

    private let state = NIOLockedValueBox(State())

    func add(_ continuation: AsyncStream<ConnectionInput>.Continuation) -> Int {
        self.state.withLockedValue { state in
            let id = state.next
            state.next += 1
            state.accepted += 1
            state.connections[id] = continuation
            return id
        }
    }

    func remove(_ id: Int) {
        _ = self.state.withLockedValue { $0.connections.removeValue(forKey: id) }
    }

    /// Sends `input` to every open connection; returns how many it reached.
    @discardableResult
    func broadcast(_ input: ConnectionInput) -> Int {
        self.broadcast { input }
    }

    /// Sends each open connection an input of its own, made by `makeInput`; returns how many it reached.
    @discardableResult
    func broadcast(_ makeInput: () -> ConnectionInput) -> Int {
        let all = self.state.withLockedValue { Array($0.connections.values) }
        for continuation in all { continuation.yield(makeInput()) }
        return all.count
    }

    var count: Int { self.state.withLockedValue { $0.connections.count } }
    var acceptedTotal: Int { self.state.withLockedValue { $0.accepted } }
}
