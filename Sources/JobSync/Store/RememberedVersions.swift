import DequeModule

/// Job ids the store no longer holds a state for, each with the last version known, so that a late stale row cannot
/// bring an older state back. Bounded: beyond `limit` ids, the one remembered longest ago is forgotten first.
///
/// The store keeps two: tombstones (deleted or vanished jobs) and retired jobs (finished jobs that left memory under
/// the retention policy, or jobs no longer watched).
struct RememberedVersions: Sendable {
    /// The version per id (`nil`: unknown) and the stamp of its entry in `order`.
    private var versions: [JobID: (version: JobVersion?, stamp: Int64)] = [:]
    /// Ids in the order they were remembered; an entry whose stamp no longer matches `versions` is skipped.
    private var order: Deque<(id: JobID, stamp: Int64)> = []
    private var nextStamp: Int64 = 0
    let limit: Int

    init(limit: Int) {
        self.limit = max(1, limit)
    }

    var count: Int { self.versions.count }

    func contains(_ id: JobID) -> Bool { self.versions[id] != nil }

    /// The version remembered for `id`; `nil` when it is not remembered or its version is unknown.
    func version(of id: JobID) -> JobVersion? { self.versions[id]?.version ?? nil }

    /// Remembers `id` (again) as the newest entry.
    mutating func remember(_ id: JobID, version: JobVersion?) {
        self.nextStamp += 1
        self.versions[id] = (version, self.nextStamp)
        self.order.append((id, self.nextStamp))
        while self.versions.count > self.limit, let oldest = self.order.popFirst() {
            if self.versions[oldest.id]?.stamp == oldest.stamp { self.versions[oldest.id] = nil }
        }
        // Entries replaced or forgotten leave stale stamps behind: drop them once they outnumber the live ones.
        if self.order.count > 2 * self.versions.count + 1024 {
            self.order.removeAll { self.versions[$0.id]?.stamp != $0.stamp }
        }
    }

    /// Replaces the version of an id already remembered, keeping its place in the order.
    mutating func update(_ id: JobID, version: JobVersion?) {
        self.versions[id]?.version = version
    }

    /// Forgets `id`.
    mutating func forget(_ id: JobID) {
        self.versions[id] = nil
    }

    /// Every remembered id with its version, oldest first.
    var all: [(JobID, JobVersion?)] {
        self.order.compactMap { entry in
            guard let remembered = self.versions[entry.id], remembered.stamp == entry.stamp else { return nil }
            return (entry.id, remembered.version)
        }
    }
}
