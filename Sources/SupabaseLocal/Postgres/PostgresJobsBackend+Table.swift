import PostgresNIO

// Table operations of PostgresJobsBackend (the JobsBackend CRUD): each waits until run() has set the database up,
// and fails once it has ended.

extension PostgresJobsBackend {
    /// All rows, as `to_jsonb` shapes them (PostgREST's JSON).
    public func rows() async throws -> [TableRow] {
        try await self.ready.wait()
        return try await self.collect(PostgresQuery(unsafeSQL: self.sql.selectAll), "select")
    }

    /// Inserts a row; absent columns get their defaults (`id`, `status`, `created_at`, `updated_at`).
    public func insert(_ row: TableRow) async throws -> TableRow {
        try self.validate(row)
        try await self.ready.wait()
        let columns = row.keys.sorted()
        let query = PostgresQuery(unsafeSQL: self.sql.insert(columns: columns), binds: Self.binds(row))
        guard let stored = try await self.collect(query, "insert").first else {
            throw SupabaseLocalError(.backendFailure, "insert returned no row")
        }
        return stored
    }

    /// Updates the given columns of the row with this key; the trigger bumps `updated_at`.
    public func update(primaryKey: LocalJSON, set values: TableRow) async throws -> TableRow? {
        try self.validate(values)
        try await self.ready.wait()
        let keyColumn = self.table.primaryKey[0].name
        let columns = values.keys.filter { $0 != keyColumn }.sorted()
        var binds = PostgresBindings()
        binds.append(LocalJSON.object(values).encoded())
        binds.append(LocalJSON.object([keyColumn: primaryKey]).encoded())
        let query = PostgresQuery(unsafeSQL: self.sql.update(columns: columns), binds: binds)
        return try await self.collectByKey(query, "update")
    }

    /// Deletes the row with this key and returns it.
    public func delete(primaryKey: LocalJSON) async throws -> TableRow? {
        try await self.ready.wait()
        let keyColumn = self.table.primaryKey[0].name
        let query = PostgresQuery(
            unsafeSQL: self.sql.delete, binds: Self.binds(LocalJSON.object([keyColumn: primaryKey]).encoded())
        )
        return try await self.collectByKey(query, "delete")
    }

    /// Runs SQL text on the backend's database as any other database client would (for tests and demos that act
    /// as an outside writer). Changes it makes to the table reach ``changes()`` through the slot like any other.
    ///
    /// - Important: The text is executed as given; never pass untrusted input.
    public func execute(sql: String) async throws {
        try await self.ready.wait()
        do {
            try await self.client.query(PostgresQuery(unsafeSQL: sql), logger: self.logger)
        } catch {
            throw Self.mapped(error, "SQL")
        }
    }

    // MARK: - Helpers

    private func validate(_ row: TableRow) throws {
        for key in row.keys where self.table.column(named: key) == nil {
            throw SupabaseLocalError(.invalidRow, "unknown column \(key)")
        }
    }

    /// Runs a statement returning `to_jsonb` rows; a key that does not parse for its type means "no such row".
    private func collectByKey(_ query: PostgresQuery, _ what: String) async throws -> TableRow? {
        do {
            return try await self.collect(query, what).first
        } catch let error as SupabaseLocalError where error.code == .invalidRow && error.message.contains("22P02") {
            return nil
        }
    }

    private func collect(_ query: PostgresQuery, _ what: String) async throws -> [TableRow] {
        do {
            var result: [TableRow] = []
            let rows = try await self.client.query(query, logger: self.logger)
            for try await text in rows.decode(String.self) {
                guard let object = try LocalJSON(parsing: text).objectValue else {
                    throw SupabaseLocalError(.backendFailure, "\(what) returned a non-object row")
                }
                result.append(object)
            }
            return result
        } catch {
            throw Self.mapped(error, what)
        }
    }
}
