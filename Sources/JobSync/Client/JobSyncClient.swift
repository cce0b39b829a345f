public import Logging
import Metrics
public import ServiceLifecycle
import SupabaseREST
import NIOConcurrencyHelpers

/// Keeps a ``JobStore`` equal to the server's jobs: Realtime changes when live, REST reconciliation after every
/// `live`, REST polling with backoff while not live, and an audit while live: every 5 s while some job is open,
/// every 30 s while none is (``Configuration/openAuditInterval``, ``Configuration/auditInterval``).
///
/// ```swift
/// let client = try JobSyncClient(configuration: .init(source: table, feed: realtimeAdapter))
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await client.run() }
///     let job = try await client.waitForCompletion(of: id, timeout: .seconds(600))
///     print(job.result?.view?.classification ?? "-")
///     group.cancelAll()  // stops run()
/// }
/// ```
///
/// - Important: `run()` owns every background loop (subscriptions, polling, timers); cancelling it stops them.
///   ``watch(_:)`` and ``waitForCompletion(of:timeout:)`` may be called before or while it runs. Call `run()` once
///   per client: after it returns, make a new client (the store can be reused).
public final class JobSyncClient: Service, Sendable {
    /// Which jobs are kept in sync.
    public enum WatchMode: Sendable, Hashable {
        /// The ids passed to ``JobSyncClient/watch(_:)``.
        case jobs
        /// Every job of the table (one table-wide binding, watermark reconciliation).
        case allJobs
    }

    /// Client settings.
    public struct Configuration: Sendable {
        /// Where rows are read over REST.
        public var source: any JobSource
        /// The realtime feed; `nil` disables realtime (REST polling only, first poll at once).
        public var feed: (any JobChangeFeed)?
        /// Which jobs to keep in sync (default ``WatchMode/jobs``).
        public var mode: WatchMode
        /// The clock for every timer (default `ContinuousClock`).
        public var clock: any Clock<Duration>
        /// The first poll happens within this delay after the feed stops being live (default 1 s); it is also
        /// the backoff base.
        public var initialPollDelay: Duration
        /// The backoff cap (default 30 s).
        public var maximumPollDelay: Duration
        /// The audit interval while live and no job is open (default 30 s): in ``WatchMode/jobs`` every watched job
        /// is finished or deleted; in ``WatchMode/allJobs`` the store holds no unfinished job.
        public var auditInterval: Duration
        /// The audit interval while live and some job is open (default 5 s): in ``WatchMode/jobs`` a watched job is
        /// neither finished nor deleted (or not read yet); in ``WatchMode/allJobs`` the store holds an unfinished job
        /// (a job stuck unfinished on the server keeps it short).
        ///
        /// An audit is cheap: one watermark read of `id` and `updated_at` only (``JobSource/fetchVersions(since:)``,
        /// keyset-paged, usually one request), compared with the store; only the rows the store has older (changes the
        /// feed dropped, or had not delivered yet) are then read in full by id. So a change Realtime silently drops
        /// reaches subscribers within about this interval, at one request per interval while nothing is dropped:
        /// the trade-off is latency of a dropped change against requests, 60 / interval per minute (5 s: at most 12
        /// requests a minute, whatever the number of watched jobs; 2 s: 30; 10 s: 6 and dropped changes take up to
        /// 10 s). Each audit starts this long after the previous one ended. A source without a watermark
        /// (``JobSource/supportsWatermark`` `false`) audits by id, one request per 100 unfinished jobs (or per job
        /// for the status endpoint), so it always uses ``auditInterval``.
        public var openAuditInterval: Duration
        /// How often, while live, an audit reads the unfinished jobs by id instead of by watermark (default 5 min
        /// of audit intervals: every tenth audit while no job is open, every 60th while some are): the only read
        /// that finds a deletion the feed dropped (a filtered subscription gets no DELETE for a row its filter cannot
        /// see, and a watermark read cannot see a deleted row). It costs one request per 100 unfinished jobs (for
        /// 10,000 open jobs, 100 requests every 5 min: 20 a minute on average, on top of the audits).
        public var deletionSweepInterval: Duration
        /// Subtracted from the watermark in watermark queries, to tolerate clock skew and late commits (default 5 s).
        public var watermarkSkew: Duration
        /// The delay before subscribing again after a feed subscription ended (default 1 s).
        public var resubscribeDelay: Duration
        /// Watched ids up to this count get `id=in.(…)` bindings of 100 ids each (default 10,000, i.e. 100
        /// channels); beyond it one table-wide binding is filtered locally.
        public var maximumFilteredIDs: Int
        /// Picks a delay in `0...maximum` (default: uniformly random, i.e. full jitter). Tests pass a fixed choice.
        public var jitter: @Sendable (_ maximum: Duration) -> Duration
        /// The logger (trace/debug only).
        public var logger: Logger

