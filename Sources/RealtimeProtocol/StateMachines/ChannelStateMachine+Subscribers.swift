// Fan-out for ChannelStateMachine: subscribers per binding, joining on the first and leaving on the last, and what
// each subscriber is told about liveness.

extension ChannelStateMachine {
    // MARK: Types

    /// One local subscriber of a channel: one subscription of the client.
    package enum Subscriber {}

    /// Identifies a ``Subscriber``: its number, unique per client.
    package typealias SubscriberID = SequenceID<Subscriber>

    /// What a subscriber is told.
    package enum SubscriberEvent: Sendable, Hashable {
        /// Changes flow: the `system` ok arrived (again, after every rejoin and token refresh, §4.5), or a late
        /// heartbeat reply came in while the channel was live.
        case live
        /// Changes are not (or no longer) flowing; a ``live`` follows once the channel has recovered.
        case notLive(NotLiveCause)
        /// A change matching the subscriber's binding.
        case change(PostgresChange)
        /// A broadcast message selected by the subscriber's event filter and new to it (§B5, §B7).
        case broadcast(BroadcastMessage)
        /// The server reported a `postgres_changes` subscription error (§4.5); the channel stays open.
        case postgresChangesError(String)
        /// The server reported a channel-level `system` error; a `phx_close` normally follows (§4.5, §8.2).
        case channelError(ErrorReason)
    }

    /// Why subscribers are told that changes are not flowing.
    package enum NotLiveCause: Sendable, Hashable {
        /// The channel is errored (``Reason/socketLost`` when the socket went); it rejoins by itself.
        case errored(Reason)
        /// The channel rejoins, because its bindings changed or a leave was interrupted by a new subscriber.
        case rejoining
        /// The server reported a `postgres_changes` error; the channel stays joined.
        case subscriptionError
        /// A heartbeat reply is late: the socket may be stalled. The connection is kept meanwhile.
        case socketUnresponsive
        /// The server closed the channel; its subscribers are finished right after.
        case closed(Reason)
    }

    /// What the subscribers were last told about liveness, so that nothing is said twice in a row.
    enum Announcement: Sendable, Hashable {
        /// Nothing yet.
        case nothing
        /// ``SubscriberEvent/live``.
        case live
        /// ``SubscriberEvent/notLive(_:)`` with this cause.
        case notLive(NotLiveCause)
    }

    /// One server binding and the subscribers reading it, in the order they subscribed.
    struct BindingSubscribers: Sendable, Hashable {
        var binding: PostgresChangeBinding
        var subscribers: [SubscriberID]
    }

    /// Every subscriber, binding by binding, then the broadcast subscribers.
    package var subscribers: [SubscriberID] { self.fanOut.flatMap(\.subscribers) + self.broadcastFanOut.map(\.id) }

    /// Whether any subscriber (of a binding or of broadcasts) wants the channel.
    var hasSubscribers: Bool { !self.fanOut.isEmpty || !self.broadcastFanOut.isEmpty }

    // MARK: Subscriptions

    /// A subscriber wants the changes matching `binding`.
    ///
    /// The first subscriber joins the channel. A binding equal to an existing one shares it (the subscriber is told
    /// ``SubscriberEvent/live`` at once if the others were). A new binding rejoins a joining or joined channel with
    /// the longer list and a new join ref (the server closes the old join; its `phx_close` is stale, §15.3); an
    /// errored channel takes it on its next rejoin, and a leaving one once the leave completes.
    package mutating func subscribe(
        _ subscriber: SubscriberID,
        to binding: PostgresChangeBinding,
        refs: inout RefCounter
    ) -> [Action] {
        if let index = self.fanOut.firstIndex(where: { $0.binding == binding }) {
            assert(!self.fanOut[index].subscribers.contains(subscriber), "subscriber \(subscriber) subscribed twice")
            self.fanOut[index].subscribers.append(subscriber)
            return self.announced == .live ? [.notify([subscriber], .live)] : []
        }
        self.fanOut.append(BindingSubscribers(binding: binding, subscribers: [subscriber]))
        if case .closed = self.state { return self.join(refs: &refs) }
        return self.rebind(refs: &refs)
    }

