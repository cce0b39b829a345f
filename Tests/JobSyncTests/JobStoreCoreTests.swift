import Foundation
import JobSyncCore
import Testing

@testable import JobSync

@Suite("JobStore merge rules (pure core)")
struct JobStoreCoreTests {
    @Test("versions advance in order; an older version is refused; the watermark is the max updated_at")
    func ordering() {
        var core = JobStoreCore()
        #expect(
            core.merge(observe(row(idA, status: "queued", updatedAt: ts(1))))
                == .inserted(
                    try! Job(row: row(idA, status: "queued", updatedAt: ts(1)))))
        guard case .updated(let job, _) = core.merge(observe(row(idA, status: "processing", updatedAt: ts(2)))) else {
            Issue.record("expected an update")
            return
        }
        #expect(job.status == .processing)
        #expect(core.merge(observe(row(idA, status: "queued", updatedAt: ts(1)), source: .poll)) == .ignored(.stale))
        #expect(core.job(idA)?.status == .processing)
        #expect(core.watermark == JobTimestamp(ts(2)))
    }

    @Test("a terminal state never regresses to an older or equal version, but a strictly newer one wins (retry)")
    func terminalNeverRegresses() {
        var core = JobStoreCore()
        core.merge(observe(row(idA, status: "completed", updatedAt: ts(5))))
        #expect(core.merge(observe(row(idA, status: "processing", updatedAt: ts(4)))) == .ignored(.stale))
        #expect(core.merge(observe(row(idA, status: "processing", updatedAt: ts(5)))) == .ignored(.stale))
        #expect(core.job(idA)?.status == .completed)
        guard case .updated(let retried, _) = core.merge(observe(row(idA, status: "queued", updatedAt: ts(6)))) else {
            Issue.record("a strictly newer version must be accepted")
            return
        }
        #expect(retried.status == .queued)
    }

    @Test("without timestamps the status rank orders; a terminal status never regresses")
    func rankOrdering() {
        var core = JobStoreCore()
        core.merge(observe(row(idA, status: "processing", progress: "page 1"), source: .statusEndpoint))
        // Same rank, new progress text, no timestamps: accepted as progress.
        guard
            case .updated = core.merge(
                observe(row(idA, status: "processing", progress: "page 2"), source: .statusEndpoint))
        else {
            Issue.record("progress without timestamps should be accepted")
            return
        }
        core.merge(observe(row(idA, status: "FAILED", error: "File appears to be corrupted"), source: .statusEndpoint))
        #expect(core.merge(observe(row(idA, status: "processing"), source: .statusEndpoint)) == .ignored(.stale))
        #expect(
            core.merge(observe(row(idA, status: "failed", error: "other"), source: .statusEndpoint))
                == .ignored(.duplicate))
        #expect(core.job(idA)?.error == "File appears to be corrupted")
    }

    @Test("the same version from another source (live then catch-up) is a duplicate and emits nothing")
    func duplicatesSuppressed() {
        var core = JobStoreCore()
        let live = row(idA, status: "processing", updatedAt: ts(2))
        core.merge(observe(live, commit: "2026-08-21T10:15:02.100Z"))
        #expect(core.merge(observe(live, source: .reconciliation)) == .ignored(.duplicate))
        #expect(core.merge(observe(live, source: .poll)) == .ignored(.duplicate))
        #expect(core.merge(observe(live, commit: "2026-08-21T10:15:02.100Z")) == .ignored(.duplicate))
    }

    @Test("§5.4 a truncated (413) record merges over known columns; a full re-fetch of that version fills it")
    func truncatedThenRefetched() {
        var core = JobStoreCore()
        let big: JSONValue = .object(["classification": .string("invoice")])
        core.merge(
            observe(row(idA, status: "processing", updatedAt: ts(1), progress: "page 1"), source: .reconciliation))
        let truncated = row(idA, status: "completed", updatedAt: ts(2))  // result dropped: > 64 bytes
        guard case .updated(let partial, _) = core.merge(observe(truncated, complete: false)) else {
            Issue.record("a newer truncated record still advances")
            return
        }
        #expect(partial.status == .completed)
        #expect(partial.progress == "page 1")  // kept from what was known
        #expect(core.entries[idA]?.complete == false)
        let full = row(idA, status: "completed", updatedAt: ts(2), progress: "done", result: big)
        guard case .updated(let filled, _) = core.merge(observe(full, source: .refetch)) else {
            Issue.record("the re-fetched full row must replace the truncated one")
            return
        }
        #expect(filled.result?.raw == big)
        #expect(core.entries[idA]?.complete == true)
        #expect(core.merge(observe(full, source: .poll)) == .ignored(.duplicate))
    }

    @Test("a change record in another column order, with a column missing, repeated or new, merges by key")
    func recordColumnsByKey() throws {
        var core = JobStoreCore()
        core.merge(
            observe(
                row(idA, status: "processing", updatedAt: ts(1), progress: "page 1", extra: ["owner": .string("a")]),
                source: .reconciliation))
        // The server's order differs from the REST row's; `progress` is missing (an unchanged TOASTed column);
        // `status` is repeated (the first wins); `tenant` is a column the store has not seen.
        let record = JSONObject([
            .init(key: "owner", value: .string("b")),
            .init(key: "status", value: .string("completed")),
            .init(key: "updated_at", value: .string(ts(2))),
            .init(key: "status", value: .string("failed")),
            .init(key: "id", value: .string(idA.rawValue)),
            .init(key: "tenant", value: .string("t1")),
            .init(key: "tenant", value: .string("t2")),
        ])
        guard case .updated(let job, _) = core.merge(observe(record)) else {
            Issue.record("a newer record advances")
            return
        }
        #expect(job.status == .completed)
        #expect(job.progress == "page 1")
        #expect(job.columns["owner"] == .string("b"))
        #expect(job.columns["tenant"] == .string("t1"))
        #expect(job.columns.keys == ["id", "status", "updated_at", "progress", "owner", "tenant"])
    }

    @Test("deletion removes the job once; a stale row after it is refused; a newer re-insert is accepted")
    func deletion() {
        var core = JobStoreCore()
        let job = try! Job(row: row(idA, status: "processing", updatedAt: ts(3)))
        core.merge(observe(row(idA, status: "processing", updatedAt: ts(3))))
        #expect(core.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime)) == .deleted(idA, last: job))
        #expect(core.merge(JobObservation(jobID: idA, kind: .vanished, source: .poll)) == .ignored(.alreadyDeleted))
        #expect(
            core.merge(observe(row(idA, status: "processing", updatedAt: ts(3)), source: .poll)) == .ignored(.stale))
        #expect(core.job(idA) == nil)
        guard case .inserted = core.merge(observe(row(idA, status: "queued", updatedAt: ts(9)))) else {
            Issue.record("a strictly newer row after a deletion is a re-insert")
            return
        }
    }

    @Test("a never-seen id that vanished is a deletion (a final answer for waiters), once")
    func vanishedUnknown() {
        var core = JobStoreCore()
        #expect(
            core.merge(JobObservation(jobID: idB, kind: .vanished, source: .reconciliation)) == .deleted(idB, last: nil)
        )
        #expect(
            core.merge(JobObservation(jobID: idB, kind: .vanished, source: .reconciliation))
                == .ignored(.alreadyDeleted))
    }

    @Test("tombstones are bounded")
    func tombstonesBounded() {
        var core = JobStoreCore(tombstoneLimit: 2)
        for id in [idA, idB, idC] { core.merge(JobObservation(jobID: id, kind: .vanished, source: .poll)) }
        #expect(core.tombstones.count == 2)
        #expect(!core.tombstones.contains(idA))
    }

    @Test("bad input: an observation with an invalid id is a typed error before it reaches the store")
    func invalidObservation() {
        #expect(throws: JobSyncError.self) {
            try JobObservation.row(["id": .string("x"), "status": .string("queued")], source: .realtime)
        }
        #expect(throws: JobSyncError.self) { try JobObservation.row(["status": .string("queued")], source: .poll) }
    }
}

