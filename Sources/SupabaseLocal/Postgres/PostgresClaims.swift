import Foundation
import Logging
import PostgresNIO

/// The shipped fleet-claims migration, `supabase/migrations/20261202000000_jobsync_claims.sql` at the repository's
/// root: the one copy of its SQL, which users apply to their Supabase project and ``PostgresJobsBackend`` applies to
/// its database at every start.
enum ClaimsMigration {
    /// The migration's path, found from this source file's (`Sources/SupabaseLocal/Postgres/` → the root). It exists
    /// wherever the package is built from source (tests, `swift run`, a dependency's checkout), not next to a binary
    /// copied elsewhere.
    static let path: String = {
        var root = URL(fileURLWithPath: #filePath)
        for _ in 0..<4 { root.deleteLastPathComponent() }
        return root.appendingPathComponent("supabase/migrations/20261202000000_jobsync_claims.sql").path
    }()

    /// The migration's text, or nil when the file is not there.
    static func text() -> String? {
        try? String(contentsOfFile: Self.path, encoding: .utf8)
    }

    private static let outerTag = "$jobsync_migration$"
    private static let innerTag = "$jobsync_sql$"

    /// One statement that runs the migration's statements in order: the extended query protocol (PostgresNIO's only
    /// one) takes a single statement, and PL/pgSQL's `EXECUTE` takes a string of several. The text goes in verbatim,
    /// dollar-quoted with tags it must not contain.
    static func statement(running sql: String) throws(SupabaseLocalError) -> String {
        guard !sql.contains(Self.outerTag), !sql.contains(Self.innerTag) else {
            throw SupabaseLocalError(
                .invalidConfiguration, "the claims migration must not contain \(Self.outerTag) or \(Self.innerTag)")
        }
        return "do \(Self.outerTag) begin execute \(Self.innerTag)\(sql)\(Self.innerTag); end \(Self.outerTag)"
    }
}

extension PostgresJobsBackend: ClaimsStore {
    /// Applies the shipped claims migration (idempotent), serialized with other backends' setup by the same advisory
    /// lock. Without the file (a binary run away from its source tree) nothing is applied and the RPC works only if
    /// the database already has the functions, as PostgREST would (`404 PGRST202` otherwise).
    func applyClaimsMigration() async throws {
        guard let sql = ClaimsMigration.text() else {
            self.logger.debug("claims migration not found; not applied", metadata: ["path": "\(ClaimsMigration.path)"])
            return
        }
        let statement = try ClaimsMigration.statement(running: sql)
        try await self.client.withTransaction(logger: self.logger) { connection in
            try await connection.query(
                "select pg_advisory_xact_lock(hashtext(\(PostgresJobsSQL.setupLockKey)))", logger: self.logger)
            try await connection.query(PostgresQuery(unsafeSQL: statement), logger: self.logger)
        }
    }

    func claim(consumer: String?, jobID: String?, holder: String?, leaseSeconds: Int32?) async throws -> ClaimState {
        let query: PostgresQuery = """
            select public.jobsync_claim(\(consumer)::text, \(jobID)::uuid, \(holder)::text, \(leaseSeconds)::int4)::text
            """
        let text = try await self.callFunction(query, as: String.self)
        guard let state = try? LocalJSON(parsing: text), let claim = ClaimState(json: state) else {
            throw SupabaseLocalError(.backendFailure, "jobsync_claim answered an unexpected value")
        }
        return claim
    }

    func acknowledge(consumer: String?, jobID: String?, holder: String?) async throws -> Bool {
        try await self.callFunction(
            "select public.jobsync_ack(\(consumer)::text, \(jobID)::uuid, \(holder)::text)", as: Bool.self)
    }

    /// Runs a one-value query once the backend is ready; an error PostgreSQL raised becomes a
    /// ``DatabaseFunctionError`` (SQLSTATE and primary message only: the detail line can quote values), anything
    /// else a ``SupabaseLocalError``.
    private func callFunction<Value: PostgresDecodable & Sendable>(
        _ query: PostgresQuery, as type: Value.Type
    ) async throws -> Value {
        try await self.ready.wait()
        do {
            for try await value in try await self.client.query(query, logger: self.logger).decode(Value.self) {
                return value
            }
        } catch let error as PSQLError where error.code == .server {
            if let state = error.serverInfo?[.sqlState], let message = error.serverInfo?[.message] {
                throw DatabaseFunctionError(sqlState: state, message: message)
            }
            throw Self.mapped(error, "claims function")
        } catch {
            throw Self.mapped(error, "claims function")
        }
        throw SupabaseLocalError(.backendFailure, "claims function returned no row")
    }
}