    /// A subscriber is gone. The last subscriber of a binding removes it (the channel rejoins without it); the last
    /// subscriber of the channel leaves it.
    package mutating func unsubscribe(_ subscriber: SubscriberID, refs: inout RefCounter) -> [Action] {
        if let index = self.broadcastFanOut.firstIndex(where: { $0.id == subscriber }) {
            self.broadcastFanOut.remove(at: index)
            if !self.hasSubscribers { return self.leave(refs: &refs) }
            // The last broadcast subscriber takes `private`, `replication_ready` and replay out of the join payload.
            return self.broadcastFanOut.isEmpty ? self.rebind(refs: &refs) : []
        }
        guard let index = self.fanOut.firstIndex(where: { $0.subscribers.contains(subscriber) }) else {
            // Subscribers finished by the machine (``Action/finishSubscribers(_:_:)``) are not reported back.
            assertionFailure("unsubscribe(\(subscriber)) of an unknown subscriber in state \(self.state)")
            return []
        }
        self.fanOut[index].subscribers.removeAll { $0 == subscriber }
        guard self.fanOut[index].subscribers.isEmpty else { return [] }
        self.fanOut.remove(at: index)
        return self.hasSubscribers ? self.rebind(refs: &refs) : self.leave(refs: &refs)
    }

    /// The client is shutting down: forget the subscribers (the driver ends them) and leave.
    package mutating func shutDown(refs: inout RefCounter) -> [Action] {
        self.fanOut = []
        self.broadcastFanOut = []
        return self.leave(refs: &refs)
    }

    /// The binding list changed: a joining or joined channel rejoins at once with the new list and a new join ref.
    /// Changes committed between the two joins are not delivered, so the channel reports `joining` (subscribers hear
    /// ``NotLiveCause/rejoining``) and later `live` again.
    mutating func rebind(refs: inout RefCounter) -> [Action] {
        switch self.state {
        case .joining(let joinRef?):
            return [.cancelTimer(.joinTimeout(joinRef))] + self.pushJoin(refs: &refs)
        case .joined:
            return self.pushJoin(refs: &refs)
        case .joining(nil), .errored, .awaitingToken, .leaving:
            // The next join, whenever it comes, carries the new list.
            return []
        case .closed:
            assertionFailure("rebind() in state \(self.state)")
            return []
        }
    }

    // MARK: Socket responsiveness

    /// A heartbeat reply is late: subscribers told ``SubscriberEvent/live`` hear
    /// ``NotLiveCause/socketUnresponsive``.
    package mutating func socketUnresponsive() -> [Action] {
        guard self.announced == .live else { return [] }
        return self.announceNotLive(.socketUnresponsive)
    }

    /// The late heartbeat reply arrived: if the channel is still live, its subscribers hear
    /// ``SubscriberEvent/live`` again.
    package mutating func socketResponsive() -> [Action] {
        guard self.announced != .live, self.isLive else { return [] }
        return self.announceLive()
    }

    // MARK: Reporting

    /// Reports a status change, followed by what it means for the subscribers.
    mutating func report(_ status: Status) -> [Action] {
        let reported: [Action] = [.reportStatus(status)]
        switch status {
        case .live:
            return reported + self.announceLive()
        case .joining:
            return reported + (self.announced == .live ? self.announceNotLive(.rejoining) : [])
        case .joined:
            // Joined again after live: the server reported a `postgres_changes` error.
            return reported + (self.announced == .live ? self.announceNotLive(.subscriptionError) : [])
        case .errored(let reason):
            return reported + self.announceNotLive(.errored(reason))
        case .closed(.left):
            // Left on purpose: nobody (or only subscribers who arrived during the leave) is listening.
            return reported
        case .closed(let reason):
            return reported + self.announceNotLive(.closed(reason))
        }
    }

    private mutating func announceLive() -> [Action] {
        self.announced = .live
        return [.notify(self.subscribers, .live)]
    }

    private mutating func announceNotLive(_ cause: NotLiveCause) -> [Action] {
        guard self.announced != .notLive(cause) else { return [] }
        self.announced = .notLive(cause)
        return [.notify(self.subscribers, .notLive(cause))]
    }
}
