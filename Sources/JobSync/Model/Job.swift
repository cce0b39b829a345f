public import JobSyncCore

/// One job's state, as last observed.
///
/// The well-known columns are decoded; every column received (including ones this type does not know) is kept
/// in ``columns``.
public struct Job: Hashable, Sendable {
    /// The job's id.
    public var id: JobID
    /// The status (case-insensitive; unknown values kept).
    public var status: JobStatus
    /// The human progress message, e.g. "Processing page 3 of 10".
    public var progress: String?
    /// The error text on failure.
    public var error: String?
    /// The result on success: raw JSON plus a typed view when readable.
    public var result: ClassificationResult?
    /// `created_at`, when present and parseable.
    public var createdAt: JobTimestamp?
    /// `updated_at`, when present and parseable.
    public var updatedAt: JobTimestamp?
    /// The commit timestamp of the change event this state came from, if it came from one.
    public var commitTimestamp: JobTimestamp?
    /// Every column as received.
    public var columns: JSONObject

    /// Decodes a row (a PostgREST row, a Realtime `record`, or a status-endpoint body).
    ///
    /// The id is read from `id`, else `job_id`. A missing status decodes as `unknown("")`.
    ///
    /// - Parameters:
    ///   - row: the columns.
    ///   - commitTimestamp: the change event's `commit_timestamp`, when the row came from one.
    /// - Throws: ``JobSyncError/Code/invalidRow`` when there is no id, or ``JobSyncError/Code/invalidJobID``
    ///   when it is not a UUID.
    public init(row: JSONObject, commitTimestamp: JobTimestamp? = nil) throws(JobSyncError) {
        try self.init(row: row, commitTimestamp: commitTimestamp, knownID: nil)
    }

    /// Decodes a row whose id was validated already as `knownID` (the store's merge): an id column spelled exactly
    /// like it is taken without validating it again.
    package init(row: JSONObject, commitTimestamp: JobTimestamp?, knownID: JobID?) throws(JobSyncError) {
        guard let rawID = row["id"]?.stringValue ?? row["job_id"]?.stringValue else {
            throw JobSyncError(code: .invalidRow, message: "the row has no string id")
        }
        if let knownID, knownID.rawValue == rawID {
            self.id = knownID
        } else {
            self.id = try JobID(rawID)
        }
        self.status = JobStatus(raw: row["status"]?.stringValue ?? "")
        self.progress = row["progress"]?.stringValue
        self.error = row["error"]?.stringValue
        switch row["result"] {
        case nil, .null?: self.result = nil
        case let raw?: self.result = ClassificationResult(raw: raw)
        }
        self.createdAt = row["created_at"]?.stringValue.flatMap(JobTimestamp.init)
        self.updatedAt = row["updated_at"]?.stringValue.flatMap(JobTimestamp.init)
        self.commitTimestamp = commitTimestamp
        self.columns = row
    }

    /// The version used to order observations of this job.
    public var version: JobVersion {
        JobVersion(updatedAt: self.updatedAt, commitTimestamp: self.commitTimestamp, statusRank: self.status.rank)
    }

    /// Whether the visible state (status, progress, error, result, columns) equals `other`'s.
    public func hasSameContent(as other: Job) -> Bool {
        self.status == other.status && self.progress == other.progress && self.error == other.error
            && self.result == other.result && self.columns == other.columns
    }
}

/// The version of a job observation, used to order observations from every source.
///
/// Order: `updated_at` when both sides have one; else the change's `commit_timestamp` when both have one;
/// else the status rank (queued < processing < terminal).
public struct JobVersion: Hashable, Sendable {
    /// `updated_at` of the row, if known.
    public var updatedAt: JobTimestamp?
    /// `commit_timestamp` of the change event, if the observation came from one.
    public var commitTimestamp: JobTimestamp?
    /// ``JobStatus/rank`` of the status.
    public var statusRank: Int

    /// Creates a version.
    public init(updatedAt: JobTimestamp?, commitTimestamp: JobTimestamp?, statusRank: Int) {
        self.updatedAt = updatedAt
        self.commitTimestamp = commitTimestamp
        self.statusRank = statusRank
    }

    /// How one version relates to another.
    public enum Order: Sendable, Hashable {
        /// Strictly older.
        case older
        /// Not distinguishable by version.
        case same
        /// Strictly newer.
        case newer
    }

    /// Compares `self` to `other`: `.newer` means `self` is strictly newer than `other`.
    public func compared(to other: JobVersion) -> Order {
        if let mine = self.updatedAt, let theirs = other.updatedAt, mine != theirs {
            return mine > theirs ? .newer : .older
        }
        // Equal or missing `updated_at` (e.g. a table without a trigger): the change's commit time decides.
        if let mine = self.commitTimestamp, let theirs = other.commitTimestamp, mine != theirs {
            return mine > theirs ? .newer : .older
        }
        if self.statusRank != other.statusRank {
            return self.statusRank > other.statusRank ? .newer : .older
        }
        return .same
    }

    /// Whether either timestamp is known.
    public var hasTimestamp: Bool { self.updatedAt != nil || self.commitTimestamp != nil }
}
