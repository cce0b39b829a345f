import DequeModule
import JobSyncCore

/// The pure core of ``JobStore``: the one merge path, the monotonic rules, the watermark and the retention policy.
/// No I/O, no locks, no clock: callers pass the time (microseconds since the epoch).
struct JobStoreCore: Sendable {
    /// A job as the store holds it. Its fields live in one immutable heap object, so the table holds 8 bytes per
    /// bucket instead of the 232 of the fields themselves: a dictionary keeps up to 2.7 buckets per entry (it doubles
    /// at three quarters full), and at 100,000 jobs the inline fields made the empty buckets cost more than the jobs.
    struct Entry: Sendable, Hashable {
        private final class Fields: Sendable {
            let job: Job
            let complete: Bool
            let sequence: Int64

            init(job: Job, complete: Bool, sequence: Int64) {
                self.job = job
                self.complete = complete
                self.sequence = sequence
            }
        }

        private var fields: Fields

        init(job: Job, complete: Bool, sequence: Int64) {
            self.fields = Fields(job: job, complete: complete, sequence: sequence)
        }

        var job: Job { self.fields.job }
        /// Whether every column is known (false after a truncated or partial event, until a full row arrives).
        var complete: Bool {
            get { self.fields.complete }
            set { self.fields = Fields(job: self.job, complete: newValue, sequence: self.sequence) }
        }
        /// The store sequence number of the last accepted change.
        var sequence: Int64 { self.fields.sequence }

        static func == (lhs: Entry, rhs: Entry) -> Bool {
            lhs.fields === rhs.fields
                || (lhs.job == rhs.job && lhs.complete == rhs.complete && lhs.sequence == rhs.sequence)
        }

        func hash(into hasher: inout Hasher) {
            hasher.combine(self.job)
            hasher.combine(self.complete)
            hasher.combine(self.sequence)
        }
    }

    private(set) var entries: [JobID: Entry] = [:]
    /// Deleted or vanished jobs with the last version known, so a late stale row cannot resurrect them.
    private(set) var tombstones: RememberedVersions
    /// Jobs that left memory (finished past the retention, or no longer watched) with their last version, so a late
    /// stale row cannot bring an older state back.
    private(set) var retired: RememberedVersions
    /// Finished entries in the order they finished (id, the entry's sequence then, when): the retention queue. A
    /// record whose entry has changed since (newer sequence) is skipped.
    private var finished: Deque<(id: JobID, sequence: Int64, at: Int64)> = []
    /// How many entries hold a terminal state.
    private(set) var finishedCount = 0
    let retention: JobStore.Retention
    /// The largest `updated_at` seen in any row.
    private(set) var watermark: JobTimestamp?
    /// Increases with every accepted change.
    private(set) var sequence: Int64 = 0

    init(tombstoneLimit: Int = 10_000, retention: JobStore.Retention = .default) {
        self.tombstones = RememberedVersions(limit: tombstoneLimit)
        self.retired = RememberedVersions(limit: retention.rememberedJobs)
        self.retention = retention
    }

    func job(_ id: JobID) -> Job? { self.entries[id]?.job }

    /// Restores persisted state without emitting anything; finished jobs beyond the retention count stay on disk.
    mutating func restore(_ snapshot: PersistedJobs, now: Int64) {
        let sequence = snapshot.sequence
        self.sequence = sequence
        for (job, complete) in snapshot.jobs {
            self.put(Entry(job: job, complete: complete, sequence: sequence), now: now)
        }
        for (id, version) in snapshot.tombstones where self.entries[id] == nil {
            self.tombstones.remember(id, version: version)  // oldest first: the limit keeps the newest
        }
        self.watermark = snapshot.watermark
        self.evict(now: now)
    }

    // MARK: Retention

    /// Retires finished jobs past the retention period, and the oldest finished ones beyond the retention count.
    mutating func evict(now: Int64) {
        let period = Self.microseconds(self.retention.period)
        while let head = self.finished.first {
            guard let entry = self.entries[head.id], entry.sequence == head.sequence, entry.job.status.isTerminal
            else {
                self.finished.removeFirst()  // changed since (a newer state has its own record) or gone
                continue
            }
            guard self.finishedCount > self.retention.maximumFinishedJobs || now - head.at >= period else { return }
            self.finished.removeFirst()
            self.retire(head.id)
        }
    }

    /// Retires an unfinished job (no longer watched: its state would go stale). A finished job stays until the
    /// retention policy retires it. Returns whether the job left memory.
    @discardableResult
    mutating func retireIfUnfinished(_ id: JobID) -> Bool {
        guard let entry = self.entries[id], !entry.job.status.isTerminal else { return false }
        self.retire(id)
        return true
    }

    private mutating func retire(_ id: JobID) {
        guard let entry = self.remove(id) else { return }
        self.retired.remember(id, version: entry.job.version)
    }

    /// Stores an entry, keeping the finished count and the retention queue.
    private mutating func put(_ entry: Entry, now: Int64) {
        let id = entry.job.id
        let wasTerminal = self.entries.updateValue(entry, forKey: id)?.job.status.isTerminal ?? false
        let isTerminal = entry.job.status.isTerminal
        if isTerminal { self.finished.append((id, entry.sequence, now)) }
        self.finishedCount += (isTerminal ? 1 : 0) - (wasTerminal ? 1 : 0)
    }

    private mutating func remove(_ id: JobID) -> Entry? {
        let entry = self.entries.removeValue(forKey: id)
        if entry?.job.status.isTerminal == true { self.finishedCount -= 1 }
        return entry
    }

    private static func microseconds(_ duration: Duration) -> Int64 {
        let (seconds, attoseconds) = duration.components
        let (product, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000)
        return overflow ? .max : product + attoseconds / 1_000_000_000_000
    }

