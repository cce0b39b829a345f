public import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
public import SupabaseRealtime

/// ``JobChangeFeed`` over Broadcast from Database: the rows a trigger on the jobs table sends with
/// `realtime.broadcast_changes` (broadcast-from-database.md §B1.3, §B1.4), received on private channels.
///
/// Choose it over ``RealtimeJobFeed`` (`postgres_changes`) when the project uses Broadcast from Database: access is
/// decided per topic by RLS policies on `realtime.messages` (§B2) rather than per row, the server does not evaluate
/// every change against every subscriber's filter, and every (re)join replays the newest stored messages since the
/// store's watermark (§B5), so a short disconnection is usually caught up before the REST reconciliation returns.
/// It needs the trigger (§B1.4), a read policy for the user's role, and a user JWT as the Realtime access token
/// (the channels are private). Keep ``RealtimeJobFeed`` when the table is only in the `supabase_realtime`
/// publication.
///
/// ```swift
/// let feed = BroadcastJobFeed(client: realtime, topics: BroadcastTopics(), logger: logger)
/// let client = try JobSyncClient(configuration: .init(source: tableSource, feed: feed))
/// // or: JobSyncClient.supabase(url:apiKey:accessToken:…, feed: .broadcast(BroadcastTopics()))
/// ```
///
/// How it maps a ``JobFeedBinding`` to channels (``BroadcastTopics``):
/// - per job (``BroadcastTopics/Mode/perJob``, the default): one private channel per id (`jobs:<id>`) while the
///   feed holds at most ``BroadcastTopics/maximumPerJobTopics`` (90) of them, of the 100 a connection may join; a
///   binding that does not fit, and a table-wide binding, use the table-wide topic (`jobs`), filtered by id here;
/// - table-wide (``BroadcastTopics/Mode/tableWide``): the table-wide topic for every binding, filtered by id here.
///
/// What it reports:
/// - ``JobFeedEvent/live`` once every channel of the binding is joined and its replication connection is ready
///   (the `system` "Replication connection established" ok, §B3); ``JobFeedEvent/notLive(reason:)`` as soon as one
///   of them is not (messages may be missed);
/// - ``JobFeedEvent/change(_:)`` for each INSERT, UPDATE or DELETE payload (`operation`, `schema`, `table`, `record`,
///   `old_record`), the records as received, as ``RealtimeJobFeed`` delivers them (one merge path: the store decides
///   by the row's `updated_at`, so a replayed or repeated row never hides a newer version);
/// - every other message (another table, an undecodable payload) is skipped, counted in ``statistics`` and logged
///   at debug (event name and message id only, never the payload).
///
/// Replay: at every (re)join each channel asks for the newest ≤ 25 stored messages since
/// ``JobFeedContext/watermark`` (milliseconds, §B3), and for none while the store has no watermark. Bindings sharing
/// the table-wide topic share its channel: only the first asks for replay (a later one asking would rejoin the channel
/// and take the others out of live), and all receive what it replays; if it ends first, the channel's later rejoins
/// replay nothing until the others subscribe again (the REST reconciliation still covers them). Replay is capped
/// and live messages can be lost without a signal (§B5, §B6), so the client still reconciles over REST after every
/// ``JobFeedEvent/live`` and audits while live, as with `postgres_changes`.
///
/// - Important: The ``RealtimeClient`` must be running (``RealtimeClient/run()``), with an access token provider
///   giving a user JWT that the `realtime.messages` policies accept (§B2); without one the joins are refused
///   (`Unauthorized`) and retried, and the client polls meanwhile.
public struct BroadcastJobFeed: JobChangeFeed {
    /// What the feed received and skipped since it was created.
    public struct Statistics: Sendable, Hashable {
        /// Messages delivered as changes.
        public var changes = 0
        /// Messages of another schema or table, skipped.
        public var otherTable = 0
        /// Messages that are not a `broadcast_changes` row (no INSERT/UPDATE/DELETE, a record that is not an
        /// object, no valid job id), skipped.
        public var undecodable = 0
        /// Changes of jobs the binding did not ask for (on a table-wide topic), not delivered.
        public var notWatched = 0

