/// A read policy set on `realtime.messages` (broadcast-from-database.md §B2), evaluated with the JWT's role and
/// claims against the joined sub-topic. `service_role` bypasses RLS and may always read.
public struct BroadcastReadRule: Sendable, Hashable {
    /// One `create policy … for select to <roles> using (extension = 'broadcast' and realtime.topic() like …)`.
    public struct Policy: Sendable, Hashable {
        /// The roles the policy is granted `to`.
        public var roles: Set<String>
        /// A SQL `LIKE` pattern the sub-topic must match (`%` any run, `_` one character).
        public var topicLike: String
        /// Claims that must be present with exactly these values (e.g. `sub`); empty for none.
        public var requiredClaims: [String: LocalJSON]

        /// Creates a policy.
        public init(roles: Set<String>, topicLike: String, requiredClaims: [String: LocalJSON] = [:]) {
            self.roles = roles
            self.topicLike = topicLike
            self.requiredClaims = requiredClaims
        }
    }

    /// The permissive policies; a read passes when any of them does (no policy: nobody but `service_role`).
    public var policies: [Policy]

    /// Creates a rule from policies.
    public init(policies: [Policy]) {
        self.policies = policies
    }

    /// What the shipped migration grants: `authenticated` may read topics `LIKE 'jobs%'` (`jobs`, `jobs:<id>`);
    /// `anon` may not.
    public static let jobsMigration = BroadcastReadRule(
        policies: [Policy(roles: ["authenticated"], topicLike: "jobs%")])

    /// No read policy at all: every private join is refused except with `service_role` (§B2).
    public static let denyAll = BroadcastReadRule(policies: [])

    /// Whether `reader` may read broadcasts on the private sub-topic `topic` (§B2: per topic, never per message).
    public func allows(topic: String, reader: BroadcastReader) -> Bool {
        if reader.role == "service_role" { return true }
        return self.policies.contains { policy in
            policy.roles.contains(reader.role) && sqlLike(topic, policy.topicLike)
                && policy.requiredClaims.allSatisfy { reader.claims[$0.key] == $0.value }
        }
    }
}

/// SQL `LIKE` without an escape character: `%` matches any run of characters, `_` exactly one.
func sqlLike(_ text: String, _ pattern: String) -> Bool {
    let text = Array(text)
    let pattern = Array(pattern)
    // Dynamic programming over (text prefix, pattern prefix).
    var matches = [Bool](repeating: false, count: text.count + 1)
    matches[0] = true
    for token in pattern {
        var next = [Bool](repeating: false, count: text.count + 1)
        if token == "%" {
            var any = false
            for index in 0...text.count {
                any = any || matches[index]
                next[index] = any
            }
        } else {
            for index in 0..<text.count where matches[index] && (token == "_" || text[index] == token) {
                next[index + 1] = true
            }
        }
        matches = next
    }
    return matches[text.count]
}

/// One message to write with ``InMemoryJobsBackend/sendBroadcastTransaction(_:)``: the arguments of
/// `realtime.send` / `realtime.send_binary` (§B1.2).
public struct BroadcastWrite: Sendable, Hashable {
    /// The JSON payload (`realtime.send`); nil for a binary message.
    public var payload: LocalJSON?
    /// The bytes of `realtime.send_binary`; nil for a JSON message.
    public var binaryPayload: [UInt8]?
    /// The event name.
    public var event: String
    /// The sub-topic (`jobs:42`).
    public var topic: String
    /// Whether only private channels receive it (`realtime.send`'s default is true).
    public var isPrivate: Bool

    /// A `realtime.send(payload, event, topic, private)` call.
    public init(payload: LocalJSON, event: String, topic: String, isPrivate: Bool = true) {
        self.payload = payload
        self.binaryPayload = nil
        self.event = event
        self.topic = topic
        self.isPrivate = isPrivate
    }

    /// A `realtime.send_binary(payload, event, topic, private)` call.
    public init(binaryPayload: [UInt8], event: String, topic: String, isPrivate: Bool = true) {
        self.payload = nil
        self.binaryPayload = binaryPayload
        self.event = event
        self.topic = topic
        self.isPrivate = isPrivate
    }
}

