/// One row of a table: column name → value. Absent keys mean "not present" (for partial updates).
public typealias TableRow = [String: LocalJSON]

/// A column of the served table.
public struct TableColumn: Sendable, Hashable {
    /// Column name.
    public var name: String
    /// PostgreSQL type name as in `pg_type.typname` (`uuid`, `text`, `jsonb`, `timestamptz`, `int8`, …).
    public var type: String
    /// Whether the column is part of the primary key.
    public var isPrimaryKey: Bool

    /// Creates a column description.
    public init(name: String, type: String, isPrimaryKey: Bool = false) {
        self.name = name
        self.type = type
        self.isPrimaryKey = isPrimaryKey
    }
}

/// The table's `REPLICA IDENTITY`, which decides what `old_record` carries (realtime-protocol.md §5.3).
public enum ReplicaIdentity: String, Sendable, Hashable {
    /// Only primary-key columns are logged as the old identity.
    case `default`
    /// Every column's old value is logged.
    case full
}

/// The shape of the one table a backend serves.
public struct TableDescriptor: Sendable, Hashable {
    /// Schema name, normally `public`.
    public var schema: String
    /// Table name, normally `jobs`.
    public var name: String
    /// Columns in `attnum` order.
    public var columns: [TableColumn]
    /// The table's replica identity.
    public var replicaIdentity: ReplicaIdentity

    /// Creates a table description.
    public init(schema: String, name: String, columns: [TableColumn], replicaIdentity: ReplicaIdentity = .default) {
        self.schema = schema
        self.name = name
        self.columns = columns
        self.replicaIdentity = replicaIdentity
    }

    /// The primary-key columns in `attnum` order.
    public var primaryKey: [TableColumn] { self.columns.filter(\.isPrimaryKey) }

    /// The column with the given name.
    public func column(named name: String) -> TableColumn? {
        self.columns.first { $0.name == name }
    }

    /// The `jobs` table: `id uuid` PK, `status`, `progress`, `error` text, `result jsonb`,
    /// `created_at`, `updated_at timestamptz`; replica identity default.
    public static let jobs = TableDescriptor(
        schema: "public",
        name: "jobs",
        columns: [
            TableColumn(name: "id", type: "uuid", isPrimaryKey: true),
            TableColumn(name: "status", type: "text"),
            TableColumn(name: "progress", type: "text"),
            TableColumn(name: "error", type: "text"),
            TableColumn(name: "result", type: "jsonb"),
            TableColumn(name: "created_at", type: "timestamptz"),
            TableColumn(name: "updated_at", type: "timestamptz"),
        ]
    )
}

/// One committed row change, as the Realtime side fans it out (realtime-protocol.md §5.2, §5.3).
public struct TableChange: Sendable, Hashable {
    /// The kind of change.
    public enum Kind: String, Sendable, Hashable {
        /// A new row.
        case insert = "INSERT"
        /// A changed row.
        case update = "UPDATE"
        /// A removed row.
        case delete = "DELETE"
    }

    /// INSERT, UPDATE or DELETE.
    public var kind: Kind
    /// Source schema.
    public var schema: String
    /// Source table.
    public var table: String
    /// Commit time (microseconds; Realtime shows milliseconds).
    public var commitTimestamp: LocalTimestamp
    /// The new row (INSERT, UPDATE); nil for DELETE.
    public var record: TableRow?
    /// The old identity per replica identity: PK columns (default) or the whole old row (full).
    /// Nil for INSERT; for UPDATE under default identity this is the PK taken from the new row.
    public var oldRecord: TableRow?

    /// Creates a change.
    public init(
        kind: Kind,
        schema: String,
        table: String,
        commitTimestamp: LocalTimestamp,
        record: TableRow?,
        oldRecord: TableRow?
    ) {
        self.kind = kind
        self.schema = schema
        self.table = table
        self.commitTimestamp = commitTimestamp
        self.record = record
        self.oldRecord = oldRecord
    }
}

/// The table store behind SupabaseLocal's REST and Realtime endpoints.
///
/// Implementations: ``InMemoryJobsBackend`` (default) and the PostgreSQL/wal2json backend in `Postgres/`.
///
/// Contract:
/// - Rows are keyed by the table's primary key (a single column for `jobs`: `id`).
/// - ``insert(_:)`` fills defaults for absent columns (for `jobs`: a random lowercase `id`, `status` `queued`,
///   `created_at` = `updated_at` = now) and rejects a duplicate key with code `duplicateKey`.
/// - ``update(primaryKey:set:)`` merges the given columns and, for tables with `updated_at`, sets it to a value
///   strictly greater than every `updated_at` previously written (even within one microsecond).
/// - Every committed write produces exactly one ``TableChange``, in commit order, on every stream returned by
///   ``changes()`` *before* the write's call returns (in-memory), or as soon as the backend observes the commit
///   (PostgreSQL: logical decoding).
/// - Timestamps in rows are JSON strings in `to_jsonb(timestamptz)` form (``LocalTimestamp/postgresJSONText``).
public protocol JobsBackend: Sendable {
    /// The table this backend serves.
    var table: TableDescriptor { get }

    /// Runs background work (for example polling a replication slot) until cancelled.
    /// The in-memory backend just waits for cancellation.
    func run() async throws

    /// A consistent snapshot of all rows (unordered).
    func rows() async throws -> [TableRow]

    /// The row with the given primary-key value, or nil (default: a scan of ``rows()``).
    func row(primaryKey: LocalJSON) async throws -> TableRow?

    /// Inserts a row and returns it as stored (with defaults filled in).
    func insert(_ row: TableRow) async throws -> TableRow

    /// Updates the row with the given primary-key value, returns the new row or nil if there is none.
    func update(primaryKey: LocalJSON, set values: TableRow) async throws -> TableRow?

    /// Deletes the row with the given primary-key value, returns the old row or nil if there is none.
    func delete(primaryKey: LocalJSON) async throws -> TableRow?

    /// A new subscription to committed changes, starting with the next commit. The stream ends when the
    /// backend shuts down; cancelling iteration unsubscribes.
    func changes() -> AsyncStream<TableChange>

    /// The backend's Broadcast from Database store, if it has one (``InMemoryJobsBackend`` returns itself).
    var broadcastBackend: (any BroadcastBackend)? { get }
}

extension JobsBackend {
    public func row(primaryKey: LocalJSON) async throws -> TableRow? {
        guard let key = self.table.primaryKey.first?.name else { return nil }
        return try await self.rows().first { $0[key] == primaryKey }
    }

    /// The backend's `realtime.messages` (broadcast-from-database.md §B1–§B6), or nil when it has none (the
    /// default): then private joins are refused and no broadcasts stream.
    public var broadcastBackend: (any BroadcastBackend)? { nil }
}
