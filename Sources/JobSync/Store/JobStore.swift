public import Foundation
public import Logging
import NIOConcurrencyHelpers

/// The local, exact view of jobs: one merge path for every source, monotonic versions, and multicast change
/// sequences with bounded buffers.
///
/// ```swift
/// let store = try JobStore(configuration: .init(persistence: SQLiteJobPersistence(path: "jobs.sqlite")))
/// for try await event in store.updates(for: jobID) { print(event) }
/// ```
///
/// - Important: ``merge(_:)`` never moves a job backwards: an older version is ignored, a terminal state only
///   changes for a strictly newer version, and an observation that does not advance the version emits nothing.
public final class JobStore: Sendable {
    /// Store settings.
    public struct Configuration: Sendable {
        /// The most distinct jobs one subscriber may have pending before its sequence ends with
        /// ``JobSyncError/Code/subscriberTooSlow`` (default 10,000; a per-job subscriber holds at most one).
        public var subscriberCapacity: Int
        /// How many deleted job ids are remembered to refuse stale rows arriving after a deletion (default 10,000).
        public var tombstoneLimit: Int
        /// How long finished jobs stay in memory (default: 10 minutes, at most 10,000 of them). See ``Retention``.
        public var retention: Retention
        /// Where to persist job states and the watermark (default: nothing is persisted).
        public var persistence: (any JobStorePersistence)?
        /// How far ahead of this machine's clock a row's `updated_at` may be and still move the watermark
        /// (default 60 s). A row dated further ahead (a wrong server clock, a bad write) is merged, but the watermark,
        /// which is persisted and starts every watermark read, stays behind it so later changes are not hidden.
        public var maximumClockSkew: Duration
        /// This machine's wall clock (default `Date()`); tests inject a fixed one.
        public var now: @Sendable () -> Date
        /// The logger (trace/debug only).
        public var logger: Logger

        /// Creates a configuration with the defaults documented on each property.
        public init(
            subscriberCapacity: Int = 10_000,
            tombstoneLimit: Int = 10_000,
            retention: Retention = .default,
            persistence: (any JobStorePersistence)? = nil,
            maximumClockSkew: Duration = .seconds(60),
            now: @escaping @Sendable () -> Date = { Date() },
            logger: Logger = Logger(label: "JobSync.store", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.subscriberCapacity = subscriberCapacity
            self.tombstoneLimit = tombstoneLimit
            self.retention = retention
            self.persistence = persistence
            self.maximumClockSkew = maximumClockSkew
            self.now = now
            self.logger = logger
        }
    }

    private struct State {
        var core: JobStoreCore
        var subscribers: [Int: Subscriber] = [:]
        var nextSubscriberID = 0
        var closed = false
        var persistenceFailures = 0
        /// Changes merged but not yet handed to the persistence, in merge order.
        var pendingWrites: [PersistedChange] = []
        /// Whether some merge caller is writing batches (it writes everything pending before it returns).
        var writing = false
    }

    private let state: NIOLockedValueBox<State>
    private let configuration: Configuration
    /// Writes what was merged while a merge caller was writing (see ``writeBatches(startingWith:)``).
    private let writer = DispatchQueue(label: "JobSync.store.writer")
    /// Changes pending beyond this make a merge caller wait for the writer: memory stays bounded when the disk is
    /// slower than the merges.
    private static let maximumPendingWrites = 10_000

    /// Creates a store, loading persisted state when ``Configuration/persistence`` is set.
    ///
    /// - Throws: ``JobSyncError/Code/persistence`` when the persisted state cannot be read.
    public init(configuration: Configuration = .init()) throws(JobSyncError) {
        self.configuration = configuration
        var core = JobStoreCore(tombstoneLimit: configuration.tombstoneLimit, retention: configuration.retention)
        if let persistence = configuration.persistence {
            core.restore(try persistence.load(), now: Self.microseconds(configuration.now()))
        }
        self.state = NIOLockedValueBox(State(core: core))
    }

    // MARK: Reading

    /// The current state of a job, if known: from memory, or for a job that left memory (see ``Retention``), from
    /// the persistence.
    public func job(_ id: JobID) -> Job? {
        let (job, ask) = self.state.withLockedValue { state -> (Job?, Bool) in
            if let job = state.core.job(id) { return (job, false) }
            return (nil, !state.core.tombstones.contains(id))
        }
        if let job { return job }
        return ask ? self.persisted(id) : nil
    }

