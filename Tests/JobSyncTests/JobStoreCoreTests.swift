import SupabaseREST
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
        let big: JSON = .object(["classification": .string("invoice")])
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
        #expect(core.tombstones[idA] == nil)
    }

    @Test("bad input: an observation with an invalid id is a typed error before it reaches the store")
    func invalidObservation() {
        #expect(throws: JobSyncError.self) {
            try JobObservation.row(["id": .string("x"), "status": .string("queued")], source: .realtime)
        }
        #expect(throws: JobSyncError.self) { try JobObservation.row(["status": .string("queued")], source: .poll) }
    }
}
