// Broadcast from Database subscriptions (broadcast-from-database.md, cited §Bn).

public import RealtimeProtocol

/// What a broadcast subscription reports.
public enum BroadcastSubscriptionEvent: Sendable, Hashable {
    /// The channel is joined and the server's replication connection is established (`system` "Replication
    /// connection established" ok, §B3): messages committed from now on stream live. Sent again after every rejoin.
    /// Replayed messages of a join may come before it.
    case live
    /// Messages are not (or no longer) flowing; a ``live`` follows once the client has recovered. The reason's
    /// kind tells refusals (``NotLiveReason/Kind/unauthorized``), revocations (``NotLiveReason/Kind/accessRevoked``),
    /// rate limits (``NotLiveReason/Kind/rateLimited``) and readiness timeouts
    /// (``NotLiveReason/Kind/replicationNotReady``) apart.
    case notLive(NotLiveReason)
    /// A message whose event the subscription selects, delivered at most once per `meta.id` within the
    /// subscription's de-duplication window (``RealtimeClient/Configuration/broadcastDeduplicationWindow``).
    case message(BroadcastMessage)
    /// A channel-level `system` error from the server (e.g. a revocation, §B2); a ``notLive(_:)`` follows.
    case systemError(String)
}

/// Where a broadcast subscription's replay starts (§B5): the server sends the newest ≤ `limit` stored messages
/// inserted at or after `since`, oldest first, after every (re)join.
public struct BroadcastReplay: Sendable {
    /// Called at every (re)join for the watermark, in milliseconds since the Unix epoch (UTC), e.g. the
    /// `inserted_at` of the newest message handled minus a margin for clock skew; `nil` replays nothing on that join.
    /// It runs on the client's event loop: it must return quickly and must not block.
    public var since: @Sendable () -> Int?
    /// At most this many messages per join, clamped to 1…25; `nil` (default) lets the server send 25.
    public var limit: Int?

    /// Creates a replay option.
    /// - Parameters:
    ///   - limit: at most this many messages per join (1…25); `nil` for the server's 25.
    ///   - since: the watermark in ms since the epoch, asked at every (re)join; `nil` for no replay on that join.
    public init(limit: Int? = nil, since: @escaping @Sendable () -> Int?) {
        self.since = since
        self.limit = limit
    }
}

/// The events of one broadcast subscription, from ``RealtimeClient/broadcast(topic:isPrivate:events:replay:)`` (see
/// ``RealtimeSubscription``). It also throws ``RealtimeClientError/Code/invalidSubscription`` for arguments it cannot
/// honour.
public typealias BroadcastSubscription = RealtimeSubscription<BroadcastSubscriptionEvent>

extension RealtimeClient {
    /// Subscribes to the broadcast messages of a topic, such as the rows a trigger sends with
    /// `realtime.broadcast_changes` (Broadcast from Database, §B1).
    ///
    /// The channel `realtime:<topic>` is joined with `replication_ready` (§B3), so the subscription reports
    /// ``BroadcastSubscriptionEvent/live`` only once the server's replication connection is up. With `replay`, every
    /// (re)join asks `replay.since` for the current watermark and the server first sends the newest stored messages
    /// since then (`BroadcastMessage.isReplayed`). Messages are de-duplicated on `meta.id` per subscription across
    /// rejoins (the last ``Configuration/broadcastDeduplicationWindow`` ids); messages without an id are always
    /// delivered. Live messages lost during a server outage are not signalled (§B6): catch up with replay or REST
    /// after each ``BroadcastSubscriptionEvent/live``.
    ///
    /// Subscriptions to the same topic share one channel and must agree on `isPrivate`. A subscription asking for
    /// replay on a topic already joined rejoins it, so the others see ``BroadcastSubscriptionEvent/notLive(_:)``,
    /// then ``BroadcastSubscriptionEvent/live``, and only messages they have not received yet.
    ///
    /// - Parameters:
    ///   - topic: the sub-topic, e.g. `jobs:42` (the client adds `realtime:`).
    ///   - isPrivate: join as a private channel (default), authorized by RLS policies on `realtime.messages` with
    ///     the access token (§B2). `realtime.broadcast_changes` always writes private messages.
    ///   - events: the event names wanted, compared case-insensitively (§B7); `["*"]` (default) or an empty list
    ///     selects every event.
    ///   - replay: where replay starts at each join (private channels only, §B5), or `nil` for none.
    /// - Returns: the subscription's events. It throws ``RealtimeClientError/Code/invalidSubscription`` at once for
    ///   an empty topic, for replay on a public channel, or when the topic is already subscribed with the other
    ///   privacy.
    public func broadcast(
        topic: String,
        isPrivate: Bool = true,
        events: [String] = ["*"],
        replay: BroadcastReplay? = nil
    ) -> BroadcastSubscription {
        let id = self.nextSubscriberID()
        let (stream, continuation) = AsyncThrowingStream<BroadcastSubscriptionEvent, any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(self.configuration.subscriptionBufferSize))
        if topic.isEmpty || (replay != nil && !isPrivate) {
            let problem = topic.isEmpty ? "the topic is empty" : "replay is only available on private channels (§B5)"
            continuation.finish(throwing: RealtimeClientError(.invalidSubscription, problem))
            return BroadcastSubscription(stream: stream)
        }
        let mailbox = self.events
        continuation.onTermination = { _ in mailbox.send(.unsubscribe(id)) }
        let options = ChannelStateMachine.BroadcastOptions(
            events: BroadcastEventFilter(events), isPrivate: isPrivate, replaySince: replay?.since,
            replayLimit: replay?.limit)
        let request = SubscriptionRequest(
            id: id, kind: .broadcast(options), channel: topic, sink: .broadcast(continuation))
        if !self.events.send(.subscribe(request)) {
            continuation.finish(throwing: RealtimeClientError(.clientShutDown, "the Realtime client has shut down"))
        }
        return BroadcastSubscription(stream: stream, backlog: (self.backlog, id))
    }
}