    /// Whether a job is known finished (completed or failed), in memory, among the jobs that left it, or on disk:
    /// a finished job needs no more reads.
    package func isFinished(_ id: JobID) -> Bool {
        let known = self.state.withLockedValue { state -> Bool? in
            if let job = state.core.job(id) { return job.status.isTerminal }
            if let version = state.core.retired.version(of: id) { return version.statusRank == JobStatus.completed.rank }
            return state.core.tombstones.contains(id) ? false : nil
        }
        return known ?? (self.persisted(id)?.status.isTerminal ?? false)
    }

    /// A job's persisted state (`nil` without persistence, or when it cannot be read).
    private func persisted(_ id: JobID) -> Job? {
        guard let persistence = self.configuration.persistence else { return nil }
        return (try? persistence.job(id)) ?? nil
    }

    /// Whether the job is known to be deleted (or vanished).
    public func isDeleted(_ id: JobID) -> Bool {
        self.state.withLockedValue { $0.core.tombstones.contains(id) }
    }

    /// Every job held in memory: the unfinished ones and the finished ones within the retention (``Retention``).
    public var jobs: [Job] {
        self.state.withLockedValue { $0.core.entries.values.map(\.job) }
    }

    /// How many jobs are held in memory, and how many of them are finished.
    public var jobsInMemory: (total: Int, finished: Int) {
        self.state.withLockedValue { ($0.core.entries.count, $0.core.finishedCount) }
    }

    /// Whether the job's stored row may lack columns (it came from a truncated event and was not re-fetched).
    public func isIncomplete(_ id: JobID) -> Bool {
        self.state.withLockedValue { $0.core.entries[id].map { !$0.complete } ?? false }
    }

    /// The largest `updated_at` seen in any row (the reconciliation watermark).
    public var watermark: JobTimestamp? {
        self.state.withLockedValue { $0.core.watermark }
    }

    /// How many subscriptions are registered.
    public var subscriberCount: Int {
        self.state.withLockedValue { $0.subscribers.count }
    }

    /// How many persistence batches failed to write (the store keeps working in memory).
    public var persistenceFailures: Int {
        self.state.withLockedValue { $0.persistenceFailures }
    }

    // MARK: Merging

    /// Merges one observation from any source: the single path by which the store changes.
    ///
    /// - Returns: what happened; subscribers are notified of inserted, updated and deleted outcomes.
    @discardableResult
    public func merge(_ observation: JobObservation) -> MergeOutcome {
        let persisting = self.configuration.persistence != nil
        let now = self.configuration.now()
        let limit = self.watermarkLimit(now: now)
        let (outcome, resumptions, batch) = self.state.withLockedValue {
            state -> (MergeOutcome, [Subscriber.Resumption], [PersistedChange]?) in
            let before = state.core.watermark
            let outcome = state.core.merge(observation, watermarkLimit: limit, now: Self.microseconds(now))
            var resumptions: [Subscriber.Resumption] = []
            if let event = outcome.event, !state.closed {
                // Enqueue under the store lock so every subscriber sees versions in merge order; resume outside.
                // A restored state is news only to subscriptions that name the job.
                let restored = if case .restored = outcome { true } else { false }
                for subscriber in state.subscribers.values
                where subscriber.filter.matches(event.jobID) && !(restored && subscriber.filter == .all) {
                    if let resumption = subscriber.enqueue(event) { resumptions.append(resumption) }
                }
            }
            guard persisting else { return (outcome, resumptions, nil) }
            // Queued in merge order under the same lock; written after subscribers were resumed (group commit).
            let sequence = state.core.sequence
            switch outcome {
            case .inserted(let job), .updated(let job, _):
                let complete = state.core.entries[job.id]?.complete ?? true
                state.pendingWrites.append(.job(job, complete: complete, sequence: sequence))
            case .deleted(let id, _):
                let version = state.core.tombstones.version(of: id)
                state.pendingWrites.append(.tombstone(id, version: version, sequence: sequence))
            case .restored, .ignored:
                break
            }
            if let watermark = state.core.watermark, watermark != before {
                state.pendingWrites.append(.watermark(watermark))
            }
            guard !state.writing, !state.pendingWrites.isEmpty else {
                return (outcome, resumptions, state.pendingWrites.count > Self.maximumPendingWrites ? [] : nil)
            }
            state.writing = true
            defer { state.pendingWrites = [] }
            return (outcome, resumptions, state.pendingWrites)
        }
        for resumption in resumptions { resumption.run() }
        self.configuration.logger.trace(
            "merged observation",
            metadata: [
                "jobsync.job": "\(observation.jobID)", "jobsync.source": "\(observation.source.rawValue)",
                "jobsync.outcome": "\(Self.describe(outcome))",
            ]
        )
        switch batch {
        case nil: break
        case let batch? where batch.isEmpty: self.writer.sync {}  // far behind: wait for one batch (back-pressure)
        case let batch?: self.writeBatches(startingWith: batch)
        }
        return outcome
    }

