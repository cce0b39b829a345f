import Foundation
import GRDB
import JobSyncCore
import NIOConcurrencyHelpers
import Testing

@testable import JobSync

/// The SQLite cache across restarts: tombstones, migrations, corruption, permissions, sharing.
@Suite("SQLite persistence across restarts")
struct PersistenceTests {
    /// A fresh file path in a private temporary directory, removed after `body`.
    private static func withFile<T>(_ body: (String) throws -> T) throws -> T {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "jobsync-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: directory) }
        return try body(directory.appendingPathComponent("jobs.sqlite").path)
    }

    private static func withFileAsync(_ body: (String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "jobsync-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(
            at: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory.appendingPathComponent("jobs.sqlite").path)
    }

    private static func store(_ path: String) throws -> JobStore {
        try JobStore(configuration: .init(persistence: try SQLiteJobPersistence(path: path)))
    }

    @Test("round trip: states, final results and the watermark survive a restart")
    func roundTrip() throws {
        try Self.withFile { path in
            let result: JSONValue = .object([
                "classification": .string("invoice"), "confidence": .number(JSONNumber(text: "0.97")),
            ])
            do {
                let store = try Self.store(path)
                store.merge(observe(row(idA, status: "completed", updatedAt: ts(7), result: result)))
                store.merge(observe(row(idB, status: "processing", updatedAt: ts(3))))
                #expect(store.persistenceFailures == 0)
            }
            let reopened = try Self.store(path)
            #expect(reopened.job(idA)?.status == .completed)
            #expect(reopened.job(idA)?.result?.view?.classification == "invoice")
            #expect(reopened.job(idB)?.status == .processing)
            #expect(reopened.watermark == JobTimestamp(ts(7)))
            // The restored version still refuses regressions.
            #expect(reopened.merge(observe(row(idA, status: "processing", updatedAt: ts(6)))) == .ignored(.stale))
        }
    }

    @Test("a finished job that left memory is answered from the file and seeds a new subscription without a request")
    func retiredAnsweredFromDisk() async throws {
        try await Self.withFileAsync { path in
            let store = try JobStore(
                configuration: .init(
                    retention: .init(period: .seconds(600), maximumFinishedJobs: 1),
                    persistence: try SQLiteJobPersistence(path: path)))
            store.merge(observe(row(idA, status: "completed", updatedAt: ts(5))))
            store.merge(observe(row(idB, status: "failed", updatedAt: ts(6))))
            #expect(store.jobsInMemory == (total: 1, finished: 1))
            #expect(store.job(idA)?.status == .completed)  // from the file
            #expect(store.isFinished(idA))
            var updates = store.updates(for: idA).makeAsyncIterator()
            #expect(statusOf(try await updates.next()) == .completed)
            #expect(try await updates.next() == nil)
            #expect(store.jobsInMemory.total == 1)  // answering from the file does not bring it back into memory
        }
    }

    @Test("a restart holds the unfinished jobs and at most the retention count of finished ones in memory")
    func restartIsBounded() throws {
        try Self.withFile { path in
            let retention = JobStore.Retention(period: .seconds(600), maximumFinishedJobs: 10)
            var ids: [JobID] = []
            do {
                let store = try JobStore(configuration: .init(persistence: try SQLiteJobPersistence(path: path)))
                for n in 0..<100 {
                    let id = try JobID(UUID().uuidString.lowercased())
                    ids.append(id)
                    store.merge(observe(row(id, status: n < 5 ? "processing" : "completed", updatedAt: ts(5))))
                }
            }
            let reopened = try JobStore(
                configuration: .init(retention: retention, persistence: try SQLiteJobPersistence(path: path)))
            #expect(reopened.jobsInMemory == (total: 15, finished: 10))
            #expect(ids.allSatisfy { reopened.job($0) != nil })  // the others from the file
        }
    }

