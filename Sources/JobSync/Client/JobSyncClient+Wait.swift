extension JobSyncClient {
    /// Watches a job and returns its changes: the current state first, then each newer version; ends after a
    /// terminal state or a deletion. See ``JobUpdates``.
    public func updates(for id: JobID) -> JobUpdates {
        self.watch([id])
        return self.store.updates(for: id)
    }

    /// Watches a set of jobs and returns their changes; ends once every job is terminal or deleted.
    public func updates(forJobs ids: Set<JobID>) -> JobUpdates {
        self.watch(ids)
        return self.store.updates(forJobs: ids)
    }

    /// Waits until a job finishes.
    ///
    /// A job already finished in the store (for example restored from the persistence file) is answered at once,
    /// without a request. Otherwise the job is watched while the wait runs: when it returns, the job is unwatched
    /// unless ``watch(_:)`` or another wait holds it (see ``unwatch(_:)`` for what then leaves memory).
    ///
    /// - Parameters:
    ///   - id: the job.
    ///   - timeout: how long to wait, on the configured clock.
    /// - Returns: the completed job.
    /// - Throws: ``JobSyncError`` with ``JobSyncError/Code/jobFailed`` (and the job's error text in
    ///   ``JobSyncError/jobError``) when it failed, ``JobSyncError/Code/jobDeleted`` when it was deleted or
    ///   does not exist, ``JobSyncError/Code/timeout``, or ``JobSyncError/Code/cancelled``.
    /// - Important: ``run()`` must be running (or start) for the job to make progress.
    public func waitForCompletion(of id: JobID, timeout: Duration) async throws(JobSyncError) -> Job {
        if let job = self.store.job(id), job.status.isTerminal { return try Self.outcome(of: job) }
        if self.store.isDeleted(id) { throw Self.deletedError(id) }
        let updates = self.store.updates(for: id)
        self.hold([id], by: .wait)
        defer { self.release([id], by: .wait) }
        let timer = ClockTimer(self.configuration.clock, delay: timeout)
        do {
            let job = try await withThrowingTaskGroup(of: Job.self) { group in
                group.addTask {
                    for try await event in updates {
                        switch event {
                        case .updated(let job) where job.status.isTerminal: return job
                        case .updated: continue
                        case .deleted: throw Self.deletedError(id)
                        }
                    }
                    throw JobSyncError(code: .cancelled, message: "the job store closed", jobID: id)
                }
                group.addTask {
                    try await timer.wait()
                    throw JobSyncError(code: .timeout, message: "the job did not finish within \(timeout)", jobID: id)
                }
                defer { group.cancelAll() }
                guard let first = try await group.next() else {
                    throw JobSyncError(code: .cancelled, message: "the wait was cancelled", jobID: id)
                }
                return first
            }
            return try Self.outcome(of: job)
        } catch let error as JobSyncError {
            throw error
        } catch {
            throw JobSyncError(code: .cancelled, message: "the wait was cancelled", jobID: id)
        }
    }

    private static func outcome(of job: Job) throws(JobSyncError) -> Job {
        if job.status == .failed {
            throw JobSyncError(
                code: .jobFailed, message: "the job failed", jobID: job.id, jobError: job.error ?? "no error text")
        }
        return job
    }

    private static func deletedError(_ id: JobID) -> JobSyncError {
        JobSyncError(code: .jobDeleted, message: "the job was deleted or does not exist", jobID: id)
    }
}