    /// Merges several observations in order.
    @discardableResult
    public func merge(_ observations: some Sequence<JobObservation>) -> [MergeOutcome] {
        observations.map { self.merge($0) }
    }

    /// Takes unfinished jobs out of memory (they are no longer watched, so their states would go stale); each is
    /// remembered by version so that a late stale row cannot bring an older state back. Finished jobs stay until
    /// the retention policy retires them.
    package func retireUnfinished(_ ids: some Sequence<JobID>) {
        self.state.withLockedValue { state in
            for id in ids { state.core.retireIfUnfinished(id) }
        }
    }

    /// The newest `updated_at` that may move a watermark now: this machine's clock plus
    /// ``Configuration/maximumClockSkew``.
    func watermarkLimit(now: Date? = nil) -> JobTimestamp {
        let (seconds, attoseconds) = self.configuration.maximumClockSkew.components
        let skew = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        return JobTimestamp(microsecondsSinceEpoch: Self.microseconds(now ?? self.configuration.now()) + skew)
    }

    private static func microseconds(_ date: Date) -> Int64 {
        Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down))
    }

    /// Group commit: the merge caller that found no write in progress writes `batch` (its change and whatever was
    /// pending) in one transaction; what others merged meanwhile goes into the next transaction, written by the
    /// store's writer queue, so no caller is held for more than one transaction (a feed handler that became the
    /// writer must not stall behind everyone else's changes).
    private func writeBatches(startingWith batch: [PersistedChange]) {
        self.write(batch)
        guard let more = self.takePending() else { return }
        self.writer.async { self.drain(startingWith: more) }
    }

    /// Writes `batch` on the writer queue, then queues the next one if more is pending: one batch per queue item,
    /// so a caller held by back-pressure waits for one batch, not for the queue to run dry.
    private func drain(startingWith batch: [PersistedChange]) {
        self.write(batch)
        guard let more = self.takePending() else { return }
        self.writer.async { self.drain(startingWith: more) }
    }

    /// The pending changes, or `nil` (and no write in progress any more) when there are none.
    private func takePending() -> [PersistedChange]? {
        self.state.withLockedValue { state in
            guard !state.pendingWrites.isEmpty else {
                state.writing = false
                return nil
            }
            defer { state.pendingWrites = [] }
            return state.pendingWrites
        }
    }

    private func write(_ batch: [PersistedChange]) {
        guard let persistence = self.configuration.persistence else { return }
        do throws(JobSyncError) {
            try persistence.write(batch)
        } catch {
            self.state.withLockedValue { $0.persistenceFailures += 1 }
            self.configuration.logger.debug("persistence write failed", metadata: ["jobsync.error": "\(error)"])
        }
    }

    /// Waits until everything merged so far is written to the persistence (at once without one). ``close()`` calls
    /// it; call it before reading the file from elsewhere, or before the process exits, for changes merged while
    /// another merge was writing (those are written in the background).
    public func flush() {
        guard self.configuration.persistence != nil else { return }
        while true {
            let batch = self.state.withLockedValue { state -> [PersistedChange]? in
                guard !state.writing else { return nil }
                guard !state.pendingWrites.isEmpty else { return [] }
                state.writing = true
                defer { state.pendingWrites = [] }
                return state.pendingWrites
            }
            switch batch {
            case let batch? where batch.isEmpty: return
            case let batch?:
                self.write(batch)
                self.state.withLockedValue { $0.writing = false }
            case nil:
                self.writer.sync {}  // the writer queue's drain, if that is the one in progress
                if self.state.withLockedValue({ $0.writing }) { usleep(1_000) }  // a merge caller's transaction
            }
        }
    }

    private static func describe(_ outcome: MergeOutcome) -> String {
        switch outcome {
        case .inserted: return "inserted"
        case .updated: return "updated"
        case .deleted: return "deleted"
        case .restored: return "restored"
        case .ignored(let reason): return "ignored.\(reason)"
        }
    }

    // MARK: Subscriptions

    /// Changes of one job: its current state first (if known), then each newer version; ends after a terminal
    /// state or a deletion. See ``JobUpdates`` for buffering and lifetime.
    public func updates(for id: JobID) -> JobUpdates {
        JobUpdates(store: self, filter: .job(id))
    }

    /// Changes of a set of jobs: current states first, then changes; ends when every job is final.
    public func updates(forJobs ids: Set<JobID>) -> JobUpdates {
        JobUpdates(store: self, filter: .jobs(ids))
    }

    /// Every change of every job, from the start of iteration; ends when the store is closed.
    public func allUpdates() -> JobUpdates {
        JobUpdates(store: self, filter: .all)
    }

    /// Writes what is pending (``flush()``), then ends every subscription (their sequences return `nil`) and refuses
    /// new ones.
    public func close() {
        self.flush()
        let subscribers = self.state.withLockedValue { state -> [Subscriber] in
            state.closed = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.close()?.run() }
    }

    func register(_ filter: SubscriptionFilter) -> SubscriptionHandle {
        // Jobs named by the subscription that left memory are read from the persistence first (outside the lock).
        var fromDisk: [JobID: Job] = [:]
        if self.configuration.persistence != nil {
            let named: [JobID] =
                switch filter {
                case .job(let id): [id]
                case .jobs(let ids): Array(ids)
                case .all: []
                }
            let missing = self.state.withLockedValue { state in
                named.filter { state.core.job($0) == nil && !state.core.tombstones.contains($0) }
            }
            for id in missing { fromDisk[id] = self.persisted(id) }
        }
        let subscriber = self.state.withLockedValue { state -> Subscriber in
            let capacity: Int
            if case .jobs(let ids) = filter {
                capacity = max(self.configuration.subscriberCapacity, ids.count)
            } else {
                capacity = self.configuration.subscriberCapacity
            }
            let subscriber = Subscriber(id: state.nextSubscriberID, filter: filter, capacity: capacity)
            state.nextSubscriberID += 1
            if state.closed {
                _ = subscriber.close()
                return subscriber
            }
            var seeds: [JobID] = []
            switch filter {
            case .job(let id): seeds = [id]
            case .jobs(let ids): seeds = ids.sorted()
            case .all: break
            }
            for id in seeds {
                if let job = state.core.job(id) {
                    _ = subscriber.enqueue(.updated(job))
                } else if state.core.tombstones.contains(id) {
                    _ = subscriber.enqueue(.deleted(id))
                } else if let job = fromDisk[id] {
                    _ = subscriber.enqueue(.updated(job))
                }
            }
            state.subscribers[subscriber.id] = subscriber
            return subscriber
        }
        return SubscriptionHandle(subscriber: subscriber, store: self)
    }

    func unregister(_ subscriber: Subscriber) {
        let removed = self.state.withLockedValue { $0.subscribers.removeValue(forKey: subscriber.id) }
        removed?.close()?.run()
    }
}

