import JobSyncCore
import Logging
import Metrics
import RealtimeProtocol

extension ClientDriver {
    // MARK: Channel actions

    /// Runs one event on a channel's machine and executes its actions.
    func withChannel(
        _ topic: Topic,
        group: inout TaskGroup<Void>,
        _ body: (inout ChannelStateMachine, inout RefCounter) -> [ChannelStateMachine.Action]
    ) {
        guard var machine = self.channels[topic] else { return }
        let actions = body(&machine, &self.socket.refs)
        self.channels[topic] = machine
        self.execute(actions, topic: topic, group: &group)
    }

    /// Runs one event on every channel's machine.
    func withEveryChannel(
        group: inout TaskGroup<Void>,
        _ body: (inout ChannelStateMachine, inout RefCounter) -> [ChannelStateMachine.Action]
    ) {
        for topic in Array(self.channels.keys) {
            self.withChannel(topic, group: &group, body)
        }
    }

    /// Executes channel actions in the order the machine returned them.
    func execute(_ actions: [ChannelStateMachine.Action], topic: Topic, group: inout TaskGroup<Void>) {
        for action in actions {
            switch action {
            case .push(let message):
                self.send(message)
            case .scheduleTimer(let timer, let delay):
                self.schedule(.channel(topic, timer), after: delay, group: &group)
            case .cancelTimer(let timer):
                self.cancel(.channel(topic, timer))
            case .reportStatus(let status):
                self.logger.debug(
                    "realtime channel status", metadata: ["realtime.topic": "\(topic)", "realtime.status": "\(status)"])
            case .notify(let subscribers, let event):
                self.record(event, topic: topic)
                for subscriber in subscribers { self.yield(event, to: subscriber) }
            case .finishSubscribers(let subscribers, let reason):
                // The server closed the channel and it will not be rejoined (§9.3): end its subscriptions.
                let error = RealtimeClientError(.channelClosed, Self.describe(reason))
                for subscriber in subscribers {
                    self.subscriptions.removeValue(forKey: subscriber)?.sink.finish(throwing: error)
                }
            case .refreshTokenThenRejoin:
                if self.configuration.accessToken == nil {
                    // No provider: nothing can refresh the token; rejoin on the schedule instead.
                    self.withChannel(topic, group: &group) { machine, _ in machine.tokenRefreshFailed() }
                } else {
                    self.startTokenFetch(group: &group)
                }
            case .ignored(let reason):
                self.client.metrics.ignoredMessages.increment()
                self.logger.trace(
                    "realtime message ignored",
                    metadata: ["realtime.topic": "\(topic)", "realtime.reason": "\(reason)"])
            case .removeChannel:
                self.logger.debug("realtime channel removed", metadata: ["realtime.topic": "\(topic)"])
                self.channels[topic] = nil
            }
        }
    }

    /// Counts and logs a subscriber event once, before it is handed to its subscribers.
    private func record(_ event: ChannelStateMachine.SubscriberEvent, topic: Topic) {
        switch event {
        case .live, .notLive:
            break
        case .change:
            self.client.metrics.changesDelivered.increment()
        case .broadcast:
            self.client.metrics.broadcastsDelivered.increment()
        case .postgresChangesError(let message):
            self.logger.debug(
                "realtime postgres_changes error",
                metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(message))"])
        case .channelError(let reason):
            self.logger.debug(
                "realtime channel error",
                metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(reason.raw))"])
        }
    }

    /// The public form of a subscriber event for a `postgres_changes` subscription (`nil`: not for it).
    static func postgresChangesEvent(_ event: ChannelStateMachine.SubscriberEvent) -> RealtimeSubscriptionEvent? {
        switch event {
        case .live: .live
        case .notLive(let cause): .notLive(Self.notLiveReason(cause))
        case .change(let change): .change(change)
        case .broadcast: nil
        case .postgresChangesError(let message): .systemError(message)
        case .channelError(let reason): .systemError(reason.raw)
        }
    }

    /// The public form of a subscriber event for a broadcast subscription (`nil`: not for it).
    static func broadcastEvent(_ event: ChannelStateMachine.SubscriberEvent) -> BroadcastSubscriptionEvent? {
        switch event {
        case .live: .live
        case .notLive(let cause): .notLive(Self.notLiveReason(cause))
        case .broadcast(let message): .message(message)
        case .change: nil
        case .postgresChangesError(let message): .systemError(message)
        case .channelError(let reason): .systemError(reason.raw)
        }
    }

    static func notLiveReason(_ cause: ChannelStateMachine.NotLiveCause) -> NotLiveReason {
        switch cause {
        case .errored(.socketLost):
            NotLiveReason(kind: .socketLost, message: Self.describe(.socketLost))
        case .errored(let reason) where Self.errorKind(reason) != nil:
            NotLiveReason(kind: Self.errorKind(reason) ?? .channelErrored, message: Self.describe(reason))
        case .errored(let reason):
            NotLiveReason(kind: .channelErrored, message: Self.describe(reason))
        case .rejoining:
            NotLiveReason(kind: .rejoining, message: "rejoining the channel")
        case .subscriptionError:
            NotLiveReason(kind: .subscriptionError, message: "postgres_changes subscription error")
        case .socketUnresponsive:
            NotLiveReason(kind: .socketUnresponsive, message: "no heartbeat reply: the socket stalls")
        case .closed(let reason):
            NotLiveReason(kind: .channelClosed, message: Self.describe(reason))
        }
    }