        /// Creates a configuration with the defaults documented on each property.
        public init(
            source: any JobSource,
            feed: (any JobChangeFeed)?,
            mode: WatchMode = .jobs,
            clock: any Clock<Duration> = ContinuousClock(),
            initialPollDelay: Duration = .seconds(1),
            maximumPollDelay: Duration = .seconds(30),
            auditInterval: Duration = .seconds(30),
            openAuditInterval: Duration = .seconds(5),
            deletionSweepInterval: Duration = .seconds(300),
            watermarkSkew: Duration = .seconds(5),
            resubscribeDelay: Duration = .seconds(1),
            maximumFilteredIDs: Int = 10_000,
            jitter: @escaping @Sendable (_ maximum: Duration) -> Duration = JobSyncClient.fullJitter,
            logger: Logger = Logger(label: "JobSync", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.source = source
            self.feed = feed
            self.mode = mode
            self.clock = clock
            self.initialPollDelay = initialPollDelay
            self.maximumPollDelay = maximumPollDelay
            self.auditInterval = auditInterval
            self.openAuditInterval = openAuditInterval
            self.deletionSweepInterval = deletionSweepInterval
            self.watermarkSkew = watermarkSkew
            self.resubscribeDelay = resubscribeDelay
            self.maximumFilteredIDs = maximumFilteredIDs
            self.jitter = jitter
            self.logger = logger
        }
    }

    /// Counters for observability.
    public struct Statistics: Sendable, Hashable {
        /// Changes received from the feed.
        public var changesReceived = 0
        /// Changes for jobs not watched (table-wide binding), dropped.
        public var changesIgnored = 0
        /// Changes that could not be used (no record, invalid id, error rows), counted and skipped.
        public var malformedChanges = 0
        /// Successful reconciliations (after `live`).
        public var reconciliations = 0
        /// Successful polls (while not live).
        public var polls = 0
        /// Successful audit polls (while live), deletion sweeps included.
        public var audits = 0
        /// Successful deletion sweeps (audits by id; see ``Configuration/deletionSweepInterval``).
        public var deletionSweeps = 0
        /// Rows an audit found newer on the server than in the store (a change the feed dropped, or had not
        /// delivered yet) and read in full (see ``Configuration/openAuditInterval``).
        public var auditFetches = 0
        /// Failed REST catch-ups.
        public var restFailures = 0
        /// Failed fetches of newly watched ids (each is retried with backoff; see ``restFailures`` for catch-ups).
        public var fetchFailures = 0
        /// Rows re-fetched after a truncated (413) change.
        public var refetches = 0
        /// Times the feed became live.
        public var liveTransitions = 0
    }

    /// The store this client keeps in sync.
    public let store: JobStore
    let configuration: Configuration

    /// Who keeps a job watched: ``JobSyncClient/watch(_:)`` until ``JobSyncClient/unwatch(_:)``, and each running
    /// ``JobSyncClient/waitForCompletion(of:timeout:)`` until it returns.
    struct Watchers: Sendable {
        var explicit = false
        var waits = 0

        var isEmpty: Bool { !self.explicit && self.waits == 0 }
    }

    enum Watcher {
        case explicit
        case wait
    }

    /// Where ``JobSyncClient/run()`` is.
    enum RunState: Sendable, Hashable {
        case notStarted
        case running
        /// `run()` returned: ``JobSyncClient/transportModes()`` sequences finish.
        case ended
    }

