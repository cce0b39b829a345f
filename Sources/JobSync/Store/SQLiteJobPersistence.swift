import GRDB
import SupabaseREST

/// ``JobStorePersistence`` in a SQLite file (GRDB): job states, final results and the watermark survive a
/// restart, so a finished job is answered from the file without a request.
///
/// Deletions are kept as tombstone rows so that an older write arriving late cannot resurrect a deleted job.
public final class SQLiteJobPersistence: JobStorePersistence {
    private let queue: DatabaseQueue

    /// Opens (or creates) the database file.
    ///
    /// - Parameter path: the SQLite file path, or `":memory:"` for a private in-memory database.
    /// - Throws: ``JobSyncError/Code/persistence`` when the file cannot be opened or migrated.
    public init(path: String) throws(JobSyncError) {
        do {
            self.queue = path == ":memory:" ? try DatabaseQueue() : try DatabaseQueue(path: path)
            try self.queue.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE IF NOT EXISTS jobsync_jobs (
                            id TEXT PRIMARY KEY NOT NULL,
                            seq INTEGER NOT NULL,
                            deleted INTEGER NOT NULL DEFAULT 0,
                            complete INTEGER NOT NULL DEFAULT 1,
                            commit_us INTEGER,
                            row TEXT
                        );
                        CREATE TABLE IF NOT EXISTS jobsync_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                        """)
            }
        } catch {
            throw JobSyncError(code: .persistence, message: "cannot open the job database: \(Self.describe(error))")
        }
    }

    public func load() throws(JobSyncError) -> PersistedJobs {
        do {
            return try self.queue.read { db in
                var snapshot = PersistedJobs()
                for row in try Row.fetchAll(db, sql: "SELECT * FROM jobsync_jobs") {
                    let seq: Int64 = row["seq"]
                    snapshot.sequence = max(snapshot.sequence, seq)
                    let deleted: Bool = row["deleted"]
                    guard !deleted, let text: String = row["row"], let columns = JSON.parse(text)?.objectValue,
                        let job = try? Job(
                            row: columns,
                            commitTimestamp: (row["commit_us"] as Int64?).map(
                                JobTimestamp.init(microsecondsSinceEpoch:)))
                    else { continue }  // a corrupt row is skipped, never a crash
                    snapshot.jobs.append((job, complete: row["complete"] as Bool))
                }
                if let text = try String.fetchOne(db, sql: "SELECT value FROM jobsync_meta WHERE key = 'watermark'"),
                    let micros = Int64(text)
                {
                    snapshot.watermark = JobTimestamp(microsecondsSinceEpoch: micros)
                }
                return snapshot
            }
        } catch {
            throw JobSyncError(code: .persistence, message: "cannot read the job database: \(Self.describe(error))")
        }
    }

    public func save(_ job: Job, complete: Bool, sequence: Int64) throws(JobSyncError) {
        try self.write(
            sql: """
                INSERT INTO jobsync_jobs (id, seq, deleted, complete, commit_us, row) VALUES (?, ?, 0, ?, ?, ?)
                ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, deleted = 0, complete = excluded.complete,
                    commit_us = excluded.commit_us, row = excluded.row
                WHERE excluded.seq > jobsync_jobs.seq
                """,
            arguments: [
                job.id.rawValue, sequence, complete, job.commitTimestamp?.microsecondsSinceEpoch,
                JSON.object(job.columns).serialized,
            ])
    }

    public func delete(_ id: JobID, sequence: Int64) throws(JobSyncError) {
        try self.write(
            sql: """
                INSERT INTO jobsync_jobs (id, seq, deleted, complete, commit_us, row) VALUES (?, ?, 1, 1, NULL, NULL)
                ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, deleted = 1, row = NULL
                WHERE excluded.seq > jobsync_jobs.seq
                """,
            arguments: [id.rawValue, sequence])
    }

    public func saveWatermark(_ watermark: JobTimestamp) throws(JobSyncError) {
        try self.write(
            sql: """
                INSERT INTO jobsync_meta (key, value) VALUES ('watermark', ?)
                ON CONFLICT(key) DO UPDATE SET value = excluded.value
                WHERE CAST(excluded.value AS INTEGER) > CAST(jobsync_meta.value AS INTEGER)
                """,
            arguments: [String(watermark.microsecondsSinceEpoch)])
    }

    private func write(sql: String, arguments: StatementArguments) throws(JobSyncError) {
        do {
            try self.queue.write { db in try db.execute(sql: sql, arguments: arguments) }
        } catch {
            throw JobSyncError(code: .persistence, message: "cannot write the job database: \(Self.describe(error))")
        }
    }

    private static func describe(_ error: any Error) -> String {
        if let error = error as? DatabaseError {
            return "SQLite error \(error.resultCode.rawValue)"
        }
        return "\(type(of: error))"
    }
}
