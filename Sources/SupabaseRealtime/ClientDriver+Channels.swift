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
        guard var record = self.channels[topic] else { return }
        let actions = body(&record.machine, &self.socket.refs)
        self.channels[topic] = record
        self.execute(actions, topic: topic, group: &group)
    }

    /// Executes channel actions. Effects (pushes, timers, token refresh) run before observations (status,
    /// deliveries, errors), so that a consumer reacting to an observation sees its implied timers scheduled.
    func execute(_ actions: [ChannelStateMachine.Action], topic: Topic, group: inout TaskGroup<Void>) {
        let isObservation: (ChannelStateMachine.Action) -> Bool = { action in
            switch action {
            case .push, .scheduleTimer, .cancelTimer, .refreshTokenThenRejoin: false
            case .reportStatus, .deliver, .reportPostgresChangesError, .reportSystemError, .ignored: true
            }
        }
        for action in actions.filter({ !isObservation($0) }) + actions.filter(isObservation) {
            switch action {
            case .push(let message):
                self.send(message)
            case .scheduleTimer(let timer, let delay):
                self.schedule(.channel(topic, timer), after: delay, group: &group)
            case .cancelTimer(let timer):
                self.cancel(.channel(topic, timer))
            case .reportStatus(let status):
                self.channelStatusChanged(topic, status, group: &group)
            case .deliver(let change, let indices):
                guard let record = self.channels[topic] else { continue }
                for index in indices where index < record.bindings.count {
                    for subscriber in record.bindings[index].subscribers {
                        self.yield(.change(change), to: subscriber)
                    }
                }
                self.client.metrics.changesDelivered.increment()
            case .reportPostgresChangesError(let message):
                self.logger.debug(
                    "realtime postgres_changes error",
                    metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(message))"])
                self.yieldToChannel(topic, .systemError(message))
            case .reportSystemError(let reason):
                self.logger.debug(
                    "realtime channel error",
                    metadata: ["realtime.topic": "\(topic)", "realtime.error": "\(Redaction.redact(reason.raw))"])
                self.yieldToChannel(topic, .systemError(reason.raw))
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
            }
        }
    }

    private func channelStatusChanged(
        _ topic: Topic,
        _ status: ChannelStateMachine.Status,
        group: inout TaskGroup<Void>
    ) {
        self.logger.debug(
            "realtime channel status", metadata: ["realtime.topic": "\(topic)", "realtime.status": "\(status)"])
        guard var record = self.channels[topic] else { return }
        switch status {
        case .live:
            record.live = true
            record.lastNotLive = nil
            self.channels[topic] = record
            self.yieldToChannel(topic, .live)
        case .joining:
            if record.live {
                self.notLive(topic, NotLiveReason(kind: .rejoining, message: "rejoining the channel"))
            }
        case .joined:
            if record.live {
                self.notLive(
                    topic, NotLiveReason(kind: .subscriptionError, message: "postgres_changes subscription error"))
            }
        case .errored(let reason):
            let kind: NotLiveReason.Kind = reason == .socketLost ? .socketLost : .channelErrored
            self.notLive(topic, NotLiveReason(kind: kind, message: Self.describe(reason)))
        case .closed(.left):
            if record.bindings.isEmpty {
                self.channels[topic] = nil
            } else {
                // Bindings were added while the leave was in flight: join again.
                self.withChannel(topic, group: &group) { machine, refs in machine.join(refs: &refs) }
            }
        case .closed(let reason):
            // The server closed the channel and it will not be rejoined (§9.3): end its subscriptions.
            let message = Self.describe(reason)
            self.notLive(topic, NotLiveReason(kind: .channelClosed, message: message))
            let subscribers = record.bindings.flatMap(\.subscribers)
            self.channels[topic] = nil
            for subscriber in subscribers {
                guard let subscription = self.subscriptions.removeValue(forKey: subscriber) else { continue }
                subscription.continuation.finish(throwing: RealtimeClientError(.channelClosed, message))
            }
        }
    }

    /// A late heartbeat reply (``RealtimeClient/Configuration/unresponsiveAfter``): live subscriptions report
    /// ``NotLiveReason/Kind/socketUnresponsive``; once the reply arrives, those whose channel is still live report
    /// ``RealtimeSubscriptionEvent/live`` again.
    func socketResponsivenessChanged(responsive: Bool) {
        for (topic, record) in self.channels {
            if responsive {
                guard !record.live, record.machine.status == .live else { continue }
                self.channels[topic]?.live = true
                self.channels[topic]?.lastNotLive = nil
                self.yieldToChannel(topic, .live)
            } else if record.live {
                self.notLive(
                    topic, NotLiveReason(kind: .socketUnresponsive, message: "no heartbeat reply: the socket stalls"))
            }
        }
    }

    private func notLive(_ topic: Topic, _ reason: NotLiveReason) {
        guard var record = self.channels[topic] else { return }
        guard record.live || record.lastNotLive != reason else { return }
        record.live = false
        record.lastNotLive = reason
        self.channels[topic] = record
        self.yieldToChannel(topic, .notLive(reason))
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

    private func yieldToChannel(_ topic: Topic, _ event: RealtimeSubscriptionEvent) {
        guard let record = self.channels[topic] else { return }
        for binding in record.bindings {
            for subscriber in binding.subscribers { self.yield(event, to: subscriber) }
        }
    }

    private func yield(_ event: RealtimeSubscriptionEvent, to subscriber: UInt64) {
        guard let subscription = self.subscriptions[subscriber] else { return }
        if case .dropped = subscription.continuation.yield(event) {
            // The consumer fell a whole buffer behind: end it rather than silently lose events. Its onTermination
            // sends `.unsubscribe`, which removes the binding.
            subscription.continuation.finish(
                throwing: RealtimeClientError(
                    .subscriptionOverflow,
                    "the consumer fell \(self.configuration.subscriptionBufferSize) events behind"))
        }
    }

    // MARK: Subscriptions

    func subscribe(_ request: SubscriptionRequest, group: inout TaskGroup<Void>) {
        let topic: Topic
        if let name = request.channel {
            topic = .realtime(name)
        } else {
            self.channelCounter += 1
            topic = .realtime("\(self.configuration.channelPrefix)-\(self.channelCounter)")
        }
        self.subscriptions[request.id] = SubscriptionEntry(topic: topic, continuation: request.continuation)
        if var record = self.channels[topic] {
            if let index = record.bindings.firstIndex(where: { $0.binding == request.binding }) {
                // Same binding as an existing subscription: share the server binding.
                record.bindings[index].subscribers.append(request.id)
                self.channels[topic] = record
                if record.live { self.yield(.live, to: request.id) }
                return
            }
            record.bindings.append(BindingRecord(binding: request.binding, subscribers: [request.id]))
            self.channels[topic] = record
            self.rebind(topic, group: &group)
            return
        }
        guard let machine = ChannelStateMachine(
            topic: topic, bindings: [request.binding], accessToken: self.accessToken,
            socketOpen: self.socket.isConnected, configuration: self.channelConfiguration,
            random: JitterGenerator(seed: self.random.next()))
        else { return }
        self.channels[topic] = ChannelRecord(
            machine: machine, bindings: [BindingRecord(binding: request.binding, subscribers: [request.id])],
            live: false, lastNotLive: nil)
        self.logger.debug("realtime subscribe", metadata: ["realtime.topic": "\(topic)"])
        self.withChannel(topic, group: &group) { machine, refs in machine.join(refs: &refs) }
    }

    func unsubscribe(_ id: UInt64, group: inout TaskGroup<Void>) {
        guard let subscription = self.subscriptions.removeValue(forKey: id) else { return }
        let topic = subscription.topic
        guard var record = self.channels[topic] else { return }
        for index in record.bindings.indices { record.bindings[index].subscribers.removeAll { $0 == id } }
        let before = record.bindings.count
        record.bindings.removeAll { $0.subscribers.isEmpty }
        self.channels[topic] = record
        guard record.bindings.count != before else { return }
        if record.bindings.isEmpty {
            self.logger.debug("realtime leave", metadata: ["realtime.topic": "\(topic)"])
            self.withChannel(topic, group: &group) { machine, refs in machine.leave(refs: &refs) }
        } else {
            self.rebind(topic, group: &group)
        }
    }

    /// Pushes the record's binding list into the machine (which rejoins if needed).
    private func rebind(_ topic: Topic, group: inout TaskGroup<Void>) {
        guard let record = self.channels[topic] else { return }
        let bindings = record.bindings.map(\.binding)
        self.withChannel(topic, group: &group) { machine, refs in
            // Bindings in a record are unique by construction, so the update is never refused.
            machine.updateBindings(bindings, refs: &refs) ?? []
        }
    }
}