    struct Shared {
        var watchers: [JobID: Watchers] = [:]
        var watched: Set<JobID> { Set(self.watchers.keys) }
        var pendingFetch: Set<JobID> = []
        var mode: TransportMode = .polling
        var statistics = Statistics()
        var run = RunState.notStarted
        /// The consumers of ``JobSyncClient/transportModes()``, by id.
        var modeObservers: [Int: AsyncStream<TransportMode>.Continuation] = [:]
        var nextObserverID = 0
        /// The store watermark when the last successful catch-up started; watermark reads start there.
        var catchUpWatermark: JobTimestamp?
        /// Where the next watermark read resumes, exactly (no skew), after a read stopped at the source's row cap.
        var catchUpResume: JobTimestamp?
        /// Before any catch-up set `catchUpWatermark`: where the fetches of newly watched ids let watermark reads start.
        var fetchCoverage = FetchCoverage.none
        /// Whether some job was open when the run loop last looked (or a merge may have opened one since: the loop
        /// is then asked to look again). See ``JobSyncClient/Configuration/openAuditInterval``.
        var jobsOpenReported = false
    }

    /// Before any catch-up set a checkpoint (jobs mode, e.g. the feed went live before anything was watched), whether
    /// the fetches of newly watched ids give a safe start for watermark reads. A fetch's point is the store watermark
    /// when it started or its newest row, whichever is later: every later change of the ids it read is dated after
    /// it. The earliest point over all fetches covers every id they read. A read of watched ids that gives no point
    /// (no row with `updated_at`) breaks it for good: an id without a row may be inserted before a later fetch's point.
    enum FetchCoverage: Sendable, Hashable {
        /// No fetch yet.
        case none
        /// Watermark reads may start here (minus the skew).
        case from(JobTimestamp)
        /// Watermark reads must wait for a catch-up's checkpoint (audits read by id until then).
        case broken

        var point: JobTimestamp? {
            if case .from(let point) = self { return point }
            return nil
        }
    }

    let shared: NIOLockedValueBox<Shared>
    let inputs: AsyncStream<Input>
    let inputContinuation: AsyncStream<Input>.Continuation
    let bindingsChanged: AsyncStream<Void>
    let bindingsContinuation: AsyncStream<Void>.Continuation
    let counters: [Metric: Counter]
    let modeGauge: Gauge

    /// Creates a client over `store` (default: a new in-memory store).
    public init(configuration: Configuration, store: JobStore? = nil) throws(JobSyncError) {
        guard configuration.maximumFilteredIDs >= 0, configuration.initialPollDelay > .zero,
            configuration.maximumPollDelay >= configuration.initialPollDelay, configuration.auditInterval > .zero,
            configuration.openAuditInterval > .zero, configuration.deletionSweepInterval > .zero
        else {
            throw JobSyncError(code: .invalidConfiguration, message: "invalid JobSyncClient timing or limit settings")
        }
        guard configuration.mode == .jobs || configuration.source.supportsWatermark else {
            throw JobSyncError(
                code: .invalidConfiguration, message: "all-jobs mode needs a source with updated_at (a watermark)")
        }
        self.configuration = configuration
        if let store {
            self.store = store
        } else {
            self.store = try JobStore()
        }
        self.shared = NIOLockedValueBox(Shared())
        (self.inputs, self.inputContinuation) = AsyncStream.makeStream(of: Input.self)
        (self.bindingsChanged, self.bindingsContinuation) = AsyncStream.makeStream(
            of: Void.self, bufferingPolicy: .bufferingNewest(1))
        self.counters = Dictionary(
            uniqueKeysWithValues: Metric.allCases.map { ($0, Counter(label: "jobsync_" + $0.rawValue)) })
        self.modeGauge = Gauge(label: "jobsync_transport_mode")
    }

    /// Picks a uniformly random delay in `0...maximum` (full jitter).
    public static let fullJitter: @Sendable (Duration) -> Duration = { maximum in
        let (seconds, attoseconds) = maximum.components
        let nanoseconds = seconds * 1_000_000_000 + attoseconds / 1_000_000_000
        guard nanoseconds > 0 else { return .zero }
        return .nanoseconds(Int64.random(in: 0...nanoseconds))
    }

