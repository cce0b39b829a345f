import SupabaseREST

/// How the feed's subscriptions cover the watched ids: the run loop's channel-shaping decisions, pure (no I/O).
///
/// Watched ids are bound in `id=in.(…)` channels of at most ``PostgRESTFilter/maximumInValues`` ids each; beyond
/// `maximumFilteredIDs` ids (or in all-jobs mode) one table-wide binding takes them all and changes are filtered
/// locally. Newly watched ids get channels of their own without disturbing the others; the whole set is rebuilt
/// (a new generation, which costs a reconciliation) only when it must change shape: between filtered and table-wide,
/// beyond the channel limit, or when more than half of the subscribed ids are no longer watched.
struct ChannelPlan: Sendable, Hashable {
    /// What to do with the subscriptions after the watched set changed.
    enum Decision: Sendable, Hashable {
        /// The subscriptions cover what is watched (or cover more, cheaply).
        case keep
        /// Subscribe these new channels, numbered from `first` on, next to the existing ones.
        case add(first: Int, [JobFeedBinding])
        /// Start a new generation from ``ChannelPlan/init(mode:watched:maximumFilteredIDs:)``.
        case rebuild
    }

    /// The bindings this generation starts with, one channel each (channel numbers are their indices).
    let bindings: [JobFeedBinding]
    private let mode: JobSyncClient.WatchMode
    private let maximumFilteredIDs: Int
    private let tableWide: Bool
    private var covered: Set<JobID>
    private var channels: Int

    /// The plan for a new generation.
    init(mode: JobSyncClient.WatchMode, watched: Set<JobID>, maximumFilteredIDs: Int) {
        self.mode = mode
        self.maximumFilteredIDs = maximumFilteredIDs
        if mode == .allJobs || watched.count > maximumFilteredIDs {
            self.bindings = [JobFeedBinding(ids: nil)]
        } else {
            self.bindings = Self.chunks(watched.sorted())
        }
        self.tableWide = self.bindings.contains { $0.ids == nil }
        self.covered = Set(self.bindings.flatMap { $0.ids ?? [] })
        self.channels = self.bindings.count
    }

    /// The watched set is now `watched`.
    mutating func watchedChanged(_ watched: Set<JobID>) -> Decision {
        if self.mode == .allJobs { return .keep }
        if watched.count > self.maximumFilteredIDs { return self.tableWide ? .keep : .rebuild }
        if self.tableWide { return .rebuild }  // back under the limit: filtered channels again
        let added = Self.chunks(watched.subtracting(self.covered).sorted())
        let removed = self.covered.subtracting(watched).count
        let maximumChannels = max(1, self.maximumFilteredIDs / PostgRESTFilter.maximumInValues)
        if self.channels + added.count > maximumChannels || removed * 2 > self.covered.count { return .rebuild }
        guard !added.isEmpty else { return .keep }
        let first = self.channels
        self.channels += added.count
        for binding in added { self.covered.formUnion(binding.ids ?? []) }
        return .add(first: first, added)
    }

    private static func chunks(_ ids: [JobID]) -> [JobFeedBinding] {
        stride(from: 0, to: ids.count, by: PostgRESTFilter.maximumInValues).map {
            JobFeedBinding(ids: Array(ids[$0..<min($0 + PostgRESTFilter.maximumInValues, ids.count)]))
        }
    }
}