    /// The specific kind of an error a subscriber can act on (§B2, §B3, §7.2), or `nil` for a plain
    /// ``NotLiveReason/Kind/channelErrored``.
    static func errorKind(_ reason: ChannelStateMachine.Reason) -> NotLiveReason.Kind? {
        switch reason {
        case .joinRejected(let error):
            switch error.kind {
            case .unauthorized: .unauthorized
            case .rateLimited: .rateLimited
            case .tokenExpired, .invalidToken, .serverRestarting, .transient, .replicationNotReady, .other: nil
            }
        case .rateLimited: .rateLimited
        case .accessRevoked: .accessRevoked
        case .replicationNotReady: .replicationNotReady
        case .joinTimedOut, .bindingMismatch, .serverError, .socketLost, .tokenExpired, .serverClosed, .left: nil
        }
    }

    static func describe(_ reason: ChannelStateMachine.Reason) -> String {
        switch reason {
        case .joinRejected(let error): "join refused: \(Redaction.redact(error.raw))"
        case .joinTimedOut: "join timed out"
        case .bindingMismatch(let detail): detail
        case .serverError: "the server reported a channel error (phx_error)"
        case .socketLost: "the WebSocket connection was lost"
        case .tokenExpired(let error): "access token expired: \(Redaction.redact(error.raw))"
        case .rateLimited(let error): "rate limited: \(Redaction.redact(error.raw))"
        case .accessRevoked(let error): "read access revoked: \(Redaction.redact(error.raw))"
        case .replicationNotReady(let error): "replication not ready: \(Redaction.redact(error.raw))"
        case .serverClosed(let error?): "the server closed the channel: \(Redaction.redact(error.raw))"
        case .serverClosed(nil): "the server closed the channel"
        case .left: "left"
        }
    }

    private func yield(_ event: ChannelStateMachine.SubscriberEvent, to subscriber: SubscriberID) {
        guard let subscription = self.subscriptions[subscriber] else { return }
        let result: YieldOutcome
        switch subscription.sink {
        case .postgresChanges(let continuation):
            guard let published = Self.postgresChangesEvent(event) else { return }
            result = YieldOutcome(continuation.yield(published))
        case .broadcast(let continuation):
            guard let published = Self.broadcastEvent(event) else { return }
            result = YieldOutcome(continuation.yield(published))
        }
        if result == .enqueued { self.client.backlog.added(subscriber) }
        if result == .dropped {
            // The consumer fell a whole buffer behind: end it rather than silently lose events. Its onTermination
            // sends `.unsubscribe`, which removes its binding.
            subscription.sink.finish(
                throwing: RealtimeClientError(
                    .subscriptionOverflow,
                    "the consumer fell \(self.configuration.subscriptionBufferSize) events behind"))
        }
    }

    // MARK: Subscriptions

    /// Hands a subscription to its channel's machine (made on first use of the topic), which joins, shares or
    /// rebinds.
    func subscribe(_ request: SubscriptionRequest, group: inout TaskGroup<Void>) {
        let topic: Topic
        if let name = request.channel {
            topic = .realtime(name)
        } else {
            self.channelCounter += 1
            topic = .realtime("\(self.configuration.channelPrefix)-\(self.channelCounter)")
        }
        if case .broadcast(let options) = request.kind, let existing = self.channels[topic]?.broadcastIsPrivate,
            existing != options.isPrivate
        {
            // One socket joins a topic once; a private and a public broadcast channel of one name cannot share it.
            request.sink.finish(
                throwing: RealtimeClientError(
                    .invalidSubscription,
                    "\(topic) is already subscribed as a \(existing ? "private" : "public") broadcast channel"))
            return
        }
        self.subscriptions[request.id] = SubscriptionEntry(topic: topic, sink: request.sink)
        if self.channels[topic] == nil {
            self.channels[topic] = ChannelStateMachine(
                topic: topic, accessToken: self.accessToken, socketOpen: self.socket.isConnected,
                configuration: self.channelConfiguration, random: SplitMix64(seed: self.random.next()))
        }
        self.logger.debug(
            "realtime subscribe", metadata: ["realtime.topic": "\(topic)", "realtime.subscriber": "\(request.id)"])
        self.withChannel(topic, group: &group) { machine, refs in
            switch request.kind {
            case .postgresChanges(let binding): machine.subscribe(request.id, to: binding, refs: &refs)
            case .broadcast(let options): machine.subscribe(request.id, toBroadcast: options, refs: &refs)
            }
        }
    }

    /// A subscription ended (its consumer stopped or fell behind): its channel's machine unbinds or leaves.
    func unsubscribe(_ id: SubscriberID, group: inout TaskGroup<Void>) {
        self.client.backlog.removed(id)
        // Subscriptions the driver ended itself (channel closed, shutdown) are already gone.
        guard let subscription = self.subscriptions.removeValue(forKey: id) else { return }
        self.logger.debug(
            "realtime unsubscribe",
            metadata: ["realtime.topic": "\(subscription.topic)", "realtime.subscriber": "\(id)"])
        self.withChannel(subscription.topic, group: &group) { machine, refs in machine.unsubscribe(id, refs: &refs) }
    }
}

/// What handing an event to a subscription's stream did.
enum YieldOutcome {
    case enqueued, dropped, terminated

    init<Event>(_ result: AsyncThrowingStream<Event, any Error>.Continuation.YieldResult) {
        switch result {
        case .enqueued: self = .enqueued
        case .dropped: self = .dropped
        case .terminated: self = .terminated
        @unknown default: self = .terminated
        }
    }
}
