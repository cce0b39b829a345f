import Foundation
import Logging
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
            persistence: (any JobStorePersistence)? = nil,
            maximumClockSkew: Duration = .seconds(60),
            now: @escaping @Sendable () -> Date = { Date() },
            logger: Logger = Logger(label: "JobSync.store", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.subscriberCapacity = subscriberCapacity
            self.tombstoneLimit = tombstoneLimit
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

    /// Creates a store, loading persisted state when ``Configuration/persistence`` is set.
    ///
    /// - Throws: ``JobSyncError/Code/persistence`` when the persisted state cannot be read.
    public init(configuration: Configuration = .init()) throws(JobSyncError) {
        self.configuration = configuration
        var core = JobStoreCore(tombstoneLimit: configuration.tombstoneLimit)
        if let persistence = configuration.persistence {
            core.restore(try persistence.load())
        }
        self.state = NIOLockedValueBox(State(core: core))
    }

    // MARK: Reading

    /// The current state of a job, if known.
    public func job(_ id: JobID) -> Job? {
        self.state.withLockedValue { $0.core.job(id) }
    }

    /// Whether the job is known to be deleted (or vanished).
    public func isDeleted(_ id: JobID) -> Bool {
        self.state.withLockedValue { $0.core.tombstones[id] != nil }
    }

    /// Every known job.
    public var jobs: [Job] {
        self.state.withLockedValue { $0.core.entries.values.map(\.job) }
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
        let limit = self.watermarkLimit()
        let (outcome, resumptions, batch) = self.state.withLockedValue {
            state -> (MergeOutcome, [Subscriber.Resumption], [PersistedChange]) in
            let before = state.core.watermark
            let outcome = state.core.merge(observation, watermarkLimit: limit)
            var resumptions: [Subscriber.Resumption] = []
            if let event = outcome.event, !state.closed {
                // Enqueue under the store lock so every subscriber sees versions in merge order; resume outside.
                for subscriber in state.subscribers.values where subscriber.filter.matches(event.jobID) {
                    if let resumption = subscriber.enqueue(event) { resumptions.append(resumption) }
                }
            }
            guard persisting else { return (outcome, resumptions, []) }
            // Queued in merge order under the same lock; written after subscribers were resumed (group commit).
            let sequence = state.core.sequence
            switch outcome {
            case .inserted(let job), .updated(let job, _):
                let complete = state.core.entries[job.id]?.complete ?? true
                state.pendingWrites.append(.job(job, complete: complete, sequence: sequence))
            case .deleted(let id, _):
                state.pendingWrites.append(.tombstone(id, version: state.core.tombstones[id] ?? nil, sequence: sequence))
            case .ignored:
                break
            }
            if let watermark = state.core.watermark, watermark != before {
                state.pendingWrites.append(.watermark(watermark))
            }
            guard !state.writing, !state.pendingWrites.isEmpty else { return (outcome, resumptions, []) }
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
        if !batch.isEmpty { self.writeBatches(startingWith: batch) }
        return outcome
    }

    /// Merges several observations in order.
    @discardableResult
    public func merge(_ observations: some Sequence<JobObservation>) -> [MergeOutcome] {
        observations.map { self.merge($0) }
    }

    /// The newest `updated_at` that may move a watermark now: this machine's clock plus
    /// ``Configuration/maximumClockSkew``.
    func watermarkLimit() -> JobTimestamp {
        let (seconds, attoseconds) = self.configuration.maximumClockSkew.components
        let skew = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
        let now = Int64((self.configuration.now().timeIntervalSince1970 * 1_000_000).rounded(.down))
        return JobTimestamp(microsecondsSinceEpoch: now + skew)
    }

    /// Writes `batch`, then every batch merged meanwhile, until none is pending (leader/follower group commit: one
    /// merge caller writes at a time, and what others merge while it writes goes into its next transaction).
    private func writeBatches(startingWith first: [PersistedChange]) {
        guard let persistence = self.configuration.persistence else { return }
        var batch = first
        while !batch.isEmpty {
            do throws(JobSyncError) {
                try persistence.write(batch)
            } catch {
                self.state.withLockedValue { $0.persistenceFailures += 1 }
                self.configuration.logger.debug("persistence write failed", metadata: ["jobsync.error": "\(error)"])
            }
            batch = self.state.withLockedValue { state in
                if state.pendingWrites.isEmpty { state.writing = false }
                defer { state.pendingWrites = [] }
                return state.pendingWrites
            }
        }
    }

    private static func describe(_ outcome: MergeOutcome) -> String {
        switch outcome {
        case .inserted: return "inserted"
        case .updated: return "updated"
        case .deleted: return "deleted"
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

    /// Ends every subscription (their sequences return `nil`) and refuses new ones.
    public func close() {
        let subscribers = self.state.withLockedValue { state -> [Subscriber] in
            state.closed = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.close()?.run() }
    }

    func register(_ filter: SubscriptionFilter) -> SubscriptionHandle {
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
                } else if state.core.tombstones[id] != nil {
                    _ = subscriber.enqueue(.deleted(id))
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