/// The retention policy: what leaves memory, when, and what a job that left memory still refuses.
@Suite("JobStoreCore retention")
struct JobStoreCoreRetentionTests {
    private static let second: Int64 = 1_000_000

    private static func core(period: Duration = .seconds(10), finished: Int = 100, remembered: Int = 100)
        -> JobStoreCore
    {
        JobStoreCore(retention: .init(period: period, maximumFinishedJobs: finished, rememberedJobs: remembered))
    }

    @Test("a finished job leaves memory once the period has passed since it finished; an unfinished one stays")
    func period() {
        var core = Self.core()
        core.merge(observe(row(idA, status: "completed", updatedAt: ts(1))), now: 0)
        core.merge(observe(row(idB, status: "processing", updatedAt: ts(1))), now: 0)
        core.evict(now: 9 * Self.second)
        #expect(core.job(idA)?.status == .completed)
        core.evict(now: 10 * Self.second)
        #expect(core.job(idA) == nil)
        #expect(core.retired.contains(idA))
        core.evict(now: 3600 * Self.second)
        #expect(core.job(idB)?.status == .processing)
        #expect(core.finishedCount == 0)
    }

    @Test("the period starts when the job finished, not when it was first seen; a retried job is not retired")
    func periodFromFinish() {
        var core = Self.core()
        core.merge(observe(row(idA, status: "queued", updatedAt: ts(1))), now: 0)
        core.merge(observe(row(idA, status: "completed", updatedAt: ts(2))), now: 8 * Self.second)
        core.evict(now: 12 * Self.second)
        #expect(core.job(idA)?.status == .completed)
        // Back to processing (a retry) before the period ends: the stale retention record is skipped.
        core.merge(observe(row(idA, status: "processing", updatedAt: ts(3))), now: 9 * Self.second)
        core.evict(now: 60 * Self.second)
        #expect(core.job(idA)?.status == .processing)
    }

