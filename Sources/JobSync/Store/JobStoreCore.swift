import SupabaseREST

/// The pure core of ``JobStore``: the one merge path, the monotonic rules and the watermark. No I/O, no locks.
struct JobStoreCore: Sendable {
    struct Entry: Sendable, Hashable {
        var job: Job
        /// Whether every column is known (false after a truncated or partial event, until a full row arrives).
        var complete: Bool
        /// The store sequence number of the last accepted change.
        var sequence: Int64
    }

    private(set) var entries: [JobID: Entry] = [:]
    /// Deleted or vanished jobs with the last version known, so a late stale row cannot resurrect them.
    private(set) var tombstones: [JobID: JobVersion?] = [:]
    private var tombstoneOrder: [JobID] = []
    private var tombstoneHead = 0
    let tombstoneLimit: Int
    /// The largest `updated_at` seen in any row.
    private(set) var watermark: JobTimestamp?
    /// Increases with every accepted change.
    private(set) var sequence: Int64 = 0

    init(tombstoneLimit: Int = 10_000) {
        self.tombstoneLimit = max(1, tombstoneLimit)
    }

    func job(_ id: JobID) -> Job? { self.entries[id]?.job }

    /// Restores persisted state without emitting anything.
    mutating func restore(_ snapshot: PersistedJobs) {
        let sequence = snapshot.sequence
        for (job, complete) in snapshot.jobs {
            self.entries[job.id] = Entry(job: job, complete: complete, sequence: sequence)
        }
        for (id, version) in snapshot.tombstones where self.entries[id] == nil {
            self.addTombstone(id, version: version)  // oldest first: the limit keeps the newest
        }
        self.watermark = snapshot.watermark
        self.sequence = sequence
    }

    /// The single merge path for every source.
    ///
    /// - Parameter watermarkLimit: a row's `updated_at` beyond this instant (a server clock, or a row, far in the
    ///   future) does not move the watermark: a watermark ahead of the server's clock would hide every later change
    ///   from watermark reads. The row itself is merged as usual.
    @discardableResult
    mutating func merge(_ observation: JobObservation, watermarkLimit: JobTimestamp? = nil) -> MergeOutcome {
        switch observation.kind {
        case .deleted:
            return self.mergeDeletion(observation.jobID, at: observation.commitTimestamp)
        case .vanished:
            return self.mergeDeletion(observation.jobID, at: nil)
        case .row(let columns, let complete):
            return self.mergeRow(observation, columns: columns, complete: complete, watermarkLimit: watermarkLimit)
        }
    }

    /// `deletedAt` is the DELETE's commit time when known: every row state written before it is stale, even one this
    /// store never saw (a REST read in flight during the deletion must not bring the job back).
    private mutating func mergeDeletion(_ id: JobID, at deletedAt: JobTimestamp?) -> MergeOutcome {
        if let entry = self.entries.removeValue(forKey: id) {
            self.sequence += 1
            self.addTombstone(id, version: Self.tombstoneVersion(entry.job.version, deletedAt: deletedAt))
            return .deleted(id, last: entry.job)
        }
        if let tombstone = self.tombstones[id] {
            if deletedAt != nil { self.tombstones[id] = Self.tombstoneVersion(tombstone, deletedAt: deletedAt) }
            return .ignored(.alreadyDeleted)
        }
        // Never seen: still a final answer for anyone waiting on this id.
        self.sequence += 1
        self.addTombstone(id, version: Self.tombstoneVersion(nil, deletedAt: deletedAt))
        return .deleted(id, last: nil)
    }

    /// The version a row must exceed to come back after a deletion: the last known one, raised to the deletion time.
    private static func tombstoneVersion(_ last: JobVersion?, deletedAt: JobTimestamp?) -> JobVersion? {
        guard let deletedAt else { return last }
        var version = last ?? JobVersion(updatedAt: nil, commitTimestamp: nil, statusRank: 0)
        version.updatedAt = max(version.updatedAt ?? deletedAt, deletedAt)
        version.commitTimestamp = max(version.commitTimestamp ?? deletedAt, deletedAt)
        return version
    }

    private mutating func mergeRow(
        _ observation: JobObservation, columns: [String: JSON], complete: Bool, watermarkLimit: JobTimestamp?
    ) -> MergeOutcome {
        let id = observation.jobID
        var merged = columns
        if observation.source == .realtime || !complete, let current = self.entries[id] {
            // A change record lists the columns present (an unchanged TOASTed column may be missing, a 413
            // drops long values): keep the columns it lacks from what we know.
            merged = current.job.columns.merging(columns, uniquingKeysWith: { _, new in new })
        }
        merged["id"] = merged["id"] ?? .string(id.rawValue)
        guard var incoming = try? Job(row: merged, commitTimestamp: observation.commitTimestamp), incoming.id == id
        else {
            return .ignored(.stale)  // cannot happen for observations built by JobObservation.row
        }
        if let updatedAt = incoming.updatedAt, self.watermark.map({ updatedAt > $0 }) ?? true,
            watermarkLimit.map({ updatedAt <= $0 }) ?? true
        {
            self.watermark = updatedAt
        }
        guard let current = self.entries[id] else {
            if let tombstone = self.tombstones[id] {
                // A row after a deletion must be strictly newer than what was deleted (a re-insert).
                if let deletedVersion = tombstone, incoming.version.compared(to: deletedVersion) != .newer {
                    return .ignored(.stale)
                }
                self.tombstones[id] = nil
            }
            self.sequence += 1
            self.entries[id] = Entry(job: incoming, complete: complete, sequence: self.sequence)
            return .inserted(incoming)
        }
        let order = incoming.version.compared(to: current.job.version)
        let accept: Bool
        switch order {
        case .newer:
            accept = true
        case .older:
            return .ignored(.stale)
        case .same:
            if incoming.hasSameContent(as: current.job) {
                if complete, !current.complete { self.entries[id]?.complete = true }  // known complete now
                return .ignored(.duplicate)
            }
            // Same version, different content. Accept when it fills a truncated row, or when no timestamp can
            // order the two (e.g. the status endpoint's progress messages) and the job is not finished yet.
            let fillsTruncated = complete && !current.complete
            let untimed = !incoming.version.hasTimestamp && !current.job.version.hasTimestamp
            accept = fillsTruncated || (untimed && !current.job.status.isTerminal)
        }
        guard accept else { return .ignored(.duplicate) }
        if incoming.commitTimestamp == nil, order == .same {
            incoming.commitTimestamp = current.job.commitTimestamp
        }
        self.sequence += 1
        self.entries[id] = Entry(job: incoming, complete: complete, sequence: self.sequence)
        return .updated(incoming, previous: current.job)
    }

    private mutating func addTombstone(_ id: JobID, version: JobVersion?) {
        if self.tombstones.updateValue(version, forKey: id) == nil {
            self.tombstoneOrder.append(id)
        }
        while self.tombstones.count > self.tombstoneLimit, self.tombstoneHead < self.tombstoneOrder.count {
            let oldest = self.tombstoneOrder[self.tombstoneHead]
            self.tombstoneHead += 1
            self.tombstones[oldest] = nil
        }
        if self.tombstoneHead > 1024, self.tombstoneHead * 2 > self.tombstoneOrder.count {
            self.tombstoneOrder.removeFirst(self.tombstoneHead)
            self.tombstoneHead = 0
        }
    }

    var count: Int { self.entries.count }
}
