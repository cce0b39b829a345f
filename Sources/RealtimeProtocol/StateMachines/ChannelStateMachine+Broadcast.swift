// Broadcast from Database for ChannelStateMachine (broadcast-from-database.md, cited §Bn): broadcast subscribers,
// readiness after the replication ok (§B3), routing by event (§B7) and de-duplication on `meta.id` (§B5).

import JobSyncCore

extension ChannelStateMachine {
    // MARK: Types

    /// The `system` oks a join waits for before the channel is live.
    package struct Readiness: OptionSet, Sendable, Hashable {
        package let rawValue: UInt8
        package init(rawValue: UInt8) { self.rawValue = rawValue }

        /// "Subscribed to PostgreSQL" (§4.5), for a channel with `postgres_changes` bindings.
        package static let postgresChanges = Readiness(rawValue: 1 << 0)
        /// "Replication connection established" (§B3), for a channel with broadcast subscribers.
        package static let replication = Readiness(rawValue: 1 << 1)
    }

    /// What one broadcast subscriber asks for.
    package struct BroadcastOptions: Sendable {
        /// The events it wants (§B7).
        package var events: BroadcastEventFilter
        /// Join as a private channel (`config.private`, §B2). Every broadcast subscriber of a topic must agree.
        package var isPrivate: Bool
        /// Asked at every (re)join for the replay watermark in ms since the epoch (§B5); `nil` (the closure, or its
        /// answer) asks for no replay. Called on the client's loop: it must be quick and must not block.
        package var replaySince: (@Sendable () -> Int?)?
        /// The replay limit (clamped to 1…25 on the wire, §B5); `nil` lets the server use 25.
        package var replayLimit: Int?

        /// Creates options.
        package init(
            events: BroadcastEventFilter,
            isPrivate: Bool,
            replaySince: (@Sendable () -> Int?)? = nil,
            replayLimit: Int? = nil
        ) {
            self.events = events
            self.isPrivate = isPrivate
            self.replaySince = replaySince
            self.replayLimit = replayLimit
        }
    }

    /// One broadcast subscriber: its options and the ids it already received.
    struct BroadcastSubscriber: Sendable {
        var id: SubscriberID
        var options: BroadcastOptions
        var seen: RecentIDs
    }

    // MARK: Subscriptions

    /// A subscriber wants the broadcasts of this topic that `options.events` selects.
    ///
    /// The first subscriber joins the channel. The first broadcast subscriber of a channel that has only
    /// `postgres_changes` bindings, and any subscriber asking for replay, rejoin it (the join payload changes; a
    /// replay is only sent after a join, §B5), so the other subscribers hear ``NotLiveCause/rejoining`` and then
    /// ``SubscriberEvent/live``, and may receive replayed messages they did not see yet. Otherwise the subscriber
    /// shares the current join and is told ``SubscriberEvent/live`` at once if the others were.
    /// - Precondition: `options.isPrivate` equals ``broadcastIsPrivate`` when that is not `nil` (the driver checks).
    package mutating func subscribe(
        _ subscriber: SubscriberID,
        toBroadcast options: BroadcastOptions,
        refs: inout RefCounter
    ) -> [Action] {
        assert(!self.subscribers.contains(subscriber), "subscriber \(subscriber) subscribed twice")
        assert(self.broadcastIsPrivate.map { $0 == options.isPrivate } ?? true, "private and public broadcasts mixed")
        let first = self.broadcastFanOut.isEmpty
        self.broadcastFanOut.append(
            BroadcastSubscriber(
                id: subscriber, options: options,
                seen: RecentIDs(capacity: self.configuration.broadcastDeduplicationWindow)))
        if case .closed = self.state { return self.join(refs: &refs) }
        if first || options.replaySince != nil { return self.rebind(refs: &refs) }
        return self.announced == .live ? [.notify([subscriber], .live)] : []
    }

    // MARK: Messages

    /// A `broadcast` message for the current join (live or replayed, §B4): decoded, then handed to each subscriber
    /// whose filter selects its event and which has not received its `meta.id` yet. Messages without an id are
    /// always delivered. Replayed rows precede the replication ok (§B3), so a joined channel delivers before live.
    mutating func receiveBroadcast(_ payload: JSONValue) -> [Action] {
        guard !self.broadcastFanOut.isEmpty else { return [.ignored(.unhandledEvent(.broadcast))] }
        guard case .joined = self.state else { return [.ignored(.notJoined)] }
        let message: BroadcastMessage
        do {
            message = try BroadcastMessage(broadcastPayload: payload)
        } catch {
            return [.ignored(.malformedPayload(error.description))]
        }
        var selected = false
        var targets: [SubscriberID] = []
        for index in self.broadcastFanOut.indices {
            guard self.broadcastFanOut[index].options.events.matches(message.event) else { continue }
            selected = true
            if let id = message.id, !self.broadcastFanOut[index].seen.insert(id) { continue }
            targets.append(self.broadcastFanOut[index].id)
        }
        guard selected else { return [.ignored(.unroutableBroadcast(event: message.event))] }
        guard !targets.isEmpty else { return [.ignored(.duplicateBroadcast(id: message.id ?? ""))] }
        return [.notify(targets, .broadcast(message))]
    }
}