        /// No messages yet.
        public init() {}
    }

    /// The Realtime client the channels are joined on.
    public let client: RealtimeClient
    /// The topics the trigger writes to.
    public let topics: BroadcastTopics
    /// The schema of the jobs table (default `public`): rows of other schemas are skipped.
    public let schema: String
    /// The jobs table (default `jobs`): rows of other tables are skipped.
    public let table: String
    private let logger: Logger
    private let state: SharedState

    /// The most events buffered between the channels of one binding and its handler; a handler that falls this far
    /// behind ends the subscription (the client subscribes again and reconciles).
    static let fanInBufferSize = 1_024

    /// Creates a feed.
    ///
    /// - Parameters:
    ///   - client: the Realtime client (run it alongside the ``JobSyncClient``), with a user JWT as access token.
    ///   - topics: the topics the trigger writes to (default `jobs:<id>` per job, `jobs` table-wide).
    ///   - schema: the table's schema.
    ///   - table: the table's name.
    ///   - logger: the logger (debug only).
    public init(
        client: RealtimeClient,
        topics: BroadcastTopics = BroadcastTopics(),
        schema: String = "public",
        table: String = "jobs",
        logger: Logger = Logger(label: "JobSync.broadcast", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.client = client
        self.topics = topics
        self.schema = schema
        self.table = table
        self.logger = logger
        self.state = SharedState()
    }

    /// What the feed received and skipped so far (shared by every subscription of this feed).
    public var statistics: Statistics {
        self.state.box.withLockedValue { $0.statistics }
    }

    /// Subscribes without a watermark: no replay at joins.
    public func subscribe(
        _ binding: JobFeedBinding,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        try await self.subscribe(binding, context: JobFeedContext(), handler: handler)
    }

    /// Subscribes to the binding's topics, replaying since `context`'s watermark at every (re)join.
    public func subscribe(
        _ binding: JobFeedBinding,
        context: JobFeedContext,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        let topics = self.topics
        let (plan, replayTopics) = self.state.box.withLockedValue { state -> (BroadcastTopicPlan, Set<String>) in
            let plan = BroadcastTopicPlan(
                binding: binding, mode: topics.mode, tableWide: topics.tableWide, perJob: topics.perJob,
                available: BroadcastTopics.maximumPerJobTopics - state.perJobTopicsInUse)
            state.perJobTopicsInUse += plan.perJobTopics
            // A subscription asking for replay on a channel already joined rejoins it (the join payload changes),
            // taking every binding on it out of live: only the first of the feed's subscriptions to a topic asks.
            // Later ones share its join, and receive what its rejoins replay.
            var replayTopics: Set<String> = []
            for subscription in plan.subscriptions {
                if state.subscriptionsByTopic[subscription.topic, default: 0] == 0 {
                    replayTopics.insert(subscription.topic)
                }
                state.subscriptionsByTopic[subscription.topic, default: 0] += 1
            }
            return (plan, replayTopics)
        }
        defer {
            self.state.box.withLockedValue { state in
                state.perJobTopicsInUse -= plan.perJobTopics
                for subscription in plan.subscriptions {
                    state.subscriptionsByTopic[subscription.topic, default: 1] -= 1
                    if state.subscriptionsByTopic[subscription.topic] == 0 {
                        state.subscriptionsByTopic[subscription.topic] = nil
                    }
                }
            }
        }
        self.logger.debug(
            "broadcast subscription",
            metadata: [
                "jobsync.topics": "\(plan.subscriptions.count)",
                "jobsync.topic": "\(plan.subscriptions.first?.topic ?? "")",
            ])
        // §B3/§B5: `since` is a JSON integer of milliseconds; no watermark, no replay on that join.
        let replay = BroadcastReplay(limit: BroadcastReplayOption.maximumLimit) {
            context.watermark().map { Int($0.microsecondsSinceEpoch / 1_000) }
        }
        try await self.fanIn(plan, replay: replay, replayTopics: replayTopics, handler: handler)
    }

    private enum Item: Sendable {
        case event(Int, BroadcastSubscriptionEvent)
        case ended(Int, (any Error)?)
    }

    /// Runs one subscription per planned topic and hands their events to `handler` one at a time, in arrival order.
    private func fanIn(
        _ plan: BroadcastTopicPlan,
        replay: BroadcastReplay,
        replayTopics: Set<String>,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        let (items, sink) = AsyncStream<Item>.makeStream(bufferingPolicy: .bufferingOldest(Self.fanInBufferSize))
        let overflowed = NIOLockedValueBox(false)
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            for (index, subscription) in plan.subscriptions.enumerated() {
                let events = self.client.broadcast(
                    topic: subscription.topic, isPrivate: true,
                    replay: replayTopics.contains(subscription.topic) ? replay : nil)
                group.addTask {
                    do {
                        for try await event in events {
                            if case .dropped = sink.yield(.event(index, event)) {
                                overflowed.withLockedValue { $0 = true }
                                sink.finish()
                                return
                            }
                        }
                        sink.yield(.ended(index, nil))
                    } catch {
                        sink.yield(.ended(index, error))
                    }
                }
            }
            var liveness = BroadcastFanIn(topics: plan.subscriptions.count)
            for await item in items {
                switch item {
                case .ended(let index, let error):
                    self.logger.debug(
                        "broadcast subscription ended",
                        metadata: ["jobsync.topic": "\(plan.subscriptions[index].topic)"])
                    if let error { throw error }
                    return
                case .event(let index, let event):
                    await self.handle(event, of: plan.subscriptions[index], index: index, liveness: &liveness,
                        handler: handler)
                }
            }
            if overflowed.withLockedValue({ $0 }) {
                throw JobSyncError(
                    code: .subscriberTooSlow, message: "the broadcast feed's handler fell too far behind")
            }
        }
    }