    // MARK: Public state

    /// The current transport mode.
    public var transportMode: TransportMode { self.shared.withLockedValue { $0.mode } }

    /// A snapshot of the counters.
    public var statistics: Statistics { self.shared.withLockedValue { $0.statistics } }

    /// The watched ids (``WatchMode/jobs``).
    public var watchedIDs: Set<JobID> { self.shared.withLockedValue { $0.watched } }

    // MARK: Watching

    /// Starts watching jobs: their current state is fetched, and their changes are followed from now on, until
    /// ``unwatch(_:)``. Jobs already final in the store (e.g. restored from persistence) are not fetched again.
    public func watch(_ ids: some Sequence<JobID>) {
        self.hold(ids, by: .explicit)
    }

    /// Adds a watcher to each id; ids not watched before are fetched and get channels.
    func hold(_ ids: some Sequence<JobID>, by watcher: Watcher) {
        let finished = Set(ids.filter { self.store.isFinished($0) })
        let added = self.shared.withLockedValue { shared -> Bool in
            var added = false
            for id in ids {
                let new = shared.watchers[id] == nil
                switch watcher {
                case .explicit: shared.watchers[id, default: Watchers()].explicit = true
                case .wait: shared.watchers[id, default: Watchers()].waits += 1
                }
                guard new else { continue }
                added = true
                if !finished.contains(id) { shared.pendingFetch.insert(id) }
            }
            return added
        }
        guard added else { return }
        self.inputContinuation.yield(.watchChanged)
        if self.configuration.mode == .jobs { self.bindingsContinuation.yield() }
    }

    /// Removes a watcher from each id; ids no one watches any more leave the bindings, and their states leave memory
    /// if unfinished (a finished one stays for the store's retention period; see ``JobStore/Retention``).
    func release(_ ids: some Sequence<JobID>, by watcher: Watcher) {
        let removed = self.shared.withLockedValue { shared -> [JobID] in
            var removed: [JobID] = []
            for id in ids {
                guard var watchers = shared.watchers[id] else { continue }
                switch watcher {
                case .explicit: watchers.explicit = false
                case .wait: watchers.waits = max(0, watchers.waits - 1)
                }
                if watchers.isEmpty {
                    shared.watchers[id] = nil
                    shared.pendingFetch.remove(id)
                    removed.append(id)
                } else {
                    shared.watchers[id] = watchers
                }
            }
            return removed
        }
        guard !removed.isEmpty, self.configuration.mode == .jobs else { return }
        self.store.retireUnfinished(removed)
        self.bindingsContinuation.yield()
    }

    /// Watches every job of the store that is not finished yet: after a restart with a persisted store, this
    /// resumes where the previous process stopped (finished jobs are answered from the store without requests).
    public func resumeWatching() {
        self.watch(self.store.jobs.filter { !$0.status.isTerminal }.map(\.id))
    }

    /// Stops watching jobs (``watch(_:)``; a running ``waitForCompletion(of:timeout:)`` keeps its job watched until
    /// it returns). A job no one watches leaves the bindings (channels shrink back), and its state leaves memory if it
    /// is unfinished; a finished one stays for the store's retention period (``JobStore/Retention``).
    public func unwatch(_ ids: some Sequence<JobID>) {
        self.release(ids, by: .explicit)
    }

    /// Whether changes of `id` are kept.
    func isWatched(_ id: JobID) -> Bool {
        self.configuration.mode == .allJobs || self.shared.withLockedValue { $0.watchers[id] != nil }
    }

    /// The channel plan of a new subscription generation for the current watch set.
    func channelPlan() -> ChannelPlan {
        ChannelPlan(
            mode: self.configuration.mode, watched: self.shared.withLockedValue { $0.watched },
            maximumFilteredIDs: self.configuration.maximumFilteredIDs)
    }

