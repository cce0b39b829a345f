/// The lifecycle of one Realtime channel (one topic) carrying `postgres_changes` bindings (§4, §5, §9).
///
/// A synchronous value with no I/O and no clock. The driver feeds it the socket's open/close events, every inbound
/// message on its topic, timer firings and user requests, and executes the returned actions in order. Pushes take
/// their refs from the socket's ``RefCounter`` (passed `inout`), so refs stay unique per socket.
///
/// Lifecycle: closed → joining → joined → live (after the `system` "Subscribed to PostgreSQL" ok, §4.3/§4.5).
/// Join errors, join timeouts, `phx_error` and socket loss make it errored and it rejoins on the 1, 2, 5, 10 s
/// schedule (at once when the socket reopens). `phx_close` closes it for good, except after a token-expiry error
/// (``Action/refreshTokenThenRejoin``) or a rate-limit error (rejoin after a long backoff). Messages carrying a
/// join ref other than the current one are ignored (§9.1, §15.3).
package struct ChannelStateMachine: Sendable {
    // MARK: Types

    /// Tunables, with realtime-js defaults.
    package struct Configuration: Sendable, Hashable {
        /// How long a join may wait for its reply (§9.3: 10 s).
        package var joinTimeout: Duration
        /// How long a leave may wait for its reply before the channel counts as closed.
        package var leaveTimeout: Duration
        /// Rejoin delays by attempt (§9.3: 1, 2, 5, then 10 s), ±20 %.
        package var rejoin: BackoffSchedule
        /// The rejoin delay range after a rate-limit error (`Too many …`, §7.2); a uniform pick inside it.
        package var rateLimitedRejoinDelay: ClosedRange<Duration>

        /// Creates a configuration; every parameter has the documented default.
        package init(
            joinTimeout: Duration = .seconds(10),
            leaveTimeout: Duration = .seconds(10),
            rejoin: BackoffSchedule = .rejoin,
            rateLimitedRejoinDelay: ClosedRange<Duration> = .seconds(10) ... .seconds(30)
        ) {
            self.joinTimeout = joinTimeout
            self.leaveTimeout = leaveTimeout
            self.rejoin = rejoin
            self.rateLimitedRejoinDelay = rateLimitedRejoinDelay
        }
    }

    /// The timers the machine asks for.
    package enum Timer: Sendable, Hashable {
        /// The join pushed with this join ref got no reply in time.
        case joinTimeout(Ref)
        /// Time to rejoin.
        case rejoin
        /// The leave pushed with this ref got no reply in time.
        case leaveTimeout(Ref)
    }

    /// Why a channel is errored or closed.
    package enum Reason: Sendable, Hashable {
        /// The join was refused with this reason (§4.4).
        case joinRejected(ErrorReason)
        /// No join reply within the join timeout.
        case joinTimedOut
        /// The server echoed different bindings than requested (§4.3); the text says which.
        case bindingMismatch(String)
        /// The server sent `phx_error`: the channel process crashed (§9.1).
        case serverError
        /// The socket closed.
        case socketLost
        /// The channel's token expired (§8.2); a refresh and rejoin follow.
        case tokenExpired(ErrorReason)
        /// The server closed the channel over a rate limit (§7.2); a delayed rejoin follows.
        case rateLimited(ErrorReason)
        /// The server sent `phx_close`; `systemError` is the `system` error that preceded it, if any.
        case serverClosed(systemError: ErrorReason?)
        /// The channel was left at the user's request.
        case left
    }

    /// What the channel looks like from outside.
    package enum Status: Sendable, Hashable {
        /// Waiting for the socket or for the join reply.
        case joining
        /// Joined, but changes are not (or no longer) flowing: waiting for the `system` ok (§4.3).
        case joined
        /// `system` "Subscribed to PostgreSQL" ok received for the current join; reported again after every
        /// rejoin and token refresh (§4.5).
        case live
        /// Something failed; the machine will rejoin by itself.
        case errored(Reason)
        /// Closed; the machine will not rejoin by itself.
        case closed(Reason)
    }

    /// Why an inbound message had no effect (for counters and trace logs).
    package enum IgnoredReason: Sendable, Hashable {
        /// The message's join ref (or, for `phx_close`/`phx_error` without one, its ref) is not the current
        /// join ref (§9.1, §15.3).
        case staleJoinRef
        /// The payload could not be decoded; the text is safe to print.
        case malformedPayload(String)
        /// A reply to no push the machine is waiting for.
        case unexpectedReply
        /// A message that needs a joined channel arrived while not joined.
        case notJoined
        /// A `postgres_changes` message matched none of the bindings (§5.5).
        case unroutableChange
        /// A `system` message the machine does not act on.
        case unhandledSystemMessage(SystemMessage)
        /// An event the machine does not handle (broadcast, presence, …).
        case unhandledEvent(PhoenixEvent)
    }

    /// What the driver must do, in order.
    package enum Action: Sendable, Hashable {
        /// Send this message.
        case push(PhoenixMessage)
        /// Start (or restart) a timer.
        case scheduleTimer(Timer, after: Duration)
        /// Cancel a timer if it is running.
        case cancelTimer(Timer)
        /// Publish a status change.
        case reportStatus(Status)
        /// Hand a change to the bindings at these indices (in ``bindings`` order, ascending).
        case deliver(PostgresChange, bindings: [Int])
        /// The server reported a `postgres_changes` subscription error (§4.5); the channel stays open.
        case reportPostgresChangesError(String)
        /// The server reported a channel-level `system` error; a `phx_close` normally follows (§4.5, §8.2).
        case reportSystemError(ErrorReason)
        /// Get a fresh access token and pass it to ``updateAccessToken(_:refs:)``, which rejoins (§8.2).
        case refreshTokenThenRejoin
        /// An inbound message had no effect.
        case ignored(IgnoredReason)
    }

    // MARK: State

    enum State: Sendable, Hashable {
        /// Not wanted (initial state: `nil` reason; after leave or `phx_close`).
        case closed(Reason?)
        /// Wanted. `joinRef` is the pushed join awaiting its reply, or nil while the socket is down.
        case joining(joinRef: Ref?)
        /// Join reply ok; `bindingIDs[i]` is the server id of binding `i`; `live` after the system ok.
        case joined(joinRef: Ref, bindingIDs: [Int], live: Bool)
        /// Failed; a rejoin timer runs if the socket is open, otherwise the rejoin happens when it opens.
        case errored(Reason)
        /// Closed over token expiry; waiting for ``updateAccessToken(_:refs:)``.
        case awaitingToken(ErrorReason)
        /// Leave pushed with `leaveRef` for the join `joinRef`; waiting for its reply or `phx_close`.
        case leaving(joinRef: Ref, leaveRef: Ref)
    }

    /// The channel's topic.
    package let topic: Topic
    /// The configuration in force.
    package let configuration: Configuration
    /// The join payload sent on every (re)join; holds the bindings and the latest access token.
    package private(set) var joinPayload: JoinPayload
    var state: State
    var socketOpen: Bool
    var rejoinAttempts: Int
    /// A channel-level `system` error seen for the current join, used to interpret the `phx_close` that follows.
    var pendingSystemError: ErrorReason?
    var random: JitterGenerator

    /// Creates a closed channel. Returns `nil` if two bindings are equal: the server would give them the same
    /// id and echo them twice (§14.1, §5.5).
    /// - Parameters:
    ///   - topic: the topic, e.g. `realtime:jobs-1`.
    ///   - bindings: the `postgres_changes` bindings, in the order the join sends them.
    ///   - accessToken: the user token for the join payload, if any.
    ///   - socketOpen: whether the socket is open right now.
    ///   - configuration: the tunables.
    ///   - random: the jitter source.
    package init?(
        topic: Topic,
        bindings: [PostgresChangeBinding],
        accessToken: String? = nil,
        socketOpen: Bool,
        configuration: Configuration = .init(),
        random: JitterGenerator
    ) {
        guard Self.hasNoDuplicates(bindings) else { return nil }
        self.topic = topic
        self.configuration = configuration
        self.joinPayload = JoinPayload(postgresChanges: bindings, accessToken: accessToken)
        self.state = .closed(nil)
        self.socketOpen = socketOpen
        self.rejoinAttempts = 0
        self.pendingSystemError = nil
        self.random = random
    }

    /// Whether a binding list has no two equal entries.
    package static func hasNoDuplicates(_ bindings: [PostgresChangeBinding]) -> Bool {
        Set(bindings).count == bindings.count
    }

    /// The bindings, in join order.
    package var bindings: [PostgresChangeBinding] { self.joinPayload.postgresChanges }

    /// The current status.
    package var status: Status {
        switch self.state {
        case .closed(let reason): .closed(reason ?? .left)
        case .joining: .joining
        case .joined(_, _, let live): live ? .live : .joined
        case .errored(let reason): .errored(reason)
        case .awaitingToken(let reason): .errored(.tokenExpired(reason))
        case .leaving: .joined
        }
    }

    /// `true` once the `system` ok arrived for the current join.
    package var isLive: Bool {
        if case .joined(_, _, true) = self.state { return true }
        return false
    }

    /// `true` when the machine is closed and will do nothing more until ``join(refs:)``.
    package var isClosed: Bool {
        if case .closed = self.state { return true }
        return false
    }

    /// The join ref of the current join, if any (messages with another join ref are stale).
    package var currentJoinRef: Ref? {
        switch self.state {
        case .joining(let joinRef): joinRef
        case .joined(let joinRef, _, _), .leaving(let joinRef, _): joinRef
        case .closed, .errored, .awaitingToken: nil
        }
    }

    // MARK: User requests

    /// Subscribe: push `phx_join` now if the socket is open, else as soon as it opens. Ignored unless closed.
    package mutating func join(refs: inout RefCounter) -> [Action] {
        guard self.isClosed else { return [] }
        self.rejoinAttempts = 0
        if self.socketOpen { return self.pushJoin(refs: &refs) }
        self.state = .joining(joinRef: nil)
        return [.reportStatus(.joining)]
    }

    /// Unsubscribe: push `phx_leave` if joined (closed on its reply or timeout), else close at once.
    package mutating func leave(refs: inout RefCounter) -> [Action] {
        switch self.state {
        case .closed, .leaving:
            return []
        case .joining(let joinRef?) where self.socketOpen:
            return self.pushLeave(joinRef: joinRef, cancelling: .joinTimeout(joinRef), refs: &refs)
        case .joined(let joinRef, _, _) where self.socketOpen:
            return self.pushLeave(joinRef: joinRef, cancelling: nil, refs: &refs)
        case .joining(let joinRef):
            self.state = .closed(.left)
            let cancel: [Action] = joinRef.map { [.cancelTimer(.joinTimeout($0))] } ?? []
            return cancel + [.reportStatus(.closed(.left))]
        case .joined:
            self.state = .closed(.left)
            return [.reportStatus(.closed(.left))]
        case .errored, .awaitingToken:
            self.state = .closed(.left)
            return [.cancelTimer(.rejoin), .reportStatus(.closed(.left))]
        }
    }

    /// Replaces the bindings. A joined or joining channel rejoins at once with the new list and a new join ref;
    /// the server closes the old join and its `phx_close` (old join ref) is ignored (§15.3). Changes committed
    /// between the two joins are not delivered, so the channel reports `joining` and later `live` again.
    /// - Returns: the actions, or `nil` (and nothing changed) if two of the new bindings are equal.
    package mutating func updateBindings(
        _ bindings: [PostgresChangeBinding],
        refs: inout RefCounter
    ) -> [Action]? {
        guard Self.hasNoDuplicates(bindings) else { return nil }
        guard bindings != self.joinPayload.postgresChanges else { return [] }
        self.joinPayload.postgresChanges = bindings
        switch self.state {
        case .joining(let joinRef?):
            return [.cancelTimer(.joinTimeout(joinRef))] + self.pushJoin(refs: &refs)
        case .joined where self.socketOpen:
            return self.pushJoin(refs: &refs)
        case .closed, .joining(nil), .joined, .errored, .awaitingToken, .leaving:
            return []
        }
    }

    /// Stores a new access token for future joins and pushes `access_token` to a joined channel (§8.1; no reply
    /// is expected). After a token-expiry close it rejoins. `nil` keeps the socket's token for future joins.
    package mutating func updateAccessToken(_ token: String?, refs: inout RefCounter) -> [Action] {
        let changed = token != self.joinPayload.accessToken
        self.joinPayload.accessToken = token
        switch self.state {
        case .joined(let joinRef, _, _) where changed && self.socketOpen:
            guard let token else { return [] }
            let push = PhoenixMessage(
                joinRef: joinRef,
                ref: refs.next(),
                topic: self.topic,
                event: .accessToken,
                payload: accessTokenPayload(token)
            )
            return [.push(push)]
        case .awaitingToken:
            self.rejoinAttempts = 0
            if self.socketOpen { return self.pushJoin(refs: &refs) }
            self.state = .joining(joinRef: nil)
            return [.reportStatus(.joining)]
        default:
            return []
        }
    }

    /// The token refresh requested by ``Action/refreshTokenThenRejoin`` failed: rejoin later with the old token.
    package mutating func tokenRefreshFailed() -> [Action] {
        guard case .awaitingToken = self.state else { return [] }
        return self.becomeErrored(.tokenExpired(ErrorReason("token refresh failed")), cancelling: [])
    }

    // MARK: Socket events

    /// The socket opened: join now if waiting to (re)join; the rejoin schedule restarts (§9.3).
    package mutating func socketOpened(refs: inout RefCounter) -> [Action] {
        self.socketOpen = true
        self.rejoinAttempts = 0
        switch self.state {
        case .joining(nil):
            return self.pushJoin(refs: &refs)
        case .errored:
            return [.cancelTimer(.rejoin)] + self.pushJoin(refs: &refs)
        default:
            return []
        }
    }

    /// The socket closed: a joining or joined channel becomes errored and rejoins when the socket reopens.
    package mutating func socketClosed() -> [Action] {
        self.socketOpen = false
        self.pendingSystemError = nil
        switch self.state {
        case .joining(let joinRef?):
            self.state = .errored(.socketLost)
            return [.cancelTimer(.joinTimeout(joinRef)), .reportStatus(.errored(.socketLost))]
        case .joined:
            self.state = .errored(.socketLost)
            return [.reportStatus(.errored(.socketLost))]
        case .errored:
            // The rejoin happens when the socket reopens, not on the timer.
            return [.cancelTimer(.rejoin)]
        case .leaving(_, let leaveRef):
            // The server drops the channel with the socket: the leave is complete.
            self.state = .closed(.left)
            return [.cancelTimer(.leaveTimeout(leaveRef)), .reportStatus(.closed(.left))]
        case .closed, .joining(nil), .awaitingToken:
            return []
        }
    }

    // MARK: Timers

    /// A timer requested by ``Action/scheduleTimer(_:after:)`` fired. Stale timers are ignored.
    package mutating func timerFired(_ timer: Timer, refs: inout RefCounter) -> [Action] {
        switch (timer, self.state) {
        case (.joinTimeout(let ref), .joining(let joinRef?)) where ref == joinRef:
            // §9.3: leave that attempt (so a late success does not linger server-side), then rejoin.
            let leave = PhoenixMessage(
                joinRef: joinRef, ref: refs.next(), topic: self.topic, event: .leave, payload: .object([:]))
            return [.push(leave)] + self.becomeErrored(.joinTimedOut, cancelling: [])
        case (.rejoin, .errored) where self.socketOpen:
            return self.pushJoin(refs: &refs)
        case (.leaveTimeout(let ref), .leaving(_, let leaveRef)) where ref == leaveRef:
            self.state = .closed(.left)
            return [.reportStatus(.closed(.left))]
        default:
            return []
        }
    }

    // MARK: Helpers (shared with the message handling extension)

    mutating func pushJoin(refs: inout RefCounter) -> [Action] {
        let joinRef = refs.next()
        self.state = .joining(joinRef: joinRef)
        self.pendingSystemError = nil
        let message = PhoenixMessage(
            joinRef: joinRef, ref: joinRef, topic: self.topic, event: .join, payload: self.joinPayload.jsonValue)
        return [
            .reportStatus(.joining),
            .push(message),
            .scheduleTimer(.joinTimeout(joinRef), after: self.configuration.joinTimeout),
        ]
    }

    private mutating func pushLeave(joinRef: Ref, cancelling timer: Timer?, refs: inout RefCounter) -> [Action] {
        let leaveRef = refs.next()
        self.state = .leaving(joinRef: joinRef, leaveRef: leaveRef)
        var actions: [Action] = timer.map { [.cancelTimer($0)] } ?? []
        actions.append(.push(PhoenixMessage(
            joinRef: joinRef, ref: leaveRef, topic: self.topic, event: .leave, payload: .object([:]))))
        actions.append(.scheduleTimer(.leaveTimeout(leaveRef), after: self.configuration.leaveTimeout))
        return actions
    }

    /// Moves to errored and schedules a rejoin (if the socket is open) on the rejoin schedule.
    mutating func becomeErrored(_ reason: Reason, cancelling: [Action]) -> [Action] {
        self.state = .errored(reason)
        self.pendingSystemError = nil
        var actions = cancelling
        actions.append(.reportStatus(.errored(reason)))
        guard self.socketOpen else { return actions }
        self.rejoinAttempts += 1
        let delay = self.configuration.rejoin.delay(attempt: self.rejoinAttempts, unit: self.random.nextUnit())
        actions.append(.scheduleTimer(.rejoin, after: delay))
        return actions
    }

    /// Moves to errored and schedules a rejoin after the long rate-limit delay.
    mutating func becomeRateLimited(_ reason: ErrorReason, cancelling: [Action]) -> [Action] {
        self.state = .errored(.rateLimited(reason))
        self.pendingSystemError = nil
        var actions = cancelling
        actions.append(.reportStatus(.errored(.rateLimited(reason))))
        guard self.socketOpen else { return actions }
        self.rejoinAttempts += 1
        let range = self.configuration.rateLimitedRejoinDelay
        let delay = range.lowerBound + (range.upperBound - range.lowerBound) * self.random.nextUnit()
        actions.append(.scheduleTimer(.rejoin, after: delay))
        return actions
    }

    /// Moves to awaiting a token and asks the driver for one.
    mutating func awaitToken(_ reason: ErrorReason, cancelling: [Action]) -> [Action] {
        self.state = .awaitingToken(reason)
        self.pendingSystemError = nil
        return cancelling + [.reportStatus(.errored(.tokenExpired(reason))), .refreshTokenThenRejoin]
    }
}
