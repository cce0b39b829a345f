import Foundation
import GRDB
public import Logging
import JobSyncCore

/// ``JobStorePersistence`` in a SQLite file (GRDB): job states, final results, tombstones, the watermark and
/// durable consumers' state (``OutcomeConsumer``) survive
/// a restart, so a finished job is answered from the file without a request and a deleted job stays deleted.
///
/// - **Crash-safe**: write-ahead log (`journal_mode=WAL`, `synchronous=NORMAL`): a crash never corrupts the file
///   and loses at most the batches written since the last checkpoint, which the next reconciliation reads again.
///   Each batch is one transaction (group commit; see ``JobStorePersistence``).
/// - **Shared**: several processes may open one file; a writer waits for another's lock up to
///   ``Configuration/busyTimeout`` instead of failing.
/// - **Versioned**: the schema version is `PRAGMA user_version` (now 3); older files are migrated when opened, and a
///   file written by a newer JobSync is refused with ``JobSyncError/Code/persistence``, never altered.
/// - **Never silently abandoned**: a file that is not a readable database is moved aside to
///   `<path>.corrupt-<unix time>`, reported at warning level and in ``recoveredCorruptFile``, and rebuilt empty.
/// - **Private**: a new file is created with mode 0600.
/// - **Bounded**: at most ``Configuration/tombstoneLimit`` tombstones are kept (the newest).
public final class SQLiteJobPersistence: JobStorePersistence {
    /// Settings.
    public struct Configuration: Sendable {
        /// How long a write waits for another process's lock (default 10 s).
        public var busyTimeout: Duration
        /// How many tombstones (deleted job ids) to keep, newest first (default 10,000, as the store).
        public var tombstoneLimit: Int
        /// Where a recovered corrupt file is reported (warning level).
        public var logger: Logger

        /// Creates settings with the defaults documented on each property.
        public init(
            busyTimeout: Duration = .seconds(10), tombstoneLimit: Int = 10_000,
            logger: Logger = Logger(label: "JobSync.persistence", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.busyTimeout = busyTimeout
            self.tombstoneLimit = tombstoneLimit
            self.logger = logger
        }
    }

    /// The schema version this build writes (`PRAGMA user_version`).
    public static let schemaVersion = 3

    let queue: DatabaseQueue
    private let configuration: Configuration
    /// Where a corrupt file found at open was moved, if one was.
    public let recoveredCorruptFile: String?

    /// Opens (or creates) the database file, migrating an older schema.
    ///
    /// - Parameters:
    ///   - path: the SQLite file path, or `":memory:"` for a private in-memory database.
    ///   - configuration: settings.
    /// - Throws: ``JobSyncError/Code/persistence`` when the file cannot be created, opened or migrated, or was
    ///   written by a newer schema.
    public init(path: String, configuration: Configuration = .init()) throws(JobSyncError) {
        self.configuration = configuration
        if path == ":memory:" {
            do {
                self.queue = try DatabaseQueue()
                try self.queue.write { db in try Self.migrate(db) }
            } catch {
                throw Self.error("cannot open the job database", error)
            }
            self.recoveredCorruptFile = nil
            return
        }
        try Self.createPrivately(path)
        do {
            self.queue = try Self.open(path, configuration)
            self.recoveredCorruptFile = nil
        } catch let error as DatabaseError where Self.isCorrupt(error) {
            let aside = "\(path).corrupt-\(Int(Date().timeIntervalSince1970))"
            do {
                try FileManager.default.moveItem(atPath: path, toPath: aside)
                for suffix in ["-wal", "-shm"] { try? FileManager.default.removeItem(atPath: path + suffix) }
                try Self.createPrivately(path)
                self.queue = try Self.open(path, configuration)
            } catch {
                throw Self.error("cannot rebuild the corrupt job database", error)
            }
            configuration.logger.warning(
                "the job database was not readable; moved aside and rebuilt",
                metadata: ["jobsync.file": "\(path)", "jobsync.moved_to": "\(aside)", "jobsync.error": "\(error)"])
            self.recoveredCorruptFile = aside
        } catch let error as JobSyncError {
            throw error
        } catch {
            throw Self.error("cannot open the job database", error)
        }
    }

    private static func open(_ path: String, _ configuration: Configuration) throws -> DatabaseQueue {
        // The version is read first, read-only: a newer file is refused before anything (WAL mode included) touches it.
        var probe = GRDB.Configuration()
        probe.readonly = true
        try Self.checkVersion(
            try DatabaseQueue(path: path, configuration: probe).read { db in try Self.userVersion(db) })
        var options = GRDB.Configuration()
        options.journalMode = .wal
        let (seconds, attoseconds) = configuration.busyTimeout.components
        options.busyMode = .timeout(Double(seconds) + Double(attoseconds) / 1e18)
        options.prepareDatabase { db in try db.execute(sql: "PRAGMA synchronous = NORMAL") }
        let queue = try DatabaseQueue(path: path, configuration: options)
        try queue.write { db in
            try Self.migrate(db)
            try Self.pruneTombstones(db, keeping: configuration.tombstoneLimit)
        }
        return queue
    }

