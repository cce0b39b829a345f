/// Which feed channels are live, for ``JobSyncClient``'s run loop (pure bookkeeping, no I/O).
///
/// The feed counts as live when every *established* channel is live. A channel added while the feed was live is
/// "late" until its first `live`: it does not take the feed out of live mode while it joins, but it does when its
/// subscription ends (fails) before that, since nothing covers its ids then.
struct FeedLiveness: Sendable, Hashable {
    private(set) var generation = 0
    private var channels: Set<Int> = []
    private var live: Set<Int> = []
    private var late: [Int: [JobID]] = [:]

    init(generation: Int = 0, channels: Int = 0) {
        self.generation = generation
        self.channels = Set(0..<channels)
    }

    /// Adds a channel; `late` when the feed is live right now.
    mutating func add(_ channel: Int, ids: [JobID], late: Bool) {
        self.channels.insert(channel)
        if late { self.late[channel] = ids }
    }

    /// Marks a channel live. Returns the channel's ids when it was late (they need a catch-up fetch).
    mutating func markLive(_ channel: Int) -> [JobID]? {
        guard self.channels.contains(channel) else { return nil }
        self.live.insert(channel)
        return self.late.removeValue(forKey: channel)
    }

    /// Marks a channel not live. Returns `true` when this takes the feed out of live mode.
    mutating func markNotLive(_ channel: Int) -> Bool {
        guard self.channels.contains(channel) else { return false }
        self.live.remove(channel)
        return self.late[channel] == nil
    }

    /// The channel's subscription ended (it failed or was closed), late or not. Returns `true` when the channel
    /// belongs to this generation (the feed is then not live).
    mutating func markEnded(_ channel: Int) -> Bool {
        guard self.channels.contains(channel) else { return false }
        self.live.remove(channel)
        self.late[channel] = nil
        return true
    }

    /// Every channel becomes required (after the feed went down, the next reconciliation covers them all).
    mutating func establishAll() {
        self.late = [:]
    }

    /// Whether every established channel is live.
    var allLive: Bool {
        self.channels.subtracting(self.late.keys).isSubset(of: self.live)
    }
}
