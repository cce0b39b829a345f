/// One row of `realtime.messages` (broadcast-from-database.md §B1.1): a message written by `realtime.send` or
/// `realtime.broadcast_changes`, stored for replay and streamed live after its commit.
public struct BroadcastRow: Sendable, Hashable {
    /// The row's `id` (a lowercase UUID), sent to clients as `meta.id`.
    public var id: String
    /// The sub-topic, e.g. `jobs:42` (clients join `realtime:jobs:42`).
    public var topic: String
    /// The event name, e.g. `UPDATE`.
    public var event: String
    /// The JSON payload (`realtime.send` adds a top-level `id` equal to ``id`` unless it had one); nil for a
    /// binary row.
    public var payload: LocalJSON?
    /// The `binary_payload` of `realtime.send_binary`; nil for a JSON row.
    public var binaryPayload: [UInt8]?
    /// Whether only private channels receive it (always true for `broadcast_changes`).
    public var isPrivate: Bool
    /// `inserted_at`: the writing transaction's start (`now()`), which replay orders and filters by (§B5).
    public var insertedAt: LocalTimestamp

    /// Creates a row.
    public init(
        id: String, topic: String, event: String, payload: LocalJSON?, binaryPayload: [UInt8]? = nil,
        isPrivate: Bool, insertedAt: LocalTimestamp
    ) {
        self.id = id
        self.topic = topic
        self.event = event
        self.payload = payload
        self.binaryPayload = binaryPayload
        self.isPrivate = isPrivate
        self.insertedAt = insertedAt
    }
}

/// Who asks to read a private topic (§B2): the JWT's `role` and its whole claims object.
public struct BroadcastReader: Sendable, Hashable {
    /// The JWT's `role` (`anon`, `authenticated`, `service_role`, …).
    public var role: String
    /// The JWT's claims, as `request.jwt.claims` (`sub`, `role`, …).
    public var claims: [String: LocalJSON]

    /// Creates a reader.
    public init(role: String, claims: [String: LocalJSON]) {
        self.role = role
        self.claims = claims
    }
}

/// `realtime.messages` behind SupabaseLocal's Broadcast from Database (§B1–§B6): stored messages, the read
/// authorization of private topics, replay, and the live stream. Implemented in memory
/// (``InMemoryJobsBackend``, which also emulates the shipped trigger on `jobs`) and on PostgreSQL (real SQL:
/// `supabase/migrations/*_jobs_broadcast.sql` and the `realtime` schema SupabaseLocal installs).
public protocol BroadcastBackend: Sendable {
    /// `realtime.send(payload, event, topic, private)` (§B1.2) in a transaction of its own: stores the row and
    /// streams it after the commit. Returns the stored row, or nil when the send failed and the message is lost
    /// (the real function only logs a warning then).
    func send(payload: LocalJSON, event: String, topic: String, isPrivate: Bool) async throws -> BroadcastRow?

    /// Whether `reader` may read broadcasts on the private sub-topic `topic` (§B2: a probe row with
    /// `extension = 'broadcast'` selected under the `realtime.messages` read policies, then rolled back).
    func canRead(topic: String, reader: BroadcastReader) async throws -> Bool

    /// The replay query (§B5): rows of `topic` with the given privacy, `extension = 'broadcast'`,
    /// `since` (milliseconds since the epoch) ≤ `inserted_at` < now + 1 min, the newest `limit` (clamped to 1…25),
    /// returned oldest first (ties in `inserted_at` as the server returns them, see §B5's order bug).
    func replay(topic: String, isPrivate: Bool, sinceMilliseconds: Int64, limit: Int) async throws -> [BroadcastRow]

    /// A new subscription to committed messages (every topic, both privacies), starting with the next commit, in
    /// commit order. The stream ends when the backend shuts down; cancelling iteration unsubscribes.
    func broadcasts() -> AsyncStream<BroadcastRow>
}
