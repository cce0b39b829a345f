/// What a ``JobStorePersistence`` loads at start.
public struct PersistedJobs: Sendable {
    /// Job states, with whether each row is known complete.
    public var jobs: [(Job, complete: Bool)]
    /// The watermark (largest `updated_at` seen).
    public var watermark: JobTimestamp?
    /// The last store sequence number written.
    public var sequence: Int64

    /// Creates a snapshot.
    public init(jobs: [(Job, complete: Bool)] = [], watermark: JobTimestamp? = nil, sequence: Int64 = 0) {
        self.jobs = jobs
        self.watermark = watermark
        self.sequence = sequence
    }
}

/// Durable storage for a ``JobStore``: job states (final results included) and the watermark.
///
/// Writes carry the store's sequence number; an implementation must ignore a write older than what it holds
/// for that job, so concurrent merges can never persist an older state over a newer one.
public protocol JobStorePersistence: Sendable {
    /// Loads everything persisted.
    func load() throws(JobSyncError) -> PersistedJobs
    /// Upserts a job state unless a newer sequence is stored for it.
    func save(_ job: Job, complete: Bool, sequence: Int64) throws(JobSyncError)
    /// Removes a job.
    func delete(_ id: JobID, sequence: Int64) throws(JobSyncError)
    /// Stores the watermark if it is larger than the stored one.
    func saveWatermark(_ watermark: JobTimestamp) throws(JobSyncError)
}