/// The in-memory `realtime.messages` table (§B1.1, §B5): rows in commit order, bounded by retention (72 h by the
/// injected wall clock, §B1.1) and a row cap (oldest dropped first). A value type: its owner serialises access.
struct InMemoryBroadcasts: Sendable {
    /// Rows in commit order from ``start`` on, each with its commit sequence number (the tie-break of equal
    /// `inserted_at`). Dropped rows before ``start`` are compacted away from time to time.
    private var storage: [(sequence: Int, row: BroadcastRow)] = []
    private var start = 0
    private var nextSequence = 0
    /// How long rows are kept (the janitor's 72 h, §B1.1).
    var retention: Duration = .seconds(72 * 3600)
    /// Most rows kept; the oldest go first.
    var maxRows = 100_000
    /// Replays rows of one transaction in reverse order, as the server does (§B5 "Order bug").
    var reproduceReplayOrderBug = true

    /// The stored rows in commit order.
    var rows: ArraySlice<(sequence: Int, row: BroadcastRow)> { self.storage[self.start...] }

    /// `realtime.send`'s row (§B1.2): a fresh UUID, `payload.id` added to object payloads without a top-level `id`.
    static func makeRow(_ write: BroadcastWrite, insertedAt: LocalTimestamp) -> BroadcastRow {
        let id = randomUUIDString()
        var payload = write.payload
        if case .object(var members)? = payload, members["id"] == nil {
            members["id"] = .string(id)
            payload = .object(members)
        }
        return BroadcastRow(
            id: id, topic: write.topic, event: write.event, payload: payload, binaryPayload: write.binaryPayload,
            isPrivate: write.isPrivate, insertedAt: insertedAt)
    }

    /// Stores committed rows and applies the bounds relative to `now`.
    mutating func append(_ new: [BroadcastRow], now: LocalTimestamp) {
        for row in new {
            self.storage.append((self.nextSequence, row))
            self.nextSequence += 1
        }
        self.prune(now: now)
    }

    /// Drops the oldest rows (commit order) while they are past the retention or beyond the cap. Amortised O(1) per
    /// row: the front index moves and the array is compacted once half of it is dead.
    mutating func prune(now: LocalTimestamp) {
        let cutoff = now.advanced(by: .zero - self.retention)
        while self.start < self.storage.count,
            self.storage.count - self.start > self.maxRows || self.storage[self.start].row.insertedAt < cutoff
        {
            self.start += 1
        }
        if self.start > 1024, self.start * 2 > self.storage.count {
            self.storage.removeFirst(self.start)
            self.start = 0
        }
    }

    /// The replay query (§B5): `since` ≤ `inserted_at` < now + 1 min, newest `clamp(limit, 1, 25)`, oldest first.
    func replay(topic: String, isPrivate: Bool, sinceMilliseconds: Int64, limit: Int, now: LocalTimestamp)
        -> [BroadcastRow]
    {
        let lower = sinceMilliseconds.multipliedReportingOverflow(by: 1000)
        let since = lower.overflow ? (sinceMilliseconds < 0 ? Int64.min : Int64.max) : lower.partialValue
        let upper = now.advanced(by: .seconds(60))
        let candidates = self.rows.filter {
            $0.row.topic == topic && $0.row.isPrivate == isPrivate
                && $0.row.insertedAt.microsecondsSinceEpoch >= since && $0.row.insertedAt < upper
        }
        // ORDER BY inserted_at DESC: ties come back in storage (commit) order, and the final reversal turns them
        // around (the bug). Without the bug, ties are ordered newest first so that reversal restores commit order.
        let descending = candidates.sorted { lhs, rhs in
            if lhs.row.insertedAt != rhs.row.insertedAt { return lhs.row.insertedAt > rhs.row.insertedAt }
            return self.reproduceReplayOrderBug ? lhs.sequence < rhs.sequence : lhs.sequence > rhs.sequence
        }
        return Array(descending.prefix(min(25, max(1, limit))).map(\.row).reversed())
    }
}
