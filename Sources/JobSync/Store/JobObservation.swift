public import JobSyncCore

/// Where an observation of a job came from. Every source goes through the same ``JobStore/merge(_:)``.
public enum ObservationSource: String, Sendable, Hashable {
    /// A Realtime `postgres_changes` event.
    case realtime
    /// The REST catch-up after the subscription became live.
    case reconciliation
    /// A REST poll while Realtime is not live.
    case poll
    /// A REST re-fetch of one row (after a 413 truncated event).
    case refetch
    /// The classification service's status endpoint.
    case statusEndpoint
    /// Loaded from the persistence file at start.
    case persistence
}

/// One observation of one job, from any source.
public struct JobObservation: Sendable, Hashable {
    /// What was observed.
    public enum Kind: Sendable, Hashable {
        /// A row. `complete` is `false` when columns may be missing (a 413-truncated event, a partial UPDATE
        /// record): present columns are merged over the known ones.
        case row(columns: JSONObject, complete: Bool)
        /// The row was deleted (a DELETE event).
        case deleted
        /// The row was looked for and not found (reconciliation or poll): treated as a deletion.
        case vanished
    }

    /// The job.
    public var jobID: JobID
    /// What was observed.
    public var kind: Kind
    /// The change's `commit_timestamp`, when it came from a change event.
    public var commitTimestamp: JobTimestamp?
    /// The source.
    public var source: ObservationSource

    /// Creates an observation.
    public init(jobID: JobID, kind: Kind, commitTimestamp: JobTimestamp? = nil, source: ObservationSource) {
        self.jobID = jobID
        self.kind = kind
        self.commitTimestamp = commitTimestamp
        self.source = source
    }

    /// An observation of a row, with the id read and validated from the row (`id`, else `job_id`).
    ///
    /// - Throws: ``JobSyncError/Code/invalidRow`` or ``JobSyncError/Code/invalidJobID``.
    public static func row(
        _ columns: JSONObject,
        complete: Bool = true,
        commitTimestamp: JobTimestamp? = nil,
        source: ObservationSource
    ) throws(JobSyncError) -> JobObservation {
        guard let raw = columns["id"]?.stringValue ?? columns["job_id"]?.stringValue else {
            throw JobSyncError(code: .invalidRow, message: "the row has no string id")
        }
        return JobObservation(
            jobID: try JobID(raw), kind: .row(columns: columns, complete: complete),
            commitTimestamp: commitTimestamp, source: source)
    }
}

/// A change delivered to subscribers.
public enum JobEvent: Sendable, Hashable {
    /// A new state of a job (inserted or advanced).
    case updated(Job)
    /// The job was deleted on the server, or vanished from it.
    case deleted(JobID)

    /// The job concerned.
    public var jobID: JobID {
        switch self {
        case .updated(let job): return job.id
        case .deleted(let id): return id
        }
    }

    /// Whether no further event is expected for this job: terminal status or deletion.
    public var isFinal: Bool {
        switch self {
        case .updated(let job): return job.status.isTerminal
        case .deleted: return true
        }
    }
}

/// What ``JobStore/merge(_:)`` did with an observation.
public enum MergeOutcome: Sendable, Hashable {
    /// A job seen for the first time.
    case inserted(Job)
    /// A job's version advanced.
    case updated(Job, previous: Job)
    /// The job was removed (deleted or vanished). `last` is the state it had, if known.
    case deleted(JobID, last: Job?)
    /// A job that had left memory (see ``JobStore/Retention``) read again at the version it had: delivered only to
    /// subscriptions that name the job, since every all-jobs subscription already saw that version.
    case restored(Job)
    /// Nothing changed.
    case ignored(IgnoredReason)

    /// Why an observation was ignored.
    public enum IgnoredReason: Sendable, Hashable {
        /// Older than the stored version.
        case stale
        /// The same version as stored (a duplicate).
        case duplicate
        /// A deletion of a job already deleted.
        case alreadyDeleted
    }

    /// The event subscribers get, if any.
    public var event: JobEvent? {
        switch self {
        case .inserted(let job), .updated(let job, _), .restored(let job): return .updated(job)
        case .deleted(let id, _): return .deleted(id)
        case .ignored: return nil
        }
    }
}
