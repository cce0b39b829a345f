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
                let published = self.publishedEvent(event, topic: topic)
                for subscriber in subscribers { self.yield(published, to: subscriber) }
            case .finishSubscribers(let subscribers, let reason):
                // The server closed the channel and it will not be rejoined (§9.3): end its subscriptions.
                let error = RealtimeClientError(.channelClosed, Self.describe(reason))
                for subscriber in subscribers {
                    self.subscriptions.removeValue(forKey: subscriber)?.continuation.finish(throwing: error)
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

    /// The public form of a subscriber event (counted and logged on the way).
    private func publishedEvent(
        _ event: ChannelStateMachine.SubscriberEvent,
        topic: Topic
    ) -> RealtimeSubscriptionEvent {
        switch event {
        case .live:
            return .live
        case .notLive(let cause):
            return .notLive(Self.notLiveReason(cause))
        case .change(let change):
            self.client.metrics.changesDelivered.increment()
            return .change(change)
        case .postgresChangesError(let message):
            self.logger.debug(
                "realtime postgres_changes error",
                metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(message))"])
            return .systemError(message)
        case .channelError(let reason):
            self.logger.debug(
                "realtime channel error",
                metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(reason.raw))"])
            return .systemError(reason.raw)
        }
    }

    static func notLiveReason(_ cause: ChannelStateMachine.NotLiveCause) -> NotLiveReason {
        switch cause {
        case .errored(.socketLost):
            NotLiveReason(kind: .socketLost, message: Self.describe(.socketLost))
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

    static func describe(_ reason: ChannelStateMachine.Reason) -> String {
        switch reason {
        case .joinRejected(let error): "join refused: \(Redaction.redact(error.raw))"
        case .joinTimedOut: "join timed out"
        case .bindingMismatch(let detail): detail
        case .serverError: "the server reported a channel error (phx_error)"
        case .socketLost: "the WebSocket connection was lost"
        case .tokenExpired(let error): "access token expired: \(Redaction.redact(error.raw))"
        case .rateLimited(let error): "rate limited: \(Redaction.redact(error.raw))"
        case .serverClosed(let error?): "the server closed the channel: \(Redaction.redact(error.raw))"
        case .serverClosed(nil): "the server closed the channel"
        case .left: "left"
        }
    }

    private func yield(_ event: RealtimeSubscriptionEvent, to subscriber: SubscriberID) {
        guard let subscription = self.subscriptions[subscriber] else { return }
        if case .dropped = subscription.continuation.yield(event) {
            // The consumer fell a whole buffer behind: end it rather than silently lose events. Its onTermination
            // sends `.unsubscribe`, which removes its binding.
            subscription.continuation.finish(
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
        self.subscriptions[request.id] = SubscriptionEntry(topic: topic, continuation: request.continuation)
        if self.channels[topic] == nil {
            self.channels[topic] = ChannelStateMachine(
                topic: topic, accessToken: self.accessToken, socketOpen: self.socket.isConnected,
                configuration: self.channelConfiguration, random: SplitMix64(seed: self.random.next()))
        }
        self.logger.debug(
            "realtime subscribe", metadata: ["realtime.topic": "\(topic)", "realtime.subscriber": "\(request.id)"])
        self.withChannel(topic, group: &group) { machine, refs in
            machine.subscribe(request.id, to: request.binding, refs: &refs)
        }
    }

    /// A subscription ended (its consumer stopped or fell behind): its channel's machine unbinds or leaves.
    func unsubscribe(_ id: SubscriberID, group: inout TaskGroup<Void>) {
        // Subscriptions the driver ended itself (channel closed, shutdown) are already gone.
        guard let subscription = self.subscriptions.removeValue(forKey: id) else { return }
        self.logger.debug(
            "realtime unsubscribe",
            metadata: ["realtime.topic": "\(subscription.topic)", "realtime.subscriber": "\(id)"])
        self.withChannel(subscription.topic, group: &group) { machine, refs in machine.unsubscribe(id, refs: &refs) }
    }
}
