import Logging
import NIOConcurrencyHelpers
import PostgresNIO

// Broadcast from Database on PostgreSQL (broadcast-from-database.md §B1–§B5): the real `realtime` functions and
// row level security decide; this file only calls them. Rows reach `broadcasts()` through the slot poller, which
// decodes inserts into `realtime.messages` (Wal2JSONDecoder).

extension PostgresJobsBackend: BroadcastBackend {
    /// This backend when ``Configuration/broadcast`` is on, else nil.
    public var broadcastBackend: (any BroadcastBackend)? {
        self.configuration.broadcast ? self : nil
    }

    /// Installs the `realtime` schema (``PostgresRealtimeSchema``), applies the shipped migration and attaches its
    /// trigger function to the served table, in one transaction under the setup lock.
    func installBroadcast() async throws {
        let migration = try Self.statement(runningMigration: BroadcastMigration.sql)
        let table = PostgresJobsSQL(table: self.table)
        let trigger = PostgresJobsSQL.quoted(self.table.name + "_broadcast")
        // `public.jobs_broadcast()` names its topics after tg_table_name, so on a table of another name (tests serve
        // `jobs_<random>`) the topics are `<name>:<id>` and `<name>`.
        let attach = "create or replace trigger \(trigger) after insert or update or delete on \(table.qualifiedTable) "
            + "for each row execute function public.jobs_broadcast()"
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query(
                "select pg_advisory_xact_lock(hashtext(\(PostgresJobsSQL.setupLockKey)))", logger: self.logger)
            for statement in PostgresRealtimeSchema.statements + [migration, attach] {
                try await self.drain(PostgresQuery(unsafeSQL: statement), on: connection)
            }
        }
        self.logger.debug("broadcast from database installed", metadata: ["table": "\(table.qualifiedTable)"])
    }

    private static let outerTag = "$jobsync_migration$"
    private static let innerTag = "$jobsync_sql$"

    /// One statement that runs a migration's statements in order (the extended query protocol takes one statement,
    /// PL/pgSQL's `EXECUTE` a string of several), dollar-quoted with tags the text must not contain.
    static func statement(runningMigration sql: String) throws(SupabaseLocalError) -> String {
        guard !sql.contains(Self.outerTag), !sql.contains(Self.innerTag) else {
            throw SupabaseLocalError(
                .invalidConfiguration, "the broadcast migration must not contain \(Self.outerTag) or \(Self.innerTag)")
        }
        return "do \(Self.outerTag) begin execute \(Self.innerTag)\(sql)\(Self.innerTag); end \(Self.outerTag)"
    }

    // MARK: - BroadcastBackend

    /// Calls `realtime.send` in a transaction of its own (§B1.2) and returns the row it stored, or nil when the send
    /// failed (the function then only raises a warning and the message is lost).
    ///
    /// - Throws: ``SupabaseLocalError`` `backendFailure` when the database fails, `invalidConfiguration` when
    ///   broadcast is off.
    public func send(payload: LocalJSON, event: String, topic: String, isPrivate: Bool) async throws -> BroadcastRow? {
        try await self.readyForBroadcast()
        let text = payload.encoded()
        do {
            return try await self.client.withTransaction(logger: self.logger) { connection in
                try await self.drain(
                    "select realtime.send(\(text)::jsonb, \(event)::text, \(topic)::text, \(isPrivate)::boolean)",
                    on: connection)
                // The row this transaction inserted, if any. send inserts in a subtransaction, so the row's xmin is a
                // subtransaction's id: the visible row of the topic whose writer is still in progress is ours (other
                // transactions' uncommitted rows are invisible). xmin has 32 bits; xid8 adds the current epoch.
                let query = PostgresQuery(
                    unsafeSQL: Self.selectMessages + """
                         where m.topic = $1 and m.inserted_at = (pg_catalog.now() at time zone 'utc') \
                        and pg_catalog.pg_xact_status(((pg_catalog.pg_current_xact_id()::text::int8 >> 32 << 32) \
                        | m.xmin::text::int8)::text::xid8) = 'in progress'
                        """,
                    binds: Self.binds(topic))
                return try await Self.messages(try await connection.query(query, logger: self.logger)).first
            }
        } catch {
            throw Self.mapped(error, "realtime.send")
        }
    }

    /// §B2: inserts a probe row (`extension = 'broadcast'`, the topic, private) as the backend's own user, then, as
    /// `reader.role` with `request.jwt.claims`, `request.jwt.claim.sub`/`role` and `realtime.topic` set for the
    /// transaction, selects it under the `realtime.messages` policies; rolls everything back. A role that does not
    /// exist (or that the backend's user may not assume) reads nothing.
    ///
    /// - Throws: ``SupabaseLocalError`` `backendFailure` when the database fails, `invalidConfiguration` when
    ///   broadcast is off.
    public func canRead(topic: String, reader: BroadcastReader) async throws -> Bool {
        try await self.readyForBroadcast()
        let claims = LocalJSON.object(reader.claims).encoded()
        let subject = reader.claims["sub"]?.stringValue ?? ""
        let role = reader.role
        do {
            return try await self.client.withConnection { connection in
                try await self.drain("begin", on: connection)
                do {
                    let visible = try await self.probe(
                        on: connection, topic: topic, role: role, claims: claims, subject: subject)
                    try await self.drain("rollback", on: connection)
                    return visible
                } catch {
                    _ = try? await connection.query("rollback", logger: self.logger)
                    throw error
                }
            }
        } catch let error as PSQLError where ["22023", "42704", "42501"].contains(error.serverInfo?[.sqlState]) {
            // `role "…" does not exist` / `permission denied to set role`: nobody to read as.
            self.logger.debug("broadcast read check: role cannot be assumed", metadata: ["role": "\(role)"])
            return false
        } catch {
            throw Self.mapped(error, "broadcast read check")
        }
    }

    private func probe(
        on connection: PostgresConnection, topic: String, role: String, claims: String, subject: String
    ) async throws -> Bool {
        var probeID: String?
        let inserted = try await connection.query(
            """
            insert into realtime.messages (topic, extension, private) values (\(topic), 'broadcast', true) \
            returning id::text
            """, logger: self.logger)
        for try await id in inserted.decode(String.self) { probeID = id }
        guard let probeID else { throw SupabaseLocalError(.backendFailure, "the read probe was not inserted") }
        try await self.drain(
            """
            select pg_catalog.set_config('request.jwt.claims', \(claims), true), \
            pg_catalog.set_config('request.jwt.claim.sub', \(subject), true), \
            pg_catalog.set_config('request.jwt.claim.role', \(role), true), \
            pg_catalog.set_config('request.headers', '{}', true), \
            pg_catalog.set_config('realtime.topic', \(topic), true), \
            pg_catalog.set_config('role', \(role), true)
            """, on: connection)
        let visible = try await connection.query(
            "select count(*)::int8 from realtime.messages where id = \(probeID)::uuid and extension = 'broadcast'",
            logger: self.logger)
        var count: Int64 = 0
        for try await value in visible.decode(Int64.self) { count = value }
        return count > 0
    }

    /// §B5's query: `topic`, privacy and `extension = 'broadcast'`, `since` ≤ `inserted_at` < now + 1 min (both in
    /// UTC), `order by inserted_at desc limit clamp(limit, 1, 25)`, then reversed: the newest rows, oldest first
    /// (rows of one transaction share `inserted_at`, so their order is the server's, reversed, as in Realtime).
    ///
    /// - Throws: ``SupabaseLocalError`` `backendFailure` when the database fails, `invalidConfiguration` when
    ///   broadcast is off.
    public func replay(
        topic: String, isPrivate: Bool, sinceMilliseconds: Int64, limit: Int
    ) async throws -> [BroadcastRow] {
        try await self.readyForBroadcast()
        var binds = PostgresBindings()
        binds.append(topic)
        binds.append(isPrivate)
        binds.append(Double(sinceMilliseconds) / 1000)
        binds.append(Int64(min(max(limit, 1), 25)))
        let query = PostgresQuery(
            unsafeSQL: Self.selectMessages + """
                 where m.topic = $1 and m.private = $2 and m.extension = 'broadcast' \
                and m.inserted_at >= (pg_catalog.to_timestamp($3::float8) at time zone 'utc') \
                and m.inserted_at < ((pg_catalog.now() + interval '1 minute') at time zone 'utc') \
                order by m.inserted_at desc limit $4::int8
                """,
            binds: binds)
        do {
            return try await Self.messages(try await self.client.query(query, logger: self.logger)).reversed()
        } catch {
            throw Self.mapped(error, "replay")
        }
    }

    /// A new subscription to rows committed into `realtime.messages` from now on, in commit order, as the slot
    /// poller reads them. Ends when ``run()`` returns (at once if it already has).
    public func broadcasts() -> AsyncStream<BroadcastRow> {
        let (stream, continuation) = AsyncStream<BroadcastRow>.makeStream()
        let id = self.state.withLockedValue { state -> Int? in
            guard !state.finished else { return nil }
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.broadcastSubscribers[id] = continuation
            return id
        }
        guard let id else {
            continuation.finish()
            return stream
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLockedValue { _ = $0.broadcastSubscribers.removeValue(forKey: id) }
        }
        return stream
    }

    // MARK: - Helpers

    /// Runs a statement and reads its rows to the end: a statement's error surfaces only then.
    private func drain(_ query: PostgresQuery, on connection: PostgresConnection) async throws {
        for try await _ in try await connection.query(query, logger: self.logger) {}
    }

    private func readyForBroadcast() async throws {
        guard self.configuration.broadcast else {
            throw SupabaseLocalError(
                .invalidConfiguration, "broadcast is off in this PostgresJobsBackend's configuration")
        }
        try await self.ready.wait()
    }

    /// The columns ``messages(_:)`` decodes, from `realtime.messages m`.
    private static let selectMessages = """
        select m.id::text, m.topic, coalesce(m.event, ''), m.payload::text, \
        pg_catalog.encode(m.binary_payload, 'hex'), coalesce(m.private, false), m.inserted_at::text \
        from realtime.messages m
        """

    private static func messages(_ rows: PostgresRowSequence) async throws -> [BroadcastRow] {
        var result: [BroadcastRow] = []
        let decoded = rows.decode((String, String, String, String?, String?, Bool, String).self)
        for try await (id, topic, event, payload, hex, isPrivate, stamp) in decoded {
            guard let insertedAt = LocalTimestamp(parsing: stamp) else {
                throw SupabaseLocalError(.invalidTimestamp, "realtime.messages row with an invalid inserted_at")
            }
            var binary: [UInt8]?
            if let hex {
                guard let bytes = Wal2JSONDecoder.hexBytes(hex) else {
                    throw SupabaseLocalError(.backendFailure, "realtime.messages row with an invalid binary_payload")
                }
                binary = bytes
            }
            result.append(
                BroadcastRow(
                    id: id, topic: topic, event: event, payload: try payload.map { try LocalJSON(parsing: $0) },
                    binaryPayload: binary, isPrivate: isPrivate, insertedAt: insertedAt))
        }
        return result
    }
}