    private func handle(
        _ event: BroadcastSubscriptionEvent,
        of subscription: BroadcastTopicPlan.Subscription,
        index: Int,
        liveness: inout BroadcastFanIn,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async {
        switch event {
        case .live:
            if liveness.topicLive(index) == .live { await handler(.live) }
        case .notLive(let reason):
            if liveness.topicNotLive(index) == .notLive {
                await handler(.notLive(reason: "\(subscription.topic): \(reason)"))
            }
        case .systemError(let message):
            // Server text about the channel (a revocation, a readiness timeout); no credentials are sent there.
            self.logger.debug(
                "broadcast channel error",
                metadata: ["jobsync.topic": "\(subscription.topic)", "jobsync.error": "\(message)"])
            if liveness.topicNotLive(index) == .notLive {
                await handler(.notLive(reason: "\(subscription.topic): channel error: \(message)"))
            }
        case .message(let message):
            switch BroadcastChangeDecoding(message, schema: self.schema, table: self.table) {
            case .change(let change, let id):
                if let ids = subscription.ids, !ids.contains(id) {
                    self.state.box.withLockedValue { $0.statistics.notWatched += 1 }
                    return
                }
                self.state.box.withLockedValue { $0.statistics.changes += 1 }
                await handler(.change(change))
            case .skipped(let skip):
                self.state.box.withLockedValue { state in
                    switch skip {
                    case .otherTable: state.statistics.otherTable += 1
                    case .undecodable: state.statistics.undecodable += 1
                    }
                }
                // The event name and the message id only: the payload holds row data.
                self.logger.debug(
                    "broadcast message skipped",
                    metadata: [
                        "jobsync.topic": "\(subscription.topic)", "jobsync.event": "\(message.event)",
                        "jobsync.message": "\(message.id ?? "-")", "jobsync.skip": "\(skip.rawValue)",
                    ])
            }
        }
    }
}

/// A feed's counters and per-job topic count, shared by its subscriptions (copies of the feed share it too).
private final class SharedState: Sendable {
    struct Value: Sendable {
        var perJobTopicsInUse = 0
        /// The feed's active subscriptions per topic (several bindings may share the table-wide topic).
        var subscriptionsByTopic: [String: Int] = [:]
        var statistics = BroadcastJobFeed.Statistics()
    }

    let box = NIOLockedValueBox(Value())
}