    @Test("beyond the count, the job that finished first leaves first; memory stays bounded over 20,000 jobs")
    func count() throws {
        var core = Self.core(period: .seconds(3600), finished: 100, remembered: 1_000)
        var ids: [JobID] = []
        for n in 0..<20_000 {
            let id = try JobID(UUID().uuidString.lowercased())
            ids.append(id)
            core.merge(observe(row(id, status: "queued", updatedAt: ts(1))), now: Int64(n))
            core.merge(observe(row(id, status: n % 7 == 0 ? "failed" : "completed", updatedAt: ts(2))), now: Int64(n))
            #expect(core.finishedCount <= 100)
        }
        #expect(core.entries.count == 100)
        #expect(core.retired.count == 1_000)
        #expect(core.job(ids[19_999]) != nil && core.job(ids[19_899]) == nil)
        #expect(core.retired.contains(ids[19_899]) && !core.retired.contains(ids[18_899]))
    }

    @Test("a job that left memory: an older row is stale, the same version is restored, a newer one is inserted")
    func retiredRows() throws {
        var core = Self.core(finished: 0)
        let done = try Job(row: row(idA, status: "completed", updatedAt: ts(5)))
        core.merge(observe(row(idA, status: "completed", updatedAt: ts(5))), now: 0)
        #expect(core.job(idA) == nil && core.retired.contains(idA))
        #expect(core.merge(observe(row(idA, status: "processing", updatedAt: ts(4)), source: .poll)) == .ignored(.stale))
        #expect(core.merge(observe(row(idA, status: "completed", updatedAt: ts(5)), source: .poll)) == .restored(done))
        // Restored, it is a finished job like any other and leaves again (count 0).
        #expect(core.job(idA) == nil && core.retired.contains(idA))
        guard case .inserted = core.merge(observe(row(idA, status: "queued", updatedAt: ts(9)), source: .poll)) else {
            Issue.record("a strictly newer row of a retired job is news")
            return
        }
        #expect(!core.retired.contains(idA))
    }

    @Test("a deletion of a job that left memory is a deletion, and its tombstone keeps the retired version")
    func retiredDeletion() {
        var core = Self.core(finished: 0)
        core.merge(observe(row(idA, status: "completed", updatedAt: ts(5))), now: 0)
        #expect(core.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime)) == .deleted(idA, last: nil))
        #expect(!core.retired.contains(idA) && core.tombstones.contains(idA))
        #expect(core.merge(observe(row(idA, status: "completed", updatedAt: ts(5)), source: .poll)) == .ignored(.stale))
    }

    @Test("an unfinished job no longer watched is retired; a finished one waits for the retention")
    func retireUnfinished() {
        var core = Self.core()
        core.merge(observe(row(idA, status: "processing", updatedAt: ts(5))), now: 0)
        core.merge(observe(row(idB, status: "completed", updatedAt: ts(5))), now: 0)
        let retiredA = core.retireIfUnfinished(idA)
        let retiredB = core.retireIfUnfinished(idB)
        #expect(retiredA && !retiredB)
        #expect(core.job(idA) == nil && core.job(idB) != nil)
        #expect(core.merge(observe(row(idA, status: "queued", updatedAt: ts(4)), source: .poll)) == .ignored(.stale))
    }
}
