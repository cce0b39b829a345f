import Foundation
import JobSync
import JobSyncCore
import Testing

@testable import jobwatch

@Suite("JSON Lines output (schema in docs/jobwatch-json.md)")
struct JSONLinesTests {
    private func parse(_ line: String) throws -> [String: Any] {
        #expect(!line.contains("\n"))
        let object = try JSONSerialization.jsonObject(with: Data(line.utf8))
        return try #require(object as? [String: Any])
    }

    @Test("job records carry every schema field with the documented types")
    func jobRecord() throws {
        var line = JobLine(id: Fixture.a)
        line.snapshot = JobSnapshot(
            id: Fixture.a,
            phase: .processing,
            progress: "Processing page 3 of 10",
            error: nil,
            result: nil,
            updatedAt: "2026-11-29T07:00:00.123456+00:00"
        )
        line.elapsed = .milliseconds(1_234)
        line.transport = .live
        let object = try self.parse(JSONLines.line(for: .job(line)))
        #expect(object["v"] as? Int == 1)
        #expect(object["event"] as? String == "job")
        #expect(object["elapsed_ms"] as? Int == 1_234)
        #expect(object["job_id"] as? String == Fixture.a.rawValue)
        #expect(object["status"] as? String == "processing")
        #expect(object["progress"] as? String == "Processing page 3 of 10")
        #expect(object["error"] is NSNull)
        #expect(object["result"] is NSNull)
        #expect(object["updated_at"] as? String == "2026-11-29T07:00:00.123456+00:00")
        #expect(object["transport"] as? String == "realtime")
        #expect(
            Set(object.keys) == [
                "v", "event", "elapsed_ms", "job_id", "status", "progress", "error", "result", "updated_at",
                "transport",
            ]
        )
    }

    @Test("final records add the outcome; results carry classification, confidence, pages, failed pages")
    func finalRecord() throws {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice))
        line.outcome = .completed
        let object = try self.parse(JSONLines.line(for: .final(line)))
        #expect(object["event"] as? String == "final")
        #expect(object["outcome"] as? String == "completed")
        #expect(object["message"] is NSNull)
        let result = try #require(object["result"] as? [String: Any])
        #expect(result["classification"] as? String == "invoice")
        #expect(result["confidence"] as? Double == 0.97)
        #expect(result["pages"] as? Int == 10)
        #expect(result["failed_pages"] as? [Int] == [3, 7])
    }

    @Test("A final record for a job never seen has a null status; unavailable carries its message")
    func finalUnavailable() throws {
        var line = JobLine(id: Fixture.b)
        line.outcome = .unavailable("cannot reach the service at http://127.0.0.1:9")
        let object = try self.parse(JSONLines.line(for: .final(line)))
        #expect(object["status"] is NSNull)
        #expect(object["outcome"] as? String == "unavailable")
        #expect(object["message"] as? String == "cannot reach the service at http://127.0.0.1:9")
    }

    @Test("transport and end records")
    func transportAndEnd() throws {
        let transport = try self.parse(JSONLines.line(for: .transport(.polling, elapsed: .seconds(2))))
        #expect(transport["event"] as? String == "transport")
        #expect(transport["transport"] as? String == "polling")
        #expect(transport["elapsed_ms"] as? Int == 2_000)

        var done = JobLine(id: Fixture.a)
        done.outcome = .completed
        var failed = JobLine(id: Fixture.b)
        failed.outcome = .failed
        failed.elapsed = .seconds(5)
        let end = try self.parse(JSONLines.line(for: .end(.failed, [done, failed])))
        #expect(end["event"] as? String == "end")
        #expect(end["exit_code"] as? Int == 1)
        #expect(end["elapsed_ms"] as? Int == 5_000)
        let counts = try #require(end["counts"] as? [String: Int])
        #expect(counts == ["completed": 1, "failed": 1])
    }

    @Test("Strings are escaped: quotes, backslashes, control characters, line separators")
    func escaping() throws {
        let nasty = "say \"hi\"\\ \n\t\u{1}\u{2028}é"
        let text = JSONValue.object(["s": .string(nasty)]).serialized()
        #expect(text == #"{"s":"say \"hi\"\\ \n\t\u0001\u2028é"}"#)
        #expect(try self.parse(text)["s"] as? String == nasty)
        #expect(JSONValue.double(.nan).serialized() == "null")
        #expect(JSONValue.double(0.97).serialized() == "0.97")
    }

    @Test("status records say whether the job was found")
    func statusRecord() throws {
        let found = try self.parse(JSONLines.statusLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .queued)))
        #expect(found["event"] as? String == "status")
        #expect(found["found"] as? Bool == true)
        #expect(found["status"] as? String == "queued")
        #expect(found["transport"] == nil)
        let missing = try self.parse(JSONLines.statusLine(id: Fixture.b, snapshot: nil))
        #expect(missing["found"] as? Bool == false)
        #expect(missing["status"] is NSNull)
    }
}
