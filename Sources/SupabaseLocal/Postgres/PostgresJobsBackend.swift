public import Logging
import PostgresNIO
import NIOConcurrencyHelpers

/// A ``JobsBackend`` on a real PostgreSQL database, with changes read from a wal2json logical slot exactly as
/// Supabase Realtime reads them (realtime-protocol.md §5.3, §5.6).
///
/// ``run()`` owns everything: it runs the connection pool, creates the table (with a trigger that keeps
/// `updated_at` strictly increasing, and the configured replica identity), opens a dedicated connection with a
/// *temporary* wal2json slot (dropped by PostgreSQL when that session ends, also on a crash), and polls it every
/// ``Configuration/pollInterval`` (immediately again after a full batch). Table operations wait until that setup is
/// done, and fail once ``run()`` has ended.
///
/// ```swift
/// let backend = try PostgresJobsBackend(configuration: .init(url: "postgres://postgres@127.0.0.1:5432/postgres"))
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await backend.run() }
///     let row = try await backend.insert(["status": .string("queued")])
///     …
///     group.cancelAll()
/// }
/// ```
///
/// Requires PostgreSQL with `wal_level = logical`, a free replication slot, the `wal2json` plugin, and
/// `synchronous_commit = on` (logical decoding only sees flushed WAL); `scripts/pg-throwaway.sh` starts such a
/// cluster.
public final class PostgresJobsBackend: JobsBackend {
    /// How to reach the database and what to serve.
    public struct Configuration: Sendable {
        /// The database to use.
        public var url: PostgresConnectionURL
        /// The table to serve (created if missing); its ``TableDescriptor/replicaIdentity`` is applied with
        /// `ALTER TABLE … REPLICA IDENTITY`.
        public var table: TableDescriptor
        /// Drop and recreate the table at startup.
        public var dropExistingTable: Bool
        /// Pause between slot reads when the last batch was not full (Realtime: 100 ms).
        public var pollInterval: Duration
        /// `upto_nchanges` for each slot read (Realtime's `poll_max_changes`: 100).
        public var maxChangesPerPoll: Int
        /// The temporary slot's name; defaults to `jobsync_` plus random hex (unique per backend).
        public var slotName: String
        /// Serve Broadcast from Database (broadcast-from-database.md §B1–§B5): at startup install Supabase's
        /// `realtime` schema (roles, `realtime.messages`, `realtime.send`, …) and the shipped migration
        /// `supabase/migrations/20261202010000_jobs_broadcast.sql`, attach its trigger to the served table, and make
        /// the backend its own ``PostgresJobsBackend/broadcastBackend``. Default false.
        public var broadcast: Bool