    /// Creates an empty file with mode 0600 when there is none (SQLite gives its -wal and -shm files the same mode).
    private static func createPrivately(_ path: String) throws(JobSyncError) {
        guard !FileManager.default.fileExists(atPath: path) else { return }
        guard FileManager.default.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600])
        else {
            throw JobSyncError(code: .persistence, message: "cannot create the job database file")
        }
    }

    private static func isCorrupt(_ error: DatabaseError) -> Bool {
        error.resultCode == .SQLITE_CORRUPT || error.resultCode == .SQLITE_NOTADB
    }

    /// Brings any older schema to ``schemaVersion``, one step at a time, in the open transaction.
    private static func migrate(_ db: Database) throws {
        let version = try Self.userVersion(db)
        try Self.checkVersion(version)
        if version < 1 {
            // Version 1 (stage 1, which left user_version at 0): states, deletion markers, the watermark.
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
        if version < 2 {
            // Version 2: a tombstone keeps the version a row must exceed to bring the job back.
            try db.execute(
                sql: """
                    ALTER TABLE jobsync_jobs ADD COLUMN tomb_updated_us INTEGER;
                    ALTER TABLE jobsync_jobs ADD COLUMN tomb_commit_us INTEGER;
                    ALTER TABLE jobsync_jobs ADD COLUMN tomb_rank INTEGER;
                    CREATE INDEX IF NOT EXISTS jobsync_jobs_tombstones ON jobsync_jobs (seq) WHERE deleted = 1;
                    """)
        }
        if version < 3 {
            // Version 3: durable consumers (OutcomeConsumer): watermarks, acknowledgements above them, dead letters.
            try db.execute(
                sql: """
                    CREATE TABLE IF NOT EXISTS jobsync_consumers (name TEXT PRIMARY KEY NOT NULL, watermark_us INTEGER);
                    CREATE TABLE IF NOT EXISTS jobsync_consumer_acks (
                        consumer TEXT NOT NULL, job_id TEXT NOT NULL, key_us INTEGER NOT NULL,
                        PRIMARY KEY (consumer, job_id)
                    ) WITHOUT ROWID;
                    CREATE INDEX IF NOT EXISTS jobsync_consumer_acks_key ON jobsync_consumer_acks (consumer, key_us);
                    CREATE TABLE IF NOT EXISTS jobsync_dead_letters (
                        consumer TEXT NOT NULL, job_id TEXT NOT NULL, kind TEXT NOT NULL, attempts INTEGER NOT NULL,
                        reason TEXT NOT NULL, at_us INTEGER NOT NULL, commit_us INTEGER, row TEXT,
                        PRIMARY KEY (consumer, job_id)
                    ) WITHOUT ROWID;
                    """)
        }
        try db.execute(sql: "PRAGMA user_version = \(Self.schemaVersion)")
    }

    private static func userVersion(_ db: Database) throws -> Int {
        try Int.fetchOne(db, sql: "PRAGMA user_version") ?? 0
    }

    private static func checkVersion(_ version: Int) throws(JobSyncError) {
        guard version <= Self.schemaVersion else {
            throw JobSyncError(
                code: .persistence,
                message: "the job database has schema \(version), newer than this build's \(Self.schemaVersion)")
        }
    }

    private static func pruneTombstones(_ db: Database, keeping limit: Int) throws {
        try db.execute(
            sql: """
                DELETE FROM jobsync_jobs WHERE deleted = 1 AND seq < (
                    SELECT seq FROM jobsync_jobs WHERE deleted = 1 ORDER BY seq DESC LIMIT 1 OFFSET ?)
                """,
            arguments: [max(0, limit - 1)])
    }

    public func load() throws(JobSyncError) -> PersistedJobs {
        do {
            return try self.queue.read { db in
                var snapshot = PersistedJobs()
                for row in try Row.fetchAll(db, sql: "SELECT * FROM jobsync_jobs ORDER BY seq") {
                    let seq: Int64 = row["seq"]
                    snapshot.sequence = max(snapshot.sequence, seq)
                    guard let id = try? JobID(row["id"] as String) else { continue }  // corrupt row: skipped
                    if row["deleted"] as Bool {
                        let version = (row["tomb_rank"] as Int?).map { rank in
                            JobVersion(
                                updatedAt: (row["tomb_updated_us"] as Int64?).map(Self.timestamp),
                                commitTimestamp: (row["tomb_commit_us"] as Int64?).map(Self.timestamp),
                                statusRank: rank)
                        }
                        snapshot.tombstones.append((id, version))
                        continue
                    }
                    guard let job = Self.job(in: row, id: id) else { continue }  // a corrupt row is skipped
                    snapshot.jobs.append((job, complete: row["complete"] as Bool))
                }
                if let text = try String.fetchOne(db, sql: "SELECT value FROM jobsync_meta WHERE key = 'watermark'"),
                    let micros = Int64(text)
                {
                    snapshot.watermark = Self.timestamp(micros)
                }
                return snapshot
            }
        } catch {
            throw Self.error("cannot read the job database", error)
        }
    }

    public func job(_ id: JobID) throws(JobSyncError) -> Job? {
        do {
            return try self.queue.read { db in
                try Row.fetchOne(
                    db, sql: "SELECT row, commit_us FROM jobsync_jobs WHERE id = ? AND deleted = 0",
                    arguments: [id.rawValue]
                ).flatMap { Self.job(in: $0, id: id) }
            }
        } catch {
            throw Self.error("cannot read the job database", error)
        }
    }

    /// The job a stored row holds; `nil` for a corrupt row (never a crash).
    static func job(in row: Row, id: JobID) -> Job? {
        guard let text: String = row["row"], let columns = (try? JSONValue.parse(text))?.objectValue,
            let job = try? Job(row: columns, commitTimestamp: (row["commit_us"] as Int64?).map(Self.timestamp)),
            job.id == id
        else { return nil }
        return job
    }

    public func write(_ changes: [PersistedChange]) throws(JobSyncError) {
        guard !changes.isEmpty else { return }
        do {
            try self.queue.write { db in
                // One watermark write per batch: the largest (the upsert keeps the larger anyway).
                var watermark: JobTimestamp?
                for change in changes {
                    if case .watermark(let value) = change {
                        watermark = max(watermark ?? value, value)
                    } else {
                        try Self.write(change, in: db)
                    }
                }
                if let watermark { try Self.write(.watermark(watermark), in: db) }
            }
        } catch {
            throw Self.error("cannot write the job database", error)
        }
    }

    private static func write(_ change: PersistedChange, in db: Database) throws {
        switch change {
        case .job(let job, let complete, let sequence):
            // Cached statements: compiled once per connection, not per change.
            try db.cachedStatement(
                sql: """
                    INSERT INTO jobsync_jobs (id, seq, deleted, complete, commit_us, row) VALUES (?, ?, 0, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, deleted = 0, complete = excluded.complete,
                        commit_us = excluded.commit_us, row = excluded.row,
                        tomb_updated_us = NULL, tomb_commit_us = NULL, tomb_rank = NULL
                    WHERE excluded.seq > jobsync_jobs.seq
                    """
            ).execute(
                arguments: [
                    job.id.rawValue, sequence, complete, job.commitTimestamp?.microsecondsSinceEpoch,
                    JSONValue.object(job.columns).serialized(),
                ])
        case .tombstone(let id, let version, let sequence):
            try db.cachedStatement(
                sql: """
                    INSERT INTO jobsync_jobs (id, seq, deleted, complete, commit_us, row, tomb_updated_us,
                        tomb_commit_us, tomb_rank)
                    VALUES (?, ?, 1, 1, NULL, NULL, ?, ?, ?)
                    ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, deleted = 1, row = NULL, commit_us = NULL,
                        tomb_updated_us = excluded.tomb_updated_us, tomb_commit_us = excluded.tomb_commit_us,
                        tomb_rank = excluded.tomb_rank
                    WHERE excluded.seq > jobsync_jobs.seq
                    """
            ).execute(
                arguments: [
                    id.rawValue, sequence, version?.updatedAt?.microsecondsSinceEpoch,
                    version?.commitTimestamp?.microsecondsSinceEpoch, version?.statusRank,
                ])
        case .watermark(let watermark):
            try db.cachedStatement(
                sql: """
                    INSERT INTO jobsync_meta (key, value) VALUES ('watermark', ?)
                    ON CONFLICT(key) DO UPDATE SET value = excluded.value
                    WHERE CAST(excluded.value AS INTEGER) > CAST(jobsync_meta.value AS INTEGER)
                    """
            ).execute(
                arguments: [String(watermark.microsecondsSinceEpoch)])
        }
    }

    static func timestamp(_ micros: Int64) -> JobTimestamp {
        JobTimestamp(microsecondsSinceEpoch: micros)
    }

    static func error(_ what: String, _ error: any Error) -> JobSyncError {
        if let error = error as? JobSyncError { return error }
        if let error = error as? DatabaseError {
            return JobSyncError(code: .persistence, message: "\(what): SQLite error \(error.resultCode.rawValue)")
        }
        return JobSyncError(code: .persistence, message: "\(what): \(type(of: error))")
    }
}