extension JobStore {
    /// How long finished jobs stay in memory: the store's memory model.
    ///
    /// An unfinished job stays in memory while it is watched (in all-jobs mode: until it finishes or is deleted). A
    /// finished job (completed, failed) stays for ``period`` after it finished, and at most ``maximumFinishedJobs``
    /// finished jobs are held: beyond that the one that finished first leaves first. A job that left memory:
    /// - is still answered by ``JobStore/job(_:)`` and seeds new subscriptions from the persistence, when one is set;
    /// - is remembered by id and version (about 300 bytes each, at most ``rememberedJobs``), so that a late stale
    ///   row cannot bring an older state back, and the same version read again reaches only subscriptions that name
    ///   the job (``MergeOutcome/restored(_:)``).
    /// Leaving memory never affects delivery: a subscription holds its own copy of every event queued for it.
    public struct Retention: Sendable, Hashable {
        /// How long a finished job stays in memory after it finished (default 10 minutes).
        public var period: Duration
        /// The most finished jobs held in memory (default 10,000).
        public var maximumFinishedJobs: Int
        /// How many jobs that left memory are remembered by id and last version (default 10,000, as tombstones).
        public var rememberedJobs: Int

        /// Creates a policy.
        public init(period: Duration, maximumFinishedJobs: Int, rememberedJobs: Int = 10_000) {
            self.period = max(.zero, period)
            self.maximumFinishedJobs = max(0, maximumFinishedJobs)
            self.rememberedJobs = max(1, rememberedJobs)
        }

        /// 10 minutes, at most 10,000 finished jobs, 10,000 remembered versions.
        public static let `default` = Retention(period: .seconds(600), maximumFinishedJobs: 10_000)
    }
}
