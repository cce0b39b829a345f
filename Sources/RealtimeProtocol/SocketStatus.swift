/// Why the socket went down.
public enum SocketDisconnectReason: Sendable, Hashable {
    /// The transport closed; `code` is nil when it was lost without a close frame.
    case closed(code: UInt16?, reason: String)
    /// The connection could not be opened or failed (message safe to print).
    case connectFailed(String)
    /// The server refused the WebSocket upgrade with this HTTP status (§1.3).
    case handshakeRejected(status: Int)
    /// No heartbeat reply in time (§3); the client closed with 1000 "heartbeat timeout".
    case heartbeatTimeout
    /// The client asked to disconnect.
    case requested
}

/// What the socket looks like from outside.
public enum SocketStatus: Sendable, Hashable {
    /// Never connected.
    case idle
    /// Opening a connection; `attempt` is 0 for the first one, then the reconnect attempt.
    case connecting(attempt: Int)
    /// The WebSocket is open.
    case connected
    /// The WebSocket went down (a reconnect may follow).
    case disconnected(SocketDisconnectReason)
    /// A reconnect is scheduled after `delay`.
    case reconnecting(attempt: Int, delay: Duration)
    /// Disconnected for good, after a requested disconnect.
    case closed
}
