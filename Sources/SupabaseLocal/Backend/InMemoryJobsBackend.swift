import NIOConcurrencyHelpers

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A source of wall-clock time for row timestamps and commit timestamps.
public struct WallClock: Sendable {
    /// Returns the current time.
    public var now: @Sendable () -> LocalTimestamp

    /// Creates a wall clock from a closure (tests pass a fixed or stepping clock).
    public init(now: @escaping @Sendable () -> LocalTimestamp) {
        self.now = now
    }

    /// The system's real-time clock.
    public static let system = WallClock {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return LocalTimestamp(microsecondsSinceEpoch: Int64(spec.tv_sec) * 1_000_000 + Int64(spec.tv_nsec) / 1000)
    }
}

/// The default backend: one table held in memory, changes fanned out synchronously in commit order.
///
/// It also holds an in-memory `realtime.messages` (broadcast-from-database.md §B1, §B5) and emulates the trigger
/// users install (§B1.4): each row change calls `realtime.broadcast_changes` for topic `<table>:<id>` and for the
/// table-wide topic `<table>`, in the same commit as the row write (see ``broadcastTrigger``).
public final class InMemoryJobsBackend: JobsBackend {
    struct State {
        var rows: [LocalJSON: TableRow] = [:]
        var lastTimestamp = LocalTimestamp(microsecondsSinceEpoch: 0)
        var subscribers: [Int: AsyncStream<TableChange>.Continuation] = [:]
        var nextSubscriber = 0
        var broadcasts = InMemoryBroadcasts()
        var broadcastSubscribers: [Int: AsyncStream<BroadcastRow>.Continuation] = [:]
        var broadcastTrigger = true
        var broadcastReadRule = BroadcastReadRule.jobsMigration
    }

    /// The table served.
    public let table: TableDescriptor
    let clock: WallClock
    let state = NIOLockedValueBox(State())

    /// Creates an empty in-memory table.
    ///
    /// - Parameters:
    ///   - table: The table shape (defaults to ``TableDescriptor/jobs``). It must have a single-column primary key.
    ///   - clock: Wall-clock time used for `created_at`, `updated_at` and commit timestamps.
    /// - Throws: ``SupabaseLocalError/Code/invalidConfiguration`` when the primary key is not a single column.
    public convenience init(table: TableDescriptor = .jobs, clock: WallClock = .system) throws(SupabaseLocalError) {
        guard table.primaryKey.count == 1 else {
            throw SupabaseLocalError(.invalidConfiguration, "InMemoryJobsBackend needs a single-column primary key")
        }
        self.init(checked: table, clock: clock)
    }

    /// `table` has a single-column primary key (``TableDescriptor/jobs`` has).
    init(checked table: TableDescriptor, clock: WallClock) {
        self.table = table
        self.clock = clock
    }

    private var keyColumn: String { self.table.primaryKey[0].name }
    private var hasUpdatedAt: Bool { self.table.column(named: "updated_at") != nil }

    /// Waits until cancelled, then ends every change stream.
    public func run() async throws {
        let (stream, continuation) = AsyncStream<Never>.makeStream()
        await withTaskCancellationHandler {
            for await _ in stream {}
        } onCancel: {
            continuation.finish()
        }
        self.finishStreams()
    }

    /// Ends every change stream (also done when ``run()`` is cancelled).
    public func finishStreams() {
        let subscribers = self.state.withLockedValue { state in
            let all = Array(state.subscribers.values)
            state.subscribers.removeAll()
            return all
        }
        for continuation in subscribers { continuation.finish() }
        let broadcastSubscribers = self.state.withLockedValue { state in
            let all = Array(state.broadcastSubscribers.values)
            state.broadcastSubscribers.removeAll()
            return all
        }
        for continuation in broadcastSubscribers { continuation.finish() }
    }

    /// All rows.
    public func rows() async throws -> [TableRow] {
        self.state.withLockedValue { Array($0.rows.values) }
    }

    /// The row with the given primary-key value (a dictionary look-up).
    public func row(primaryKey: LocalJSON) async throws -> TableRow? {
        self.state.withLockedValue { $0.rows[primaryKey] }
    }

    /// A strictly increasing "now" (microsecond steps when the wall clock does not advance).
    private static func tick(_ state: inout State, _ now: LocalTimestamp) -> LocalTimestamp {
        let next = max(now, LocalTimestamp(microsecondsSinceEpoch: state.lastTimestamp.microsecondsSinceEpoch + 1))
        state.lastTimestamp = next
        return next
    }

    private func validate(_ row: TableRow) throws {
        for key in row.keys where self.table.column(named: key) == nil {
            throw SupabaseLocalError(.invalidRow, "unknown column \(key)")
        }
        if let id = row["id"], self.table.column(named: "id")?.type == "uuid" {
            guard let text = id.stringValue, isUUID(text) else {
                throw SupabaseLocalError(.invalidRow, "invalid uuid for column id")
            }
        }
    }