    /// The transport mode now, then each change, until ``run()`` returns.
    ///
    /// Every call returns a new sequence; any number may be iterated at once (each has its own buffer). It starts
    /// with the current mode and yields each mode the client switches to, without repeats. It finishes when `run()`
    /// returns, at once (after the current mode) when it is made after `run()` returned, and when the iterating task
    /// is cancelled. A consumer that falls more than 16 changes behind loses the oldest; the latest is always kept.
    ///
    /// ```swift
    /// for await mode in client.transportModes() {
    ///     print("transport:", mode)
    /// }
    /// ```
    public func transportModes() -> some AsyncSequence<TransportMode, Never> & Sendable {
        let (stream, continuation) = AsyncStream.makeStream(
            of: TransportMode.self, bufferingPolicy: .bufferingNewest(Self.modeBufferSize))
        let ended = self.shared.withLockedValue { shared -> Bool in
            // Under the lock, so no change is missed or reordered between the current mode and the next.
            continuation.yield(shared.mode)
            guard shared.run != .ended else { return true }
            shared.nextObserverID += 1
            let id = shared.nextObserverID
            shared.modeObservers[id] = continuation
            continuation.onTermination = { [weak self] _ in
                _ = self?.shared.withLockedValue { $0.modeObservers.removeValue(forKey: id) }
            }
            return false
        }
        if ended { continuation.finish() }
        return stream
    }

    static let modeBufferSize = 16

    /// Waits until the transport mode is `mode`; returns at once if it is.
    ///
    /// - Returns: `true` when the mode was reached; `false` when ``run()`` returned first (or had returned already)
    ///   or the calling task was cancelled. It never waits longer than `run()` runs (after `run()` returned the mode
    ///   no longer changes); before `run()` starts it waits for it.
    @discardableResult
    public func waitForTransportMode(_ mode: TransportMode) async -> Bool {
        for await current in self.transportModes() where current == mode {
            return true
        }
        return false
    }

    func setMode(_ mode: TransportMode) {
        self.shared.withLockedValue { shared in
            guard shared.mode != mode else { return }
            shared.mode = mode
            for observer in shared.modeObservers.values { observer.yield(mode) }
        }
        // 0 live, 1 polling, 2 offline.
        self.modeGauge.record(mode == .live ? 0 : (mode == .polling ? 1 : 2))
    }

    /// `run()` returned: every ``transportModes()`` sequence finishes.
    func runEnded() {
        let observers = self.shared.withLockedValue { shared in
            shared.run = .ended
            defer { shared.modeObservers = [:] }
            return Array(shared.modeObservers.values)
        }
        // Outside the lock: `finish()` runs `onTermination`, which takes it.
        for observer in observers { observer.finish() }
    }

    /// The counters, named as reported to swift-metrics (`jobsync_<name>`).
    enum Metric: String, CaseIterable, Sendable {
        case changesReceived = "changes_received"
        case changesIgnored = "changes_ignored"
        case malformedChanges = "changes_malformed"
        case reconciliations = "reconciliations"
        case polls = "polls"
        case audits = "audits"
        case deletionSweeps = "deletion_sweeps"
        case auditFetches = "audit_fetches"
        case restFailures = "rest_failures"
        case fetchFailures = "fetch_failures"
        case refetches = "refetches"
        case liveTransitions = "live_transitions"
    }

    func count(_ metric: Metric, by amount: Int = 1) {
        self.shared.withLockedValue { shared in
            switch metric {
            case .changesReceived: shared.statistics.changesReceived += amount
            case .changesIgnored: shared.statistics.changesIgnored += amount
            case .malformedChanges: shared.statistics.malformedChanges += amount
            case .reconciliations: shared.statistics.reconciliations += amount
            case .polls: shared.statistics.polls += amount
            case .audits: shared.statistics.audits += amount
            case .deletionSweeps: shared.statistics.deletionSweeps += amount
            case .auditFetches: shared.statistics.auditFetches += amount
            case .restFailures: shared.statistics.restFailures += amount
            case .fetchFailures: shared.statistics.fetchFailures += amount
            case .refetches: shared.statistics.refetches += amount
            case .liveTransitions: shared.statistics.liveTransitions += amount
            }
        }
        self.counters[metric]?.increment(by: amount)
    }
}
