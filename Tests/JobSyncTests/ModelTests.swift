import JobSyncCore
import Testing

@testable import JobSync

@Suite("Model: ids, statuses, timestamps, results")
struct ModelTests {
    @Test("JobID lower-cases a valid UUID and rejects anything else with a typed error")
    func jobID() throws {
        #expect(try JobID("2F6A1C7E-0D5B-4A53-8F3E-0C9D1B2A3E4F").rawValue == "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f")
        for bad in [
            "", "not-a-uuid", "2f6a1c7e0d5b4a538f3e0c9d1b2a3e4f", "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4g",
            "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f0", "') or 1=1 --",
        ] {
            #expect(throws: JobSyncError.self) { try JobID(bad) }
        }
        do {
            _ = try JobID("bad")
        } catch {
            #expect(error.code == .invalidJobID)
        }
    }

    @Test("statuses decode case-insensitively; unknown ones are kept raw; terminal is completed/failed")
    func statuses() {
        #expect(JobStatus(raw: "PROCESSING") == .processing)
        #expect(JobStatus(raw: " Queued ") == .queued)
        #expect(JobStatus(raw: "Completed").isTerminal)
        #expect(JobStatus(raw: "FAILED").isTerminal)
        #expect(JobStatus(raw: "cancelled") == .unknown("cancelled"))
        #expect(!JobStatus(raw: "cancelled").isTerminal)
        #expect(JobStatus.queued.rank < JobStatus.processing.rank)
        #expect(JobStatus.processing.rank < JobStatus.failed.rank)
    }

    @Test("timestamps parse exactly (microseconds, offsets, Z, space separator) and print as UTC")
    func timestamps() throws {
        let micro = try #require(JobTimestamp("2026-08-21T10:15:03.401882+00:00"))
        let milli = try #require(JobTimestamp("2026-08-21T10:15:03.412Z"))
        let offset = try #require(JobTimestamp("2026-08-21 12:15:03.401882+02"))
        #expect(micro < milli)
        #expect(offset == micro)
        #expect(micro.description == "2026-08-21T10:15:03.401882Z")
        #expect(JobTimestamp("1970-01-01T00:00:00Z")?.microsecondsSinceEpoch == 0)
        #expect(
            JobTimestamp("2026-08-21T10:15:03.0012+00:00")?.microsecondsSinceEpoch
                == (JobTimestamp("2026-08-21T10:15:03Z")?.microsecondsSinceEpoch).map { $0 + 1200 })
        for bad in ["", "2026-08-21", "2026-13-01T00:00:00Z", "2026-08-21T10:15:03.Z", "2026-08-21T10:15:03+0x"] {
            #expect(JobTimestamp(bad) == nil, "\(bad)")
        }
        #expect(micro.advanced(by: .seconds(-5)).description == "2026-08-21T10:14:58.401882Z")
    }

    @Test("a job row decodes known columns and keeps the others")
    func jobFromRow() throws {
        let result: JSONValue = .object([
            "classification": .string("invoice"), "confidence": .number(JSONNumber(text: "0.93")),
            "total_pages": .number(JSONNumber(3)), "processed_pages": .number(JSONNumber(3)),
            "page_results": .array([
                .object([
                    "page": .number(JSONNumber(1)), "success": .bool(true), "classification": .string("invoice"),
                    "confidence": .number(JSONNumber(text: "0.9")),
                ]),
                .object(["page": .number(JSONNumber(2)), "success": .bool(false), "error": .string("blank page")]),
            ]),
        ])
        let job = try Job(
            row: row(idA, status: "COMPLETED", updatedAt: ts(3), result: result, extra: ["owner": .string("x")]))
        #expect(job.status == .completed)
        #expect(job.columns["owner"] == .string("x"))
        #expect(job.result?.raw == result)
        let view = try #require(job.result?.view)
        #expect(view.classification == "invoice")
        #expect(view.confidence == 0.93)
        #expect(view.totalPages == 3)
        #expect(view.pageResults.count == 2)
        #expect(view.failedPages == [2])
        #expect(view.pageResults[1].error == "blank page")
    }

    @Test("the status endpoint's job_id is accepted; a row without id is invalidRow")
    func jobIDColumn() throws {
        let job = try Job(row: ["job_id": .string(idB.rawValue.uppercased()), "status": .string("queued")])
        #expect(job.id == idB)
        #expect(throws: JobSyncError.self) { try Job(row: ["status": .string("queued")]) }
        #expect(throws: JobSyncError.self) { try Job(row: ["id": .string("nope")]) }
    }

    @Test("an unreadable result is kept raw with a nil view; a JSON string holding an object is read")
    func unreadableResult() throws {
        let wrongType = try Job(row: row(idA, status: "completed", result: .object(["confidence": .string("high")])))
        #expect(wrongType.result?.raw == .object(["confidence": .string("high")]))
        #expect(wrongType.result?.view == nil)
        let notJSON = try Job(row: row(idA, status: "completed", result: .string("{broken")))
        #expect(notJSON.result?.raw == .string("{broken"))
        #expect(notJSON.result?.view == nil)
        let stringified = try Job(
            row: row(idA, status: "completed", result: .string(#"{"classification":"memo","confidence":0.5}"#)))
        #expect(stringified.result?.view?.classification == "memo")
        let badPages = try Job(
            row: row(idA, status: "completed", result: .object(["page_results": .number(JSONNumber(1))])))
        #expect(badPages.result?.view == nil)
    }

    @Test("version order: updated_at, else commit timestamp, else status rank")
    func versionOrder() {
        let t1 = JobTimestamp(microsecondsSinceEpoch: 1)
        let t2 = JobTimestamp(microsecondsSinceEpoch: 2)
        func v(_ u: JobTimestamp?, _ c: JobTimestamp?, _ r: Int) -> JobVersion {
            JobVersion(updatedAt: u, commitTimestamp: c, statusRank: r)
        }
        #expect(v(t2, nil, 0).compared(to: v(t1, nil, 2)) == .newer)  // updated_at beats status
        #expect(v(nil, t2, 0).compared(to: v(nil, t1, 2)) == .newer)  // commit time beats status
        #expect(v(t1, t1, 1).compared(to: v(t1, t2, 1)) == .older)  // equal updated_at: commit decides
        #expect(v(nil, nil, 2).compared(to: v(nil, nil, 1)) == .newer)
        #expect(v(t1, nil, 1).compared(to: v(nil, t2, 1)) == .same)  // nothing comparable, same rank
    }
}