    /// Inserts a row, filling `id`, `status`, `created_at`, `updated_at` and nulls for absent columns.
    public func insert(_ row: TableRow) async throws -> TableRow {
        try self.validate(row)
        let now = self.clock.now()
        return try self.state.withLockedValue { state in
            var stored = row
            let time = Self.tick(&state, now)
            if stored[self.keyColumn] == nil || stored[self.keyColumn] == .null {
                guard self.table.column(named: self.keyColumn)?.type == "uuid" else {
                    throw SupabaseLocalError(.invalidRow, "missing primary key \(self.keyColumn)")
                }
                stored[self.keyColumn] = .string(randomUUIDString())
            }
            if let id = stored[self.keyColumn]?.stringValue, self.table.column(named: self.keyColumn)?.type == "uuid" {
                stored[self.keyColumn] = .string(id.lowercased())
            }
            let key = stored[self.keyColumn]!
            guard state.rows[key] == nil else {
                throw SupabaseLocalError(.duplicateKey, "duplicate key value violates unique constraint")
            }
            for column in self.table.columns where stored[column.name] == nil {
                switch column.name {
                case "status": stored["status"] = .string("queued")
                case "created_at", "updated_at": stored[column.name] = .string(time.postgresJSONText)
                default: stored[column.name] = .null
                }
            }
            state.rows[key] = stored
            self.fireTrigger(&state, kind: .insert, new: stored, old: nil, time: time, now: now)
            let change = TableChange(
                kind: .insert, schema: self.table.schema, table: self.table.name,
                commitTimestamp: time, record: stored, oldRecord: nil
            )
            // Yield under the lock so concurrent writers cannot reorder changes.
            for continuation in state.subscribers.values { continuation.yield(change) }
            return stored
        }
    }

    /// Merges `values` into the row with the given key and bumps `updated_at`.
    public func update(primaryKey: LocalJSON, set values: TableRow) async throws -> TableRow? {
        try self.validate(values)
        let now = self.clock.now()
        let key = Self.normalize(primaryKey)
        return self.state.withLockedValue { state -> TableRow? in
            guard let old = state.rows[key] else { return nil }
            let time = Self.tick(&state, now)
            var new = old
            for (column, value) in values where column != self.keyColumn {
                new[column] = value
            }
            if self.hasUpdatedAt { new["updated_at"] = .string(time.postgresJSONText) }
            state.rows[key] = new
            self.fireTrigger(&state, kind: .update, new: new, old: old, time: time, now: now)
            let oldIdentity = self.identity(old: old, new: new)
            let change = TableChange(
                kind: .update, schema: self.table.schema, table: self.table.name,
                commitTimestamp: time, record: new, oldRecord: oldIdentity
            )
            // Yield under the lock so concurrent writers cannot reorder changes.
            for continuation in state.subscribers.values { continuation.yield(change) }
            return new
        }
    }

    /// Removes the row with the given key.
    public func delete(primaryKey: LocalJSON) async throws -> TableRow? {
        let now = self.clock.now()
        let key = Self.normalize(primaryKey)
        return self.state.withLockedValue { state -> TableRow? in
            guard let old = state.rows.removeValue(forKey: key) else { return nil }
            let time = Self.tick(&state, now)
            self.fireTrigger(&state, kind: .delete, new: nil, old: old, time: time, now: now)
            let change = TableChange(
                kind: .delete, schema: self.table.schema, table: self.table.name,
                commitTimestamp: time, record: nil, oldRecord: self.identity(old: old, new: old)
            )
            for continuation in state.subscribers.values { continuation.yield(change) }
            return old
        }
    }

    private static func normalize(_ key: LocalJSON) -> LocalJSON {
        if let text = key.stringValue, isUUID(text) { return .string(text.lowercased()) }
        return key
    }

    /// Old identity per replica identity: the PK (taken from the new tuple for UPDATE) or the full old row.
    private func identity(old: TableRow, new: TableRow) -> TableRow {
        switch self.table.replicaIdentity {
        case .full:
            return old
        case .default:
            var identity: TableRow = [:]
            for column in self.table.primaryKey { identity[column.name] = new[column.name] ?? old[column.name] }
            return identity
        }
    }

    /// A new change stream starting with the next commit.
    public func changes() -> AsyncStream<TableChange> {
        let (stream, continuation) = AsyncStream<TableChange>.makeStream()
        let id = self.state.withLockedValue { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.subscribers[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLockedValue { _ = $0.subscribers.removeValue(forKey: id) }
        }
        return stream
    }
}

/// Whether `text` is a canonical UUID (8-4-4-4-12 hex digits, any case).
func isUUID(_ text: String) -> Bool {
    let bytes = Array(text.utf8)
    guard bytes.count == 36 else { return false }
    for (index, byte) in bytes.enumerated() {
        if [8, 13, 18, 23].contains(index) {
            guard byte == UInt8(ascii: "-") else { return false }
        } else {
            let isHex = (byte >= 48 && byte <= 57) || (byte >= 97 && byte <= 102) || (byte >= 65 && byte <= 70)
            guard isHex else { return false }
        }
    }
    return true
}

/// A random version-4 UUID in lowercase text form.
func randomUUIDString() -> String {
    var generator = SystemRandomNumberGenerator()
    return uuidString(using: &generator)
}

/// A version-4 UUID from the given generator (seeded generators give reproducible ids).
func uuidString(using generator: inout some RandomNumberGenerator) -> String {
    var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &generator) }
    bytes[6] = (bytes[6] & 0x0F) | 0x40
    bytes[8] = (bytes[8] & 0x3F) | 0x80
    let hex = bytes.map { byte -> String in
        let text = String(byte, radix: 16)
        return text.count == 1 ? "0" + text : text
    }.joined()
    let chars = Array(hex)
    return String(chars[0..<8]) + "-" + String(chars[8..<12]) + "-" + String(chars[12..<16]) + "-"
        + String(chars[16..<20]) + "-" + String(chars[20..<32])
}