    @Test("a deleted job stays deleted after a restart whatever a stale read says; a newer re-insert comes back")
    func tombstonesSurviveRestart() throws {
        try Self.withFile { path in
            do {
                let store = try Self.store(path)
                store.merge(observe(row(idC, status: "processing", updatedAt: ts(2))))
                store.merge(JobObservation(jobID: idC, kind: .deleted, source: .realtime))
            }
            let reopened = try Self.store(path)
            #expect(reopened.isDeleted(idC))
            #expect(reopened.job(idC) == nil)
            // A REST read that started before the deletion answers with the old row: still deleted.
            #expect(reopened.merge(observe(row(idC, status: "processing", updatedAt: ts(2)), source: .poll))
                == .ignored(.stale))
            #expect(reopened.isDeleted(idC))
            // A strictly newer row is a re-insert.
            #expect(reopened.merge(observe(row(idC, status: "queued", updatedAt: ts(9)))) != .ignored(.stale))
            #expect(!reopened.isDeleted(idC))
        }
    }

    @Test("a future-dated row does not push the saved watermark ahead, so later changes stay visible after a restart")
    func futureRowDoesNotHideLaterChanges() throws {
        try Self.withFile { path in
            let now = Date(timeIntervalSince1970: 1_755_771_400)  // 2025-08-21T10:16:40Z
            let configuration = { (persistence: SQLiteJobPersistence) in
                JobStore.Configuration(persistence: persistence, now: { now })
            }
            do {
                let store = try JobStore(configuration: configuration(try SQLiteJobPersistence(path: path)))
                store.merge(observe(row(idA, status: "queued", updatedAt: "2025-08-21T10:15:00.000000Z")))
                store.merge(observe(row(idB, status: "queued", updatedAt: "2031-01-01T00:00:00.000000Z")))
                #expect(store.job(idB) != nil)  // merged all the same
                #expect(store.watermark == JobTimestamp("2025-08-21T10:15:00.000000Z"))
                store.merge(observe(row(idC, status: "queued", updatedAt: "2025-08-21T10:16:30.000000Z")))
            }
            let reopened = try JobStore(configuration: configuration(try SQLiteJobPersistence(path: path)))
            #expect(reopened.watermark == JobTimestamp("2025-08-21T10:16:30.000000Z"))
        }
    }

    @Test("an older write never overwrites a newer one")
    func sequenceGuard() throws {
        let persistence = try SQLiteJobPersistence(path: ":memory:")
        let newer = try Job(row: row(idA, status: "completed", updatedAt: ts(2)))
        let older = try Job(row: row(idA, status: "processing", updatedAt: ts(1)))
        try persistence.write([.job(newer, complete: true, sequence: 2)])
        try persistence.write([.job(older, complete: true, sequence: 1), .tombstone(idA, version: nil, sequence: 1)])
        let loaded = try persistence.load()
        #expect(loaded.jobs.map(\.0) == [newer])
        #expect(loaded.tombstones.isEmpty)
        #expect(loaded.sequence == 2)
    }

    @Test("a file of the previous schema (stage 1, user_version 0) opens, migrated, with its rows and deletions")
    func migratesVersionOne() throws {
        try Self.withFile { path in
            // Exactly what stage 1 wrote: its two tables, user_version left at 0, a deletion without a version.
            let old = try DatabaseQueue(path: path)
            try old.write { db in
                try db.execute(
                    sql: """
                        CREATE TABLE jobsync_jobs (id TEXT PRIMARY KEY NOT NULL, seq INTEGER NOT NULL,
                            deleted INTEGER NOT NULL DEFAULT 0, complete INTEGER NOT NULL DEFAULT 1,
                            commit_us INTEGER, row TEXT);
                        CREATE TABLE jobsync_meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
                        INSERT INTO jobsync_jobs VALUES (?, 1, 0, 1, NULL, ?);
                        INSERT INTO jobsync_jobs VALUES (?, 2, 1, 1, NULL, NULL);
                        INSERT INTO jobsync_meta VALUES ('watermark', '1755771300000000');
                        """,
                    arguments: [
                        idA.rawValue, JSONValue.object(row(idA, status: "completed", updatedAt: ts(4))).serialized(),
                        idB.rawValue,
                    ])
            }
            try old.close()
            let persistence = try SQLiteJobPersistence(path: path)
            let loaded = try persistence.load()
            #expect(loaded.jobs.map(\.0.status) == [.completed])
            #expect(loaded.tombstones.map(\.0) == [idB])
            #expect(loaded.watermark == JobTimestamp(microsecondsSinceEpoch: 1_755_771_300_000_000))
            #expect(loaded.sequence == 2)
            let version = try DatabaseQueue(path: path).read { db in try Int.fetchOne(db, sql: "PRAGMA user_version") }
            #expect(version == SQLiteJobPersistence.schemaVersion)
        }
    }

    @Test("a file written by a newer schema is refused with a typed error and left untouched")
    func refusesNewerSchema() throws {
        try Self.withFile { path in
            try DatabaseQueue(path: path).write { db in try db.execute(sql: "PRAGMA user_version = 99") }
            let before = try Data(contentsOf: URL(fileURLWithPath: path))
            #expect(throws: JobSyncError.self) { try SQLiteJobPersistence(path: path) }
            #expect(try Data(contentsOf: URL(fileURLWithPath: path)) == before)
        }
    }

    @Test("a corrupt file is moved aside, reported, and rebuilt; the store works on the new file")
    func corruptFileRebuilt() throws {
        try Self.withFile { path in
            let garbage = Data((0..<8192).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ 7) })
            try garbage.write(to: URL(fileURLWithPath: path))
            let persistence = try SQLiteJobPersistence(path: path)
            let aside = try #require(persistence.recoveredCorruptFile)
            #expect(try Data(contentsOf: URL(fileURLWithPath: aside)) == garbage)  // kept for inspection
            let store = try JobStore(configuration: .init(persistence: persistence))
            store.merge(observe(row(idA, status: "queued", updatedAt: ts(1))))
            #expect(store.persistenceFailures == 0)
            #expect(try Self.store(path).job(idA)?.status == .queued)
        }
    }

    @Test("a new cache file is created with mode 0600")
    func privateFile() throws {
        try Self.withFile { path in
            _ = try SQLiteJobPersistence(path: path)
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        }
    }

    @Test("group commit: what is merged while a batch is written goes into the next transaction, written in the background")
    func groupCommit() throws {
        try Self.withFile { path in
            let gated = GatedPersistence(try SQLiteJobPersistence(path: path), gatedWrites: 2)
            let store = try JobStore(configuration: .init(persistence: gated))
            let ids = (0..<100).map { try! JobID(String(format: "00000000-0000-4000-8000-%012d", $0)) }
            // The first merge becomes the writer and blocks inside its write …
            let writer = Thread { store.merge(observe(row(ids[0], status: "queued", updatedAt: ts(1)))) }
            writer.start()
            gated.writeStarted.wait()
            // … so these 99 merges (and the final states) return at once, queued for the next transaction.
            for id in ids.dropFirst() { store.merge(observe(row(id, status: "queued", updatedAt: ts(1)))) }
            for id in ids { store.merge(observe(row(id, status: "completed", updatedAt: ts(2)))) }
            #expect(gated.batches == 1)
            gated.release.signal()
            // The second transaction starts in the background and blocks; the first writer has returned meanwhile:
            // no merge caller is held for more than its own transaction.
            gated.writeStarted.wait()
            while !writer.isFinished { Thread.sleep(forTimeInterval: 0.001) }
            #expect(gated.batches == 2)
            gated.release.signal()
            store.flush()
            #expect(gated.batches == 2)  // 100 + 99 + 100 changes and two watermarks: two transactions
            #expect(store.persistenceFailures == 0)
            let reopened = try Self.store(path)
            #expect(ids.allSatisfy { reopened.job($0)?.status == .completed })
        }
    }

    @Test("flush writes everything merged by concurrent callers, some of it by the background writer")
    func flushAndBackPressure() throws {
        try Self.withFile { path in
            let store = try JobStore(configuration: .init(persistence: try SQLiteJobPersistence(path: path)))
            let ids = (0..<2_000).map { try! JobID(String(format: "00000000-0000-4000-8000-%012d", $0)) }
            DispatchQueue.concurrentPerform(iterations: 4) { part in
                for id in ids[(part * 500)..<(part * 500 + 500)] {
                    store.merge(observe(row(id, status: "completed", updatedAt: ts(3))))
                }
            }
            store.flush()
            let reopened = try Self.store(path)
            #expect(ids.allSatisfy { reopened.job($0)?.status == .completed })
        }
    }
}

/// Blocks each of the first `gatedWrites` writes until released; counts the batches.
final class GatedPersistence: JobStorePersistence {
    private let base: any JobStorePersistence
    private let count = NIOLockedValueBox(0)
    private let gatedWrites: Int
    let writeStarted = DispatchSemaphore(value: 0)
    let release = DispatchSemaphore(value: 0)

    init(_ base: any JobStorePersistence, gatedWrites: Int = 1) {
        self.base = base
        self.gatedWrites = gatedWrites
    }

    var batches: Int { self.count.withLockedValue { $0 } }

    func load() throws(JobSyncError) -> PersistedJobs { try self.base.load() }

    func job(_ id: JobID) throws(JobSyncError) -> Job? { try self.base.job(id) }

    func write(_ changes: [PersistedChange]) throws(JobSyncError) {
        let gated = self.count.withLockedValue { count in
            count += 1
            return count <= self.gatedWrites
        }
        if gated {
            self.writeStarted.signal()
            self.release.wait()
        }
        try self.base.write(changes)
    }
}