        /// Creates a configuration.
        ///
        /// - Throws: ``SupabaseLocalError`` `invalidConfiguration` for a bad URL, poll size or slot name.
        public init(
            url: String,
            table: TableDescriptor = .jobs,
            dropExistingTable: Bool = false,
            pollInterval: Duration = .milliseconds(100),
            maxChangesPerPoll: Int = 100,
            slotName: String? = nil,
            broadcast: Bool = false
        ) throws {
            self.url = try PostgresConnectionURL(parsing: url)
            self.table = table
            self.dropExistingTable = dropExistingTable
            self.pollInterval = pollInterval
            self.maxChangesPerPoll = maxChangesPerPoll
            self.slotName = slotName ?? Self.randomSlotName()
            self.broadcast = broadcast
            guard maxChangesPerPoll > 0 else {
                throw SupabaseLocalError(.invalidConfiguration, "maxChangesPerPoll must be positive")
            }
            let validSlot = !self.slotName.isEmpty && self.slotName.utf8.count <= 63
                && self.slotName.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) || $0 == 95 }
            guard validSlot else {
                throw SupabaseLocalError(.invalidConfiguration, "slot names are 1-63 characters of a-z, 0-9 and _")
            }
            guard !table.primaryKey.isEmpty else {
                throw SupabaseLocalError(.invalidConfiguration, "the table needs a primary key")
            }
        }

        private static func randomSlotName() -> String {
            var generator = SystemRandomNumberGenerator()
            let suffix = String(generator.next() as UInt64, radix: 16)
            return "jobsync_" + String(repeating: "0", count: 16 - suffix.count) + suffix
        }
    }

    /// Counters for changes the poller did not deliver.
    public struct Statistics: Sendable, Equatable {
        /// wal2json rows for other tables of the database (expected; Realtime reads every table from one slot).
        public var otherTableRows: Int = 0
        /// wal2json rows that could not be decoded (never expected; each one is logged at debug level).
        public var malformedRows: Int = 0
        /// Changes decoded and fanned out.
        public var deliveredChanges: Int = 0
        /// `realtime.messages` rows decoded and fanned out to ``PostgresJobsBackend/broadcasts()`` streams.
        public var deliveredBroadcasts: Int = 0
        /// `realtime.messages` rows not streamed, as Realtime would not stream them (a NULL topic, event or
        /// `private`, or another extension; broadcast-from-database.md §B6).
        public var undeliverableBroadcasts: Int = 0
    }

    struct State {
        var subscribers: [Int: AsyncStream<TableChange>.Continuation] = [:]
        var broadcastSubscribers: [Int: AsyncStream<BroadcastRow>.Continuation] = [:]
        var nextSubscriber = 0
        var hasRun = false
        var finished = false
        var statistics = Statistics()
    }

    /// The table served.
    public var table: TableDescriptor { self.configuration.table }
    /// The configuration.
    public let configuration: Configuration
    let sql: PostgresJobsSQL
    let client: PostgresClient
    let logger: Logger
    let clock: any Clock<Duration>
    let ready = ReadinessGate()
    let state = NIOLockedValueBox(State())
    let decoder = NIOLockedValueBox(Wal2JSONDecoder(table: .jobs))

    /// Creates the backend; no I/O happens before ``run()``.
    ///
    /// - Parameters:
    ///   - configuration: Database, table and polling settings.
    ///   - clock: Paces the slot poller (tests may pass a faster clock).
    ///   - logger: Receives trace/debug messages (never the password).
    public init(
        configuration: Configuration,
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "SupabaseLocal.Postgres", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.configuration = configuration
        self.sql = PostgresJobsSQL(table: configuration.table)
        self.clock = clock
        self.logger = logger
        self.client = PostgresClient(
            configuration: Self.clientConfiguration(configuration.url), backgroundLogger: logger
        )
        self.decoder.withLockedValue { $0 = Wal2JSONDecoder(table: configuration.table) }
    }

    /// Session settings that make `to_jsonb` and wal2json print timestamps as Realtime and PostgREST see them.
    private static let sessionParameters = [
        ("TimeZone", "UTC"), ("DateStyle", "ISO, MDY"), ("application_name", "supabase-local"),
    ]

    private static func clientConfiguration(_ url: PostgresConnectionURL) -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        if let directory = url.unixSocketDirectory {
            configuration = .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(url.port)", username: url.username,
                password: url.password, database: url.database
            )
        } else {
            configuration = .init(
                host: url.host, port: url.port, username: url.username, password: url.password,
                database: url.database, tls: .disable
            )
        }
        configuration.options.additionalStartupParameters = Self.sessionParameters
        configuration.options.maximumConnections = 8
        return configuration
    }

    /// The slot poller's own session (a temporary slot lives as long as the session that created it).
    static func connectionConfiguration(_ url: PostgresConnectionURL) -> PostgresConnection.Configuration {
        var configuration: PostgresConnection.Configuration
        if let directory = url.unixSocketDirectory {
            configuration = .init(
                unixSocketPath: "\(directory)/.s.PGSQL.\(url.port)", username: url.username,
                password: url.password, database: url.database
            )
        } else {
            configuration = .init(
                host: url.host, port: url.port, username: url.username, password: url.password,
                database: url.database, tls: .disable
            )
        }
        configuration.options.additionalStartupParameters = Self.sessionParameters
        return configuration
    }

    /// Counters of the poller so far.
    public var statistics: Statistics { self.state.withLockedValue { $0.statistics } }

    // MARK: - Running

    /// Sets the database up, then polls the slot until cancelled. Returns normally on cancellation; throws
    /// ``SupabaseLocalError`` `backendFailure` when setup or polling fails. Every change stream ends when this
    /// returns. Call it once.
    public func run() async throws {
        let firstRun = self.state.withLockedValue { state -> Bool in
            defer { state.hasRun = true }
            return !state.hasRun
        }
        guard firstRun else {
            throw SupabaseLocalError(.invalidConfiguration, "PostgresJobsBackend.run() can only be called once")
        }
        defer { self.shutDown() }
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await self.client.run() }
                try await self.setUp()
                try await self.applyClaimsMigration()
                if self.configuration.broadcast {
                    try await self.installBroadcast()
                }
                try await self.pollSlot()
                group.cancelAll()
            }
        } catch {
            if Task.isCancelled { return }
            let failure = Self.mapped(error, "PostgreSQL backend")
            self.ready.fail(failure)
            throw failure
        }
    }

    private func shutDown() {
        self.ready.fail(SupabaseLocalError(.backendFailure, "the PostgreSQL backend is not running"))
        let (subscribers, broadcastSubscribers) = self.state.withLockedValue { state in
            state.finished = true
            let all = (Array(state.subscribers.values), Array(state.broadcastSubscribers.values))
            state.subscribers.removeAll()
            state.broadcastSubscribers.removeAll()
            return all
        }
        for continuation in subscribers { continuation.finish() }
        for continuation in broadcastSubscribers { continuation.finish() }
    }

    private func setUp() async throws {
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query(
                "select pg_advisory_xact_lock(hashtext(\(PostgresJobsSQL.setupLockKey)))", logger: self.logger
            )
            for statement in self.sql.setupStatements(dropExisting: self.configuration.dropExistingTable) {
                try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
            }
        }
        var typeNames: [Int: String] = [:]
        var present: Set<String> = []
        let rows = try await self.client.query(
            PostgresQuery(
                unsafeSQL: PostgresJobsSQL.catalogColumnsQuery, binds: Self.binds(self.sql.qualifiedTable)
            ),
            logger: self.logger
        )
        for try await (name, typeName, oid) in rows.decode((String, String, Int64).self) {
            typeNames[Int(oid)] = typeName
            present.insert(name)
        }
        let missing = self.table.columns.map(\.name).filter { !present.contains($0) }
        guard missing.isEmpty else {
            throw SupabaseLocalError(
                .invalidConfiguration,
                "table \(self.table.schema).\(self.table.name) exists without columns "
                    + missing.joined(separator: ", ")
            )
        }
        let table = self.table
        self.decoder.withLockedValue { $0 = Wal2JSONDecoder(table: table, typeNames: typeNames) }
        self.logger.debug(
            "PostgreSQL table ready",
            metadata: [
                "table": "\(table.schema).\(table.name)",
                "replica-identity": "\(table.replicaIdentity.rawValue)",
            ]
        )
    }

    // MARK: - Helpers

    static func binds(_ text: String) -> PostgresBindings {
        var binds = PostgresBindings()
        binds.append(text)
        return binds
    }

    static func binds(_ row: TableRow) -> PostgresBindings {
        Self.binds(LocalJSON.object(row).encoded())
    }

    /// A ``SupabaseLocalError`` for any failure; messages carry the SQLSTATE and PostgreSQL's primary message (which
    /// never contains connection credentials), never the detail line (which can quote row values).
    static func mapped(_ error: any Error, _ what: String) -> SupabaseLocalError {
        if let error = error as? SupabaseLocalError { return error }
        if let error = error as? PSQLError {
            guard error.code == .server, let info = error.serverInfo, let state = info[.sqlState] else {
                return SupabaseLocalError(.backendFailure, "\(what) failed: \(error.code)")
            }
            let message = "\(what) failed: \(state) \(info[.message] ?? "")"
            if state == "23505" { return SupabaseLocalError(.duplicateKey, message) }
            if state.hasPrefix("22") || state.hasPrefix("23") || state == "42703" {
                return SupabaseLocalError(.invalidRow, message)
            }
            return SupabaseLocalError(.backendFailure, message)
        }
        if error is PostgresDecodingError {
            return SupabaseLocalError(.backendFailure, "\(what) failed: unexpected column type")
        }
        return SupabaseLocalError(.backendFailure, "\(what) failed: \(type(of: error))")
    }
}