    // MARK: Merging

    /// The single merge path for every source.
    ///
    /// - Parameter watermarkLimit: a row's `updated_at` beyond this instant (a server clock, or a row, far in the
    ///   future) does not move the watermark: a watermark ahead of the server's clock would hide every later change
    ///   from watermark reads. The row itself is merged as usual.
    ///   - now: this machine's time (microseconds since the epoch), for the retention policy.
    @discardableResult
    mutating func merge(_ observation: JobObservation, watermarkLimit: JobTimestamp? = nil, now: Int64 = 0)
        -> MergeOutcome
    {
        defer { self.evict(now: now) }
        switch observation.kind {
        case .deleted:
            return self.mergeDeletion(observation.jobID, at: observation.commitTimestamp)
        case .vanished:
            return self.mergeDeletion(observation.jobID, at: nil)
        case .row(let columns, let complete):
            return self.mergeRow(
                observation, columns: columns, complete: complete, watermarkLimit: watermarkLimit, now: now)
        }
    }

    /// `deletedAt` is the DELETE's commit time when known: every row state written before it is stale, even one this
    /// store never saw (a REST read in flight during the deletion must not bring the job back).
    private mutating func mergeDeletion(_ id: JobID, at deletedAt: JobTimestamp?) -> MergeOutcome {
        if let entry = self.remove(id) {
            self.sequence += 1
            self.tombstones.remember(id, version: Self.tombstoneVersion(entry.job.version, deletedAt: deletedAt))
            return .deleted(id, last: entry.job)
        }
        if self.tombstones.contains(id) {
            if deletedAt != nil {
                self.tombstones.update(
                    id, version: Self.tombstoneVersion(self.tombstones.version(of: id), deletedAt: deletedAt))
            }
            return .ignored(.alreadyDeleted)
        }
        // Never seen, or retired: still a final answer for anyone waiting on this id.
        let last = self.retired.version(of: id)
        self.retired.forget(id)
        self.sequence += 1
        self.tombstones.remember(id, version: Self.tombstoneVersion(last, deletedAt: deletedAt))
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

    /// `known` with each column of `present` set to its value there (the first, for a repeated key).
    private static func columns(_ present: JSONObject, over known: JSONObject) -> JSONObject {
        // The usual case: a whole record, its columns in the known row's order. Nothing to fill in, nothing copied.
        if present.members.count >= known.members.count,
            zip(present.members, known.members).allSatisfy({ $0.key == $1.key })
        {
            return present
        }
        var merged = known
        guard known.members.count + present.members.count <= 64 else {
            var seen: Set<String> = []
            for member in present.members where seen.insert(member.key).inserted {
                merged[member.key] = member.value
            }
            return merged
        }
        // Columns in another order, or some missing: each key is looked for where it is expected first (the same
        // position), then among the known columns; a bit per known column marks the ones already set from
        // `present`, so a repeated key keeps its first value. No hashing, no set.
        var written: UInt64 = 0
        for (position, member) in present.members.enumerated() {
            let index =
                position < merged.members.count && merged.members[position].key == member.key
                ? position : merged.members.firstIndex { $0.key == member.key }
            if let index {
                guard written & (1 << UInt64(index)) == 0 else { continue }
                written |= 1 << UInt64(index)
                merged.members[index].value = member.value
            } else {
                written |= 1 << UInt64(merged.members.count)
                merged.members.append(member)
            }
        }
        return merged
    }

    private mutating func mergeRow(
        _ observation: JobObservation, columns: JSONObject, complete: Bool, watermarkLimit: JobTimestamp?,
        now: Int64
    ) -> MergeOutcome {
        let id = observation.jobID
        var merged = columns
        if observation.source == .realtime || !complete, let current = self.entries[id] {
            // A change record lists the columns present (an unchanged TOASTed column may be missing, a 413
            // drops long values): keep the columns it lacks from what we know.
            merged = Self.columns(columns, over: current.job.columns)
        }
        if merged["id"] == nil { merged["id"] = .string(id.rawValue) }
        guard var incoming = try? Job(row: merged, commitTimestamp: observation.commitTimestamp, knownID: id),
            incoming.id == id
        else {
            return .ignored(.stale)  // cannot happen for observations built by JobObservation.row
        }
        if let updatedAt = incoming.updatedAt, self.watermark.map({ updatedAt > $0 }) ?? true,
            watermarkLimit.map({ updatedAt <= $0 }) ?? true
        {
            self.watermark = updatedAt
        }
        guard let current = self.entries[id] else {
            if self.tombstones.contains(id) {
                // A row after a deletion must be strictly newer than what was deleted (a re-insert).
                if let deletedVersion = self.tombstones.version(of: id),
                    incoming.version.compared(to: deletedVersion) != .newer
                {
                    return .ignored(.stale)
                }
                self.tombstones.forget(id)
            }
            var restored = false
            if let retiredVersion = self.retired.version(of: id) {
                // A job that left memory: an older row is stale; the same version is the state it had, read again
                // for someone who asks for it now (not news to anyone who saw it before).
                switch incoming.version.compared(to: retiredVersion) {
                case .older: return .ignored(.stale)
                case .same: restored = true
                case .newer: break
                }
                self.retired.forget(id)
            }
            self.sequence += 1
            self.put(Entry(job: incoming, complete: complete, sequence: self.sequence), now: now)
            return restored ? .restored(incoming) : .inserted(incoming)
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
        self.put(Entry(job: incoming, complete: complete, sequence: self.sequence), now: now)
        return .updated(incoming, previous: current.job)
    }

    var count: Int { self.entries.count }
}
