import GRDB
import JobSyncCore

// Durable consumers' state (schema version 3): one watermark per consumer name, the acknowledgements at or above
// it, and the dead letters. Each batch of changes is one transaction (the consumer's group commit).
extension SQLiteJobPersistence {
    /// The consumer's state; a consumer never seen is created at `start` (so "now" stays the time of its first run).
    package func consumerState(_ name: String, start: JobTimestamp?) throws(JobSyncError) -> ConsumerState {
        do {
            return try self.queue.write { db in
                guard
                    let row = try Row.fetchOne(
                        db, sql: "SELECT watermark_us FROM jobsync_consumers WHERE name = ?", arguments: [name])
                else {
                    try db.execute(
                        sql: "INSERT INTO jobsync_consumers (name, watermark_us) VALUES (?, ?)",
                        arguments: [name, start?.microsecondsSinceEpoch])
                    return ConsumerState(watermark: start)
                }
                var state = ConsumerState(watermark: (row["watermark_us"] as Int64?).map(Self.timestamp))
                for ack in try Row.fetchAll(
                    db, sql: "SELECT job_id, key_us FROM jobsync_consumer_acks WHERE consumer = ?", arguments: [name])
                {
                    guard let id = try? JobID(ack["job_id"] as String) else { continue }  // a corrupt row is skipped
                    state.acknowledged[id] = Self.timestamp(ack["key_us"])
                }
                return state
            }
        } catch {
            throw Self.error("cannot read the consumer state", error)
        }
    }

    /// Writes one batch of the consumer's changes in one transaction.
    package func writeConsumer(_ name: String, _ changes: [ConsumerChange]) throws(JobSyncError) {
        guard !changes.isEmpty else { return }
        do {
            try self.queue.write { db in
                var watermark: JobTimestamp?
                for change in changes {
                    switch change {
                    case .acknowledged(let id, let key):
                        try Self.remember(id, key: key, consumer: name, db)
                    case .deadLettered(let letter, let key):
                        try Self.remember(letter.jobID, key: key, consumer: name, db)
                        try db.cachedStatement(
                            sql: """
                                INSERT OR REPLACE INTO jobsync_dead_letters
                                    (consumer, job_id, kind, attempts, reason, at_us, commit_us, row)
                                VALUES (?, ?, ?, ?, ?, ?, ?, ?)
                                """
                        ).execute(arguments: [
                            name, letter.jobID.rawValue, letter.kind.rawValue, letter.attempts, letter.reason,
                            letter.at.microsecondsSinceEpoch, letter.job?.commitTimestamp?.microsecondsSinceEpoch,
                            letter.job.map { JSONValue.object($0.columns).serialized() },
                        ])
                    case .watermark(let value):
                        watermark = max(watermark ?? value, value)
                    }
                }
                // One watermark write per batch: the largest, and the acknowledgements below it forgotten.
                guard let watermark else { return }
                try db.cachedStatement(
                    sql: """
                        UPDATE jobsync_consumers SET watermark_us = ?1
                        WHERE name = ?2 AND (watermark_us IS NULL OR watermark_us < ?1)
                        """
                ).execute(arguments: [watermark.microsecondsSinceEpoch, name])
                try db.cachedStatement(sql: "DELETE FROM jobsync_consumer_acks WHERE consumer = ? AND key_us < ?")
                    .execute(arguments: [name, watermark.microsecondsSinceEpoch])
            }
        } catch {
            throw Self.error("cannot write the consumer state", error)
        }
    }

    private static func remember(_ id: JobID, key: JobTimestamp, consumer: String, _ db: Database) throws {
        try db.cachedStatement(
            sql: "INSERT OR REPLACE INTO jobsync_consumer_acks (consumer, job_id, key_us) VALUES (?, ?, ?)"
        ).execute(arguments: [consumer, id.rawValue, key.microsecondsSinceEpoch])
    }

    /// The consumer's dead letters, oldest first.
    package func deadLetters(_ name: String) throws(JobSyncError) -> [DeadLetter] {
        do {
            return try self.queue.read { db in
                try Row.fetchAll(
                    db, sql: "SELECT * FROM jobsync_dead_letters WHERE consumer = ? ORDER BY at_us, job_id",
                    arguments: [name]
                ).compactMap { row -> DeadLetter? in
                    guard let id = try? JobID(row["job_id"] as String),
                        let kind = Outcome.Kind(rawValue: row["kind"])
                    else { return nil }  // a corrupt row is skipped
                    return DeadLetter(
                        jobID: id, kind: kind, attempts: row["attempts"], reason: row["reason"],
                        at: Self.timestamp(row["at_us"]), job: Self.job(in: row, id: id))
                }
            }
        } catch {
            throw Self.error("cannot read the dead letters", error)
        }
    }
}
