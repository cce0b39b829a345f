package import JobSyncCore

/// The connection lifecycle of one Realtime socket: connect, heartbeat, heartbeat timeout, reconnect with backoff.
///
/// A synchronous value with no I/O and no clock: the driver feeds it events (with the current time as a `Duration`
/// since any fixed origin, e.g. the driver's start) and executes the returned actions in order. Timers are actions;
/// when one fires the driver calls ``timerFired(_:now:)`` with the same ``Timer`` value. Every connection attempt
/// gets a ``ConnectionID``, so events from a connection the machine already gave up on are ignored.
///
/// The machine also owns the socket's ``RefCounter`` (``refs``); channel machines take their refs from it.
package struct SocketStateMachine: Sendable {
    // MARK: Types

    /// Tunables, with realtime-js defaults.
    package struct Configuration: Sendable, Hashable {
        /// Interval between heartbeats (§3: 25 s).
        package var heartbeatInterval: Duration
        /// How long a heartbeat may wait for its reply. The default (10 s) tolerates the server's 5 s pause before
        /// a join error reply, which blocks heartbeat replies on the same socket (§15.7).
        package var heartbeatTimeout: Duration
        /// When set, a heartbeat unanswered for this long reports the socket unresponsive
        /// (``Action/notifySocketUnresponsive``) while the connection is kept; its reply reports it responsive again
        /// (``Action/notifySocketResponsive``). Changes may be held up meanwhile (a silent stall, §13.1), so a caller
        /// can fall back early without tearing the socket down. Default nil (off).
        package var unresponsiveAfter: Duration?
        /// Reconnect delays by attempt (§9.3: 1, 2, 5, 10, 10 … s, ±20 %).
        package var reconnect: BackoffSchedule
        /// The shortest delay after a handshake refused with HTTP 429 (§1.3), before jitter.
        package var rateLimitedReconnectDelay: Duration

        /// Creates a configuration; every parameter has the documented default.
        package init(
            heartbeatInterval: Duration = .seconds(25),
            heartbeatTimeout: Duration = .seconds(10),
            unresponsiveAfter: Duration? = nil,
            reconnect: BackoffSchedule = .reconnect,
            rateLimitedReconnectDelay: Duration = .seconds(10)
        ) {
            self.heartbeatInterval = heartbeatInterval
            self.heartbeatTimeout = heartbeatTimeout
            self.unresponsiveAfter = unresponsiveAfter
            self.reconnect = reconnect
            self.rateLimitedReconnectDelay = rateLimitedReconnectDelay
        }
    }

    /// Identifies one connection attempt: its sequence number on this machine, from 1.
    package typealias ConnectionID = SequenceID<Self>

    /// The timers the machine asks for.
    package enum Timer: Sendable, Hashable {
        /// The next heartbeat is due.
        case heartbeat
        /// The reply to the heartbeat with this ref is overdue.
        case heartbeatTimeout(Ref)
        /// The reply to the heartbeat with this ref is late (``Configuration/unresponsiveAfter``).
        case heartbeatLate(Ref)
        /// Time to reconnect.
        case reconnect
    }

    package typealias DisconnectReason = SocketDisconnectReason
    package typealias Status = SocketStatus

    /// What the driver must do, in order.
    package enum Action: Sendable, Hashable {
        /// Open a new transport connection and report its outcome with this id.
        case openTransport(ConnectionID)
        /// Close the given connection (with a close frame if possible).
        case closeTransport(ConnectionID, code: UInt16, reason: String)
        /// Send `[null, ref, "phoenix", "heartbeat", {}]` (§3).
        case sendHeartbeat(Ref)
        /// Start (or restart) a timer.
        case scheduleTimer(Timer, after: Duration)
        /// Cancel a timer if it is running.
        case cancelTimer(Timer)
        /// Publish a status change.
        case reportStatus(Status)
        /// A heartbeat round trip completed in this time.
        case reportHeartbeatRoundTrip(Duration)
        /// The socket is open: channels may (re)join now.
        case notifySocketOpened
        /// The socket is gone: channels become errored and wait for the next open.
        case notifySocketLost
        /// A heartbeat reply is late: the connection is kept, but changes may be held up.
        case notifySocketUnresponsive
        /// The late heartbeat reply arrived: the connection delivers again.
        case notifySocketResponsive
    }

    // MARK: State

    private enum State: Sendable, Hashable {
        /// Nothing happened yet.
        case idle
        /// Waiting for the transport to open `connection`; `attempt` 0 is the first connect.
        case connecting(connection: ConnectionID, attempt: Int)
        /// Open; `pending` is the unanswered heartbeat, if any, and when it was sent.
        case connected(connection: ConnectionID, pending: PendingHeartbeat?)
        /// Waiting for the reconnect timer; `attempt` is the attempt that will run when it fires, after `delay`.
        case waitingToReconnect(attempt: Int, delay: Duration)
        /// Closing after ``disconnect()``; `connection` is the one still being closed, if any.
        case closing(connection: ConnectionID?)
        /// Closed after ``disconnect()``; nothing more happens until ``connect()``.
        case closed
    }

    private struct PendingHeartbeat: Sendable, Hashable {
        var ref: Ref
        var sentAt: Duration
        /// Whether ``Action/notifySocketUnresponsive`` was reported for it.
        var late = false
        /// ``SocketStateMachine/framesReceived`` when the late timer and the timeout were (re)armed: a reply queued
        /// behind a backlog of frames is not a stall, so a timer that finds frames arrived since it was armed is armed
        /// again instead of firing.
        var framesAtLateCheck: UInt64
        var framesAtTimeoutCheck: UInt64
        /// Whether the timeout was armed again (its timer decides from then on).
        var timeoutExtended = false
    }

    /// The configuration in force.
    package let configuration: Configuration
    /// The socket's ref counter, shared by heartbeats and channel pushes.
    package var refs: RefCounter
    private var state: State
    private var random: SplitMix64
    /// Inbound frames counted by ``frameReceived()``: signs of life while a heartbeat reply is queued behind them.
    private var framesReceived: UInt64 = 0
    private var lastConnectionID: UInt64

    /// Creates a machine in the idle state.
    /// - Parameters:
    ///   - configuration: the tunables.
    ///   - random: the jitter source (seed it from the system in production, with a constant in tests).
    package init(configuration: Configuration = .init(), random: SplitMix64) {
        self.configuration = configuration
        self.refs = RefCounter()
        self.state = .idle
        self.random = random
        self.lastConnectionID = 0
    }

    /// The current status.
    package var status: Status {
        switch self.state {
        case .idle: .idle
        case .connecting(_, let attempt): .connecting(attempt: attempt)
        case .connected: .connected
        case .waitingToReconnect(let attempt, let delay): .reconnecting(attempt: attempt, delay: delay)
        case .closing: .disconnected(.requested)
        case .closed: .closed
        }
    }

    /// The open connection, if the socket is connected.
    package var openConnection: ConnectionID? {
        if case .connected(let connection, _) = self.state { return connection }
        return nil
    }

    /// `true` while the socket is open.
    package var isConnected: Bool { self.openConnection != nil }

    // MARK: Events

    /// The user asked to connect. Ignored unless idle or closed.
    package mutating func connect() -> [Action] {
        switch self.state {
        case .idle, .closed:
            return self.startConnecting(attempt: 0)
        case .connecting, .connected, .waitingToReconnect, .closing:
            return []
        }
    }

    /// The transport opened `connection`.
    package mutating func transportOpened(_ connection: ConnectionID) -> [Action] {
        switch self.state {
        case .connecting(let current, _) where current == connection:
            self.state = .connected(connection: connection, pending: nil)
            return [
                .scheduleTimer(.heartbeat, after: self.configuration.heartbeatInterval),
                .notifySocketOpened,
                .reportStatus(.connected),
            ]
        case .closing(let current) where current == connection:
            // Opened after the user asked to disconnect: close it right away.
            return [.closeTransport(connection, code: 1000, reason: "client disconnect")]
        case .idle, .connecting, .connected, .waitingToReconnect, .closing, .closed:
            // Each attempt reports one outcome, and the machine follows an attempt until it does.
            assertionFailure("transportOpened(\(connection)) in state \(self.state)")
            return []
        }
    }

    /// Opening `connection` failed before the WebSocket was established.
    /// - Parameters:
    ///   - connection: the attempt that failed.
    ///   - httpStatus: the HTTP status of a refused upgrade (§1.3), if any.
    ///   - message: a printable description (no secrets).
    package mutating func transportFailedToOpen(
        _ connection: ConnectionID,
        httpStatus: Int?,
        message: String
    ) -> [Action] {
        switch self.state {
        case .connecting(let current, let attempt) where current == connection:
            let reason: DisconnectReason =
                if let httpStatus { .handshakeRejected(status: httpStatus) } else { .connectFailed(message) }
            return self.reconnect(
                attempt: attempt + 1, rateLimited: httpStatus == 429, effects: [],
                observations: [.reportStatus(.disconnected(reason))])
        case .closing(let current) where current == connection:
            self.state = .closed
            return [.reportStatus(.closed)]
        case .idle, .connecting, .connected, .waitingToReconnect, .closing, .closed:
            // Each attempt reports one outcome, and the machine follows an attempt until it does.
            assertionFailure("transportFailedToOpen(\(connection)) in state \(self.state)")
            return []
        }
    }

    /// `connection` closed (by the peer, by a failure, or after ``Action/closeTransport(_:code:reason:)``).
    /// - Parameters:
    ///   - connection: the connection that closed.
    ///   - code: the close code, nil if the connection was lost without a close frame.
    ///   - reason: the close reason.
    package mutating func transportClosed(_ connection: ConnectionID, code: UInt16?, reason: String) -> [Action] {
        let disconnected = Action.reportStatus(.disconnected(.closed(code: code, reason: reason)))
        switch self.state {
        case .connected(let current, let pending) where current == connection:
            // A successful open resets the schedule (§9.3), so this is attempt 1 again.
            return self.reconnect(
                attempt: 1, rateLimited: false, effects: self.stopHeartbeat(pending: pending),
                observations: [.notifySocketLost, disconnected])
        case .connecting(let current, let attempt) where current == connection:
            // Closed before it opened: counts as a failed attempt.
            return self.reconnect(attempt: attempt + 1, rateLimited: false, effects: [], observations: [disconnected])
        case .closing(let current) where current == connection:
            self.state = .closed
            return [.reportStatus(.closed)]
        case .connecting, .connected, .waitingToReconnect, .closing, .closed:
            // A connection the machine gave up on (heartbeat timeout) reports its close later: nothing to do.
            return []
        case .idle:
            assertionFailure("transportClosed(\(connection)) in state \(self.state)")
            return []
        }
    }

    /// A `phx_reply` on topic `phoenix` arrived with this ref (§3). A reply to no pending heartbeat (late, after
    /// its timeout, or a duplicate) is ignored.
    /// - Parameters:
    ///   - ref: the reply's ref.
    ///   - now: the current time (same origin as every other `now`).
    package mutating func heartbeatReplyReceived(ref: Ref, now: Duration) -> [Action] {
        guard case .connected(let connection, let pending?) = self.state, pending.ref == ref else { return [] }
        self.state = .connected(connection: connection, pending: nil)
        var actions: [Action] = [.cancelTimer(.heartbeatTimeout(ref))]
        if self.configuration.unresponsiveAfter != nil { actions.append(.cancelTimer(.heartbeatLate(ref))) }
        if pending.late { actions.append(.notifySocketResponsive) }
        actions.append(.reportHeartbeatRoundTrip(max(now - pending.sentAt, .zero)))
        return actions
    }

    /// A frame arrived on the open connection. Frames are signs of life: while they keep arriving, a heartbeat
    /// whose reply is queued behind them (a backlog the client takes longer than the timeout to work through) is
    /// neither late nor timed out; a stalled socket delivers nothing and is caught as before.
    package mutating func frameReceived() {
        self.framesReceived &+= 1
    }

    /// A timer requested by ``Action/scheduleTimer(_:after:)`` fired. The machine cancels every timer it no longer
    /// wants, so a timer that does not match the state cannot reach it.
    package mutating func timerFired(_ timer: Timer, now: Duration) -> [Action] {
        switch timer {
        case .heartbeat:
            guard case .connected(let connection, let pending) = self.state else { break }
            return self.heartbeatDue(connection: connection, pending: pending, now: now)
        case .heartbeatTimeout(let ref):
            guard case .connected(let connection, var pending?) = self.state, pending.ref == ref else { break }
            if pending.framesAtTimeoutCheck != self.framesReceived {
                pending.framesAtTimeoutCheck = self.framesReceived
                pending.timeoutExtended = true
                self.state = .connected(connection: connection, pending: pending)
                return [.scheduleTimer(.heartbeatTimeout(ref), after: self.configuration.heartbeatTimeout)]
            }
            return self.heartbeatTimedOut(connection: connection, pending: pending)
        case .heartbeatLate(let ref):
            guard case .connected(let connection, var pending?) = self.state, pending.ref == ref, !pending.late,
                let late = self.configuration.unresponsiveAfter
            else { break }
            if pending.framesAtLateCheck != self.framesReceived {
                pending.framesAtLateCheck = self.framesReceived
                self.state = .connected(connection: connection, pending: pending)
                return [.scheduleTimer(.heartbeatLate(ref), after: late)]
            }
            pending.late = true
            self.state = .connected(connection: connection, pending: pending)
            return [.notifySocketUnresponsive]
        case .reconnect:
            guard case .waitingToReconnect(let attempt, _) = self.state else { break }
            return self.startConnecting(attempt: attempt)
        }
        assertionFailure("timerFired(\(timer)) in state \(self.state)")
        return []
    }

    /// The user asked to disconnect: close the socket and do not reconnect.
    package mutating func disconnect() -> [Action] {
        switch self.state {
        case .idle, .closed:
            self.state = .closed
            return []
        case .closing:
            return []
        case .connecting(let connection, _):
            self.state = .closing(connection: connection)
            return [.reportStatus(.disconnected(.requested))]
        case .connected(let connection, let pending):
            var actions = self.stopHeartbeat(pending: pending)
            self.state = .closing(connection: connection)
            actions.append(.notifySocketLost)
            actions.append(.closeTransport(connection, code: 1000, reason: "client disconnect"))
            actions.append(.reportStatus(.disconnected(.requested)))
            return actions
        case .waitingToReconnect:
            self.state = .closed
            return [.cancelTimer(.reconnect), .reportStatus(.closed)]
        }
    }

    // MARK: Helpers

    private mutating func startConnecting(attempt: Int) -> [Action] {
        self.lastConnectionID += 1
        let connection = ConnectionID(rawValue: self.lastConnectionID)
        self.state = .connecting(connection: connection, attempt: attempt)
        return [.openTransport(connection), .reportStatus(.connecting(attempt: attempt))]
    }

    /// The heartbeat timer fired: send the next heartbeat, or time out the one still unanswered.
    private mutating func heartbeatDue(
        connection: ConnectionID,
        pending: PendingHeartbeat?,
        now: Duration
    ) -> [Action] {
        if let pending {
            // The next heartbeat is due and the previous one is still unanswered (§3, §13.1 item 3): a timeout once
            // the previous one has waited `heartbeatTimeout`; before that (an interval shorter than the timeout),
            // wait for it instead of piling up heartbeats. Once frames kept the timeout from firing, its own timer
            // decides.
            if now - pending.sentAt >= self.configuration.heartbeatTimeout, !pending.timeoutExtended,
                pending.framesAtTimeoutCheck == self.framesReceived
            {
                return self.heartbeatTimedOut(connection: connection, pending: pending)
            }
            return [.scheduleTimer(.heartbeat, after: self.configuration.heartbeatInterval)]
        }
        let ref = self.refs.next()
        self.state = .connected(
            connection: connection,
            pending: PendingHeartbeat(
                ref: ref, sentAt: now, framesAtLateCheck: self.framesReceived,
                framesAtTimeoutCheck: self.framesReceived))
        var actions: [Action] = [
            .sendHeartbeat(ref),
            .scheduleTimer(.heartbeatTimeout(ref), after: self.configuration.heartbeatTimeout),
        ]
        if let late = self.configuration.unresponsiveAfter {
            actions.append(.scheduleTimer(.heartbeatLate(ref), after: late))
        }
        actions.append(.scheduleTimer(.heartbeat, after: self.configuration.heartbeatInterval))
        return actions
    }

    /// Waits to reconnect: `effects` (timers, the close of a connection), the reconnect timer, then
    /// `observations` (what channels and observers learn of the loss) and the reconnecting status. The timer comes
    /// before anything observable, so that whoever reacts to the loss finds the reconnect already scheduled.
    private mutating func reconnect(
        attempt: Int,
        rateLimited: Bool,
        effects: [Action],
        observations: [Action]
    ) -> [Action] {
        var base = self.configuration.reconnect.baseDelay(attempt: attempt)
        if rateLimited {
            // HTTP 429 at the handshake: the tenant is over its connection or join rate (§1.3, §7.2).
            base = max(base, self.configuration.rateLimitedReconnectDelay)
        }
        let delay = BackoffSchedule.jittered(
            base,
            fraction: self.configuration.reconnect.jitter,
            unit: self.random.nextUnit()
        )
        self.state = .waitingToReconnect(attempt: attempt, delay: delay)
        return effects + [.scheduleTimer(.reconnect, after: delay)] + observations
            + [.reportStatus(.reconnecting(attempt: attempt, delay: delay))]
    }

    private func stopHeartbeat(pending: PendingHeartbeat?) -> [Action] {
        var actions: [Action] = [.cancelTimer(.heartbeat)]
        if let pending {
            actions.append(.cancelTimer(.heartbeatTimeout(pending.ref)))
            if self.configuration.unresponsiveAfter != nil { actions.append(.cancelTimer(.heartbeatLate(pending.ref))) }
        }
        return actions
    }

    private mutating func heartbeatTimedOut(connection: ConnectionID, pending: PendingHeartbeat) -> [Action] {
        // §3: tear the socket down with 1000 "heartbeat timeout", report, reconnect. The close event of this
        // connection arrives later and is ignored because the machine no longer tracks it.
        let effects = self.stopHeartbeat(pending: pending)
            + [.closeTransport(connection, code: 1000, reason: "heartbeat timeout")]
        return self.reconnect(
            attempt: 1, rateLimited: false, effects: effects,
            observations: [.notifySocketLost, .reportStatus(.disconnected(.heartbeatTimeout))])
    }
}
