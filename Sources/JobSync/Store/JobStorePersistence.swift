/// What a ``JobStorePersistence`` loads at start.
public struct PersistedJobs: Sendable {
    /// Job states, with whether each row is known complete.
    public var jobs: [(Job, complete: Bool)]
    /// Deleted jobs, oldest deletion first, with the version a row must exceed to bring each back (nil: unknown).
    public var tombstones: [(JobID, JobVersion?)]
    /// The watermark (largest `updated_at` seen).
    public var watermark: JobTimestamp?
    /// The last store sequence number written.
    public var sequence: Int64

    /// Creates a snapshot.
    public init(
        jobs: [(Job, complete: Bool)] = [], tombstones: [(JobID, JobVersion?)] = [], watermark: JobTimestamp? = nil,
        sequence: Int64 = 0
    ) {
        self.jobs = jobs
        self.tombstones = tombstones
        self.watermark = watermark
        self.sequence = sequence
    }
}

/// One change for a ``JobStorePersistence`` to write.
public enum PersistedChange: Sendable, Hashable {
    /// A job's new state (`complete`: every column is known), at store sequence `sequence`.
    case job(Job, complete: Bool, sequence: Int64)
    /// A deletion, with the version a row must exceed to bring the job back, at store sequence `sequence`.
    case tombstone(JobID, version: JobVersion?, sequence: Int64)
    /// A larger watermark.
    case watermark(JobTimestamp)
}

/// Durable storage for a ``JobStore``: job states (final results included), tombstones and the watermark.
///
/// The store writes in batches (group commit): every change merged while a batch is being written goes into the
/// next one, so a burst costs one transaction, not one per change. Changes carry the store's sequence number; an
/// implementation must ignore a change older than what it holds for that job, so concurrent merges can never persist
/// an older state over a newer one.
public protocol JobStorePersistence: Sendable {
    /// Loads everything persisted.
    func load() throws(JobSyncError) -> PersistedJobs
    /// One job's persisted state (`nil` when none, or when it is deleted): how the store answers for a job that
    /// left memory under its retention policy.
    func job(_ id: JobID) throws(JobSyncError) -> Job?
    /// Writes a batch of changes atomically (one transaction), in order.
    func write(_ changes: [PersistedChange]) throws(JobSyncError)
}
