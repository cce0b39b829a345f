package import JobSyncCore

/// The lifecycle of one Realtime channel (one topic) carrying `postgres_changes` bindings (§4, §5, §9), and the
/// fan-out of its events to local subscribers.
///
/// A synchronous value with no I/O and no clock. The driver feeds it subscriptions and their ends, the socket's
/// open/close events, every inbound message on its topic, timer firings and token updates, and executes the returned
/// actions in the order returned: effects (pushes, timers) come before the observations they imply (statuses,
/// notifications), so an observer reacting to one finds its timers already running. Pushes take their refs from the
/// socket's ``RefCounter`` (passed `inout`), so refs stay unique per socket.
///
/// Subscribers (``SubscriberID``) are kept per binding, as postgres-nio's `ListenStateMachine` keeps listeners per
/// channel: the first subscriber joins the channel, a subscriber with a new binding rejoins it with the longer
/// binding list, subscribers with equal bindings share the server binding, and the last one leaving leaves the
/// channel. A subscriber arriving while a leave is in flight is kept, and the channel joins again once the leave
/// completes (``Action/removeChannel`` comes only when the channel is closed with no subscriber left).
///
/// Broadcast subscribers (broadcast-from-database.md §B, `ChannelStateMachine+Broadcast.swift`) share the channel:
/// they add `private`, `replication_ready` and replay to the join, and are routed by event name and de-duplicated on
/// `meta.id`.
///
/// Lifecycle: closed → joining → joined → live (after the `system` "Subscribed to PostgreSQL" ok, §4.3/§4.5, and
/// with broadcast subscribers the "Replication connection established" ok, §B3).
/// Join errors, join timeouts, `phx_error` and socket loss make it errored and it rejoins on the 1, 2, 5, 10 s
/// schedule (at once when the socket reopens). `phx_close` closes it for good and finishes its subscribers, except
/// after a token-expiry error (``Action/refreshTokenThenRejoin``), a rate-limit error (rejoin after a long backoff), a
/// replication-readiness timeout (§B3) or, on a private broadcast channel, a revoked read permission (§B2) (both
/// rejoin on the rejoin schedule).
/// Messages carrying a join ref other than the current one are ignored (§9.1, §15.3). Events that cannot happen in
/// the current state (a timer the machine cancelled, an unknown subscriber) are `assertionFailure`s in debug builds
/// and change nothing in release builds.
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
        /// How many broadcast message ids (`meta.id`) each broadcast subscriber remembers to drop the duplicates
        /// every rejoin replays (broadcast-from-database.md §B5); see ``RecentIDs``.
        package var broadcastDeduplicationWindow: Int

        /// Creates a configuration; every parameter has the documented default.
        package init(
            joinTimeout: Duration = .seconds(10),
            leaveTimeout: Duration = .seconds(10),
            rejoin: BackoffSchedule = .rejoin,
            rateLimitedRejoinDelay: ClosedRange<Duration> = .seconds(10) ... .seconds(30),
            broadcastDeduplicationWindow: Int = 1_000
        ) {
            self.joinTimeout = joinTimeout
            self.leaveTimeout = leaveTimeout
            self.rejoin = rejoin
            self.rateLimitedRejoinDelay = rateLimitedRejoinDelay
            self.broadcastDeduplicationWindow = broadcastDeduplicationWindow
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
        /// The server closed the channel over a rate limit (§7.2, §B6); a delayed rejoin follows.
        case rateLimited(ErrorReason)
        /// The server closed a private channel because the refreshed token may no longer read it (`You no longer
        /// have permission …`, §B2); a rejoin on the rejoin schedule follows (refused until access comes back).
        case accessRevoked(ErrorReason)
        /// The replication connection was not ready in time (§B3: `system` error, then `phx_close`); a rejoin on the
        /// rejoin schedule follows.
        case replicationNotReady(ErrorReason)
        /// The server sent `phx_close`; `systemError` is the `system` error that preceded it, if any.
        case serverClosed(systemError: ErrorReason?)
        /// The channel was left (its last subscriber left, or the client shut down).
        case left
    }

    /// What the channel looks like from outside.
    package enum Status: Sendable, Hashable {
        /// Waiting for the socket or for the join reply.
        case joining
        /// Joined, but changes are not (or no longer) flowing: waiting for the `system` ok (§4.3), or for the
        /// replication ok of a broadcast channel (§B3).
        case joined
        /// Every `system` ok the current join waits for arrived: "Subscribed to PostgreSQL" for `postgres_changes`
        /// bindings (reported again after every rejoin and token refresh, §4.5), and "Replication connection
        /// established" for a channel with broadcast subscribers (§B3).
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
        /// An event the machine does not handle (presence, broadcast on a channel without broadcast subscribers, …).
        case unhandledEvent(PhoenixEvent)
        /// A broadcast whose event no subscriber's filter selects (§B7).
        case unroutableBroadcast(event: String)
        /// A broadcast whose `meta.id` every matching subscriber already received (a replay after a rejoin, §B5).
        case duplicateBroadcast(id: String)
    }

    /// What the driver must do, in the order returned.
    package enum Action: Sendable, Hashable {
        /// Send this message.
        case push(PhoenixMessage)
        /// Start (or restart) a timer.
        case scheduleTimer(Timer, after: Duration)
        /// Cancel a timer if it is running.
        case cancelTimer(Timer)
        /// Publish a status change (logs; subscribers learn what it means from the ``notify(_:_:)`` that follows).
        case reportStatus(Status)
        /// Hand this event to these subscribers, in this order.
        case notify([SubscriberID], SubscriberEvent)
        /// End these subscriptions: the server closed the channel for this reason and it will not be rejoined.
        case finishSubscribers([SubscriberID], Reason)
        /// Get a fresh access token and pass it to ``updateAccessToken(_:refs:)``, which rejoins (§8.2); report a
        /// failure (or the lack of a token provider) with ``tokenRefreshFailed()``.
        case refreshTokenThenRejoin
        /// An inbound message had no effect.
        case ignored(IgnoredReason)
        /// The channel is closed and no subscriber is left: forget this machine (a later subscription to the same
        /// topic starts a new one).
        case removeChannel
    }

    // MARK: State

    enum State: Sendable, Hashable {
        /// Not joined (initial state: `nil` reason; after a leave or `phx_close`).
        case closed(Reason?)
        /// Wanted. `joinRef` is the pushed join awaiting its reply, or nil while the socket is down.
        case joining(joinRef: Ref?)
        /// Join reply ok; `bindingIDs[i]` is the server id of binding `i`; live once `awaiting` is empty.
        case joined(joinRef: Ref, bindingIDs: [Int], awaiting: Readiness)
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
    /// The access token sent with every (re)join, if any.
    package private(set) var accessToken: String?
    /// The bindings in join order, each with the subscribers reading it (never empty lists).
    var fanOut: [BindingSubscribers]
    /// The broadcast subscribers (§B), in the order they subscribed.
    var broadcastFanOut: [BroadcastSubscriber]
    /// What the subscribers were last told about liveness.
    var announced: Announcement
    var state: State
    var socketOpen: Bool
    var rejoinAttempts: Int
    /// A channel-level `system` error seen for the current join, used to interpret the `phx_close` that follows.
    var pendingSystemError: ErrorReason?
    var random: SplitMix64

    /// Creates a closed channel with no subscribers; the first ``subscribe(_:to:refs:)`` joins it.
    /// - Parameters:
    ///   - topic: the topic, e.g. `realtime:jobs-1`.
    ///   - accessToken: the user token for the join payload, if any.
    ///   - socketOpen: whether the socket is open right now.
    ///   - configuration: the tunables.
    ///   - random: the jitter source.
    package init(
        topic: Topic,
        accessToken: String? = nil,
        socketOpen: Bool,
        configuration: Configuration = .init(),
        random: SplitMix64
    ) {
        self.topic = topic
        self.configuration = configuration
        self.accessToken = accessToken
        self.fanOut = []
        self.broadcastFanOut = []
        self.announced = .nothing
        self.state = .closed(nil)
        self.socketOpen = socketOpen
        self.rejoinAttempts = 0
        self.pendingSystemError = nil
        self.random = random
    }

    /// The bindings, in join order (no two equal: subscribers with equal bindings share one).
    package var bindings: [PostgresChangeBinding] { self.fanOut.map(\.binding) }

    /// The join payload sent on every (re)join: the bindings and the latest access token; with broadcast
    /// subscribers also `private`, `replication_ready` and the replay option (§B3).
    ///
    /// Each read asks every broadcast subscriber's ``BroadcastOptions/replaySince`` for its current watermark: the
    /// replay starts at the earliest one and asks for the largest limit (any subscriber without a limit: the
    /// server's 25). Replay is omitted when no subscriber has a watermark.
    package var joinPayload: JoinPayload {
        var payload = JoinPayload(postgresChanges: self.bindings, accessToken: self.accessToken)
        guard !self.broadcastFanOut.isEmpty else { return payload }
        payload.isPrivate = self.broadcastFanOut.contains { $0.options.isPrivate }
        payload.broadcastReplicationReady = true
        var since: Int?
        var limit: Int? = 0
        for subscriber in self.broadcastFanOut {
            guard let ask = subscriber.options.replaySince, let watermark = ask() else { continue }
            since = min(since ?? watermark, watermark)
            if let wanted = subscriber.options.replayLimit, let current = limit {
                limit = max(current, wanted)
            } else {
                limit = nil
            }
        }
        if let since {
            payload.broadcastReplay = BroadcastReplayOption(since: since, limit: limit)
        }
        return payload
    }

    /// Whether the channel's broadcast subscribers joined it as private (`nil` without broadcast subscribers).
    package var broadcastIsPrivate: Bool? {
        self.broadcastFanOut.first.map(\.options.isPrivate)
    }

    /// The current status.
    package var status: Status {
        switch self.state {
        case .closed(let reason): .closed(reason ?? .left)
        case .joining: .joining
        case .joined(_, _, let awaiting): awaiting.isEmpty ? .live : .joined
        case .errored(let reason): .errored(reason)
        case .awaitingToken(let reason): .errored(.tokenExpired(reason))
        case .leaving: .joined
        }
    }

    /// `true` once the `system` ok arrived for the current join.
    package var isLive: Bool {
        if case .joined(_, _, let awaiting) = self.state { return awaiting.isEmpty }
        return false
    }

    /// `true` when the machine is closed and will do nothing more until a subscriber arrives.
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

    // MARK: Token

    /// Stores a new access token for future joins and pushes `access_token` to a joined channel (§8.1; no reply
    /// is expected). After a token-expiry close it rejoins. `nil` keeps the socket's token for future joins.
    package mutating func updateAccessToken(_ token: String?, refs: inout RefCounter) -> [Action] {
        let changed = token != self.accessToken
        self.accessToken = token
        switch self.state {
        case .joined(let joinRef, _, _):
            guard changed, self.socketOpen, let token else { return [] }
            let push = PhoenixMessage(
                joinRef: joinRef,
                ref: refs.next(),
                topic: self.topic,
                event: .accessToken,
                payload: accessTokenPayload(token)
            )
            return [.push(push)]
        case .awaitingToken:
            return self.join(refs: &refs)
        case .closed, .joining, .errored, .leaving:
            // Kept for the next join.
            return []
        }
    }

    /// The token refresh requested by ``Action/refreshTokenThenRejoin`` failed: rejoin later with the old token.
    /// Every channel hears of a failed refresh; only one awaiting a token acts on it.
    package mutating func tokenRefreshFailed() -> [Action] {
        switch self.state {
        case .awaitingToken:
            return self.becomeErrored(.tokenExpired(ErrorReason("token refresh failed")), cancelling: [])
        case .closed, .joining, .joined, .errored, .leaving:
            return []
        }
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
        case .closed, .awaitingToken:
            // Not wanted, or waiting for a token rather than for the socket.
            return []
        case .joining(_?), .joined, .leaving:
            // These need an open socket, and its loss (``socketClosed(refs:)``) moves every one of them on.
            assertionFailure("socketOpened() in state \(self.state)")
            return []
        }
    }

    /// The socket closed: a joining or joined channel becomes errored and rejoins when the socket reopens; a leave
    /// in flight is complete (the server drops the channel with the socket).
    /// - Parameter refs: the socket's counter (a rejoin waiting for the socket takes no ref until it reopens).
    package mutating func socketClosed(refs: inout RefCounter) -> [Action] {
        self.socketOpen = false
        self.pendingSystemError = nil
        switch self.state {
        case .joining(let joinRef?):
            return self.becomeErrored(.socketLost, cancelling: [.cancelTimer(.joinTimeout(joinRef))])
        case .joined:
            return self.becomeErrored(.socketLost, cancelling: [])
        case .errored:
            // The rejoin happens when the socket reopens, not on the timer.
            return [.cancelTimer(.rejoin)]
        case .leaving(_, let leaveRef):
            return self.endLeave(cancelling: [.cancelTimer(.leaveTimeout(leaveRef))], refs: &refs)
        case .closed, .joining(nil), .awaitingToken:
            return []
        }
    }

    // MARK: Timers

    /// A timer requested by ``Action/scheduleTimer(_:after:)`` fired. The machine cancels every timer it no longer
    /// wants, so a timer that does not match the state cannot reach it.
    package mutating func timerFired(_ timer: Timer, refs: inout RefCounter) -> [Action] {
        switch timer {
        case .joinTimeout(let ref):
            guard case .joining(let joinRef?) = self.state, ref == joinRef else { break }
            // §9.3: leave that attempt (so a late success does not linger server-side), then rejoin.
            return self.becomeErrored(.joinTimedOut, cancelling: [.push(self.leaveMessage(joinRef, ref: refs.next()))])
        case .rejoin:
            guard case .errored = self.state, self.socketOpen else { break }
            return self.pushJoin(refs: &refs)
        case .leaveTimeout(let ref):
            guard case .leaving(_, let leaveRef) = self.state, ref == leaveRef else { break }
            return self.endLeave(cancelling: [], refs: &refs)
        }
        assertionFailure("timerFired(\(timer)) in state \(self.state)")
        return []
    }

    // MARK: Helpers (shared with the extensions)

    /// Joins now if the socket is open, else as soon as it opens; the rejoin schedule restarts.
    mutating func join(refs: inout RefCounter) -> [Action] {
        self.rejoinAttempts = 0
        if self.socketOpen { return self.pushJoin(refs: &refs) }
        self.state = .joining(joinRef: nil)
        return self.report(.joining)
    }

    mutating func pushJoin(refs: inout RefCounter) -> [Action] {
        let joinRef = refs.next()
        self.state = .joining(joinRef: joinRef)
        self.pendingSystemError = nil
        let message = PhoenixMessage(
            joinRef: joinRef, ref: joinRef, topic: self.topic, event: .join, payload: self.joinPayload.jsonValue)
        return [.push(message), .scheduleTimer(.joinTimeout(joinRef), after: self.configuration.joinTimeout)]
            + self.report(.joining)
    }

    /// Unsubscribe on the server: push `phx_leave` if joined (closed on its reply or timeout), else close at once.
    mutating func leave(refs: inout RefCounter) -> [Action] {
        switch self.state {
        case .closed, .leaving:
            return []
        case .joining(let joinRef?):
            return self.pushLeave(joinRef: joinRef, cancelling: [.cancelTimer(.joinTimeout(joinRef))], refs: &refs)
        case .joined(let joinRef, _, _):
            return self.pushLeave(joinRef: joinRef, cancelling: [], refs: &refs)
        case .joining(nil):
            return self.endLeave(cancelling: [], refs: &refs)
        case .errored, .awaitingToken:
            return self.endLeave(cancelling: [.cancelTimer(.rejoin)], refs: &refs)
        }
    }

    private mutating func pushLeave(joinRef: Ref, cancelling: [Action], refs: inout RefCounter) -> [Action] {
        let leaveRef = refs.next()
        self.state = .leaving(joinRef: joinRef, leaveRef: leaveRef)
        return cancelling + [
            .push(self.leaveMessage(joinRef, ref: leaveRef)),
            .scheduleTimer(.leaveTimeout(leaveRef), after: self.configuration.leaveTimeout),
        ]
    }

    /// `phx_leave` for the join `joinRef`.
    func leaveMessage(_ joinRef: Ref, ref: Ref) -> PhoenixMessage {
        PhoenixMessage(joinRef: joinRef, ref: ref, topic: self.topic, event: .leave, payload: .object([:]))
    }

    /// The leave is over (replied, timed out, or the socket went with it). Subscribers that arrived meanwhile still
    /// want the channel, so it joins again, as postgres-nio's `ListenStateMachine` re-issues LISTEN once its
    /// UNLISTEN completes; with no subscriber left the driver forgets the machine.
    mutating func endLeave(cancelling: [Action], refs: inout RefCounter) -> [Action] {
        self.state = .closed(.left)
        let closed = cancelling + self.report(.closed(.left))
        if !self.hasSubscribers { return closed + [.removeChannel] }
        return closed + self.join(refs: &refs)
    }

    /// Moves to errored and schedules a rejoin (if the socket is open) on the rejoin schedule.
    mutating func becomeErrored(_ reason: Reason, cancelling: [Action]) -> [Action] {
        self.state = .errored(reason)
        self.pendingSystemError = nil
        var actions = cancelling
        if self.socketOpen {
            self.rejoinAttempts += 1
            let delay = self.configuration.rejoin.delay(attempt: self.rejoinAttempts, unit: self.random.nextUnit())
            actions.append(.scheduleTimer(.rejoin, after: delay))
        }
        return actions + self.report(.errored(reason))
    }

    /// Moves to errored and schedules a rejoin after the long rate-limit delay.
    mutating func becomeRateLimited(_ reason: ErrorReason, cancelling: [Action]) -> [Action] {
        self.state = .errored(.rateLimited(reason))
        self.pendingSystemError = nil
        var actions = cancelling
        if self.socketOpen {
            self.rejoinAttempts += 1
            let range = self.configuration.rateLimitedRejoinDelay
            let delay = range.lowerBound + (range.upperBound - range.lowerBound) * self.random.nextUnit()
            actions.append(.scheduleTimer(.rejoin, after: delay))
        }
        return actions + self.report(.errored(.rateLimited(reason)))
    }

    /// Moves to awaiting a token and asks the driver for one.
    mutating func awaitToken(_ reason: ErrorReason, cancelling: [Action]) -> [Action] {
        self.state = .awaitingToken(reason)
        self.pendingSystemError = nil
        return cancelling + self.report(.errored(.tokenExpired(reason))) + [.refreshTokenThenRejoin]
    }
}
