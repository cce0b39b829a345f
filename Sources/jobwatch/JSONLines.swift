import JobSync
import JobSyncCore

/// The `--json` output: one JSON object per line, per change. The schema is documented in
/// `docs/jobwatch-json.md`; ``JSONLines/schemaVersion`` changes only when a field changes meaning or goes away.
/// Records are `JSONValue`s written by JobSyncCore's serializer (the client side's one JSON writer).
enum JSONLines {
    /// The value of the `"v"` field of every record.
    static let schemaVersion = 1

    /// The JSON line for a record (without the trailing newline).
    static func line(for record: WatchState.Record) -> String {
        self.value(for: record).serialized()
    }

    /// The JSON value for a record; members in a fixed order, so records are stable and easy to read.
    static func value(for record: WatchState.Record) -> JSONValue {
        switch record {
        case .job(let line):
            var object = self.header("job", line.elapsed)
            object.members += self.jobMembers(line).members
            return .object(object)
        case .final(let line):
            var object = self.header("final", line.elapsed)
            object.members += self.jobMembers(line).members
            object["outcome"] = .string(line.outcome?.name ?? "waiting")
            if case .unavailable(let message)? = line.outcome {
                object["message"] = .string(message)
            } else {
                object["message"] = JSONValue.null
            }
            return .object(object)
        case .transport(let mode, let elapsed):
            var object = self.header("transport", elapsed)
            object["transport"] = .string(mode.cliName)
            return .object(object)
        case .end(let status, let lines):
            var counts = JSONObject()
            for name in ["completed", "failed", "not_found", "deleted", "timeout", "interrupted", "unavailable"] {
                let count = lines.count { $0.outcome?.name == name }
                if count > 0 { counts[name] = .int(count) }
            }
            var object = self.header("end", lines.map(\.elapsed).max() ?? .zero)
            object["exit_code"] = .int(Int(status.rawValue))
            object["counts"] = .object(counts)
            return .object(object)
        }
    }

    /// The one-shot `status` record for a job (`nil` snapshot: not found).
    static func statusLine(id: JobID, snapshot: JobSnapshot?) -> String {
        var line = JobLine(id: id, snapshot: snapshot)
        line.outcome = snapshot == nil ? .notFound : nil
        var object: JSONObject = ["v": .int(self.schemaVersion), "event": .string("status")]
        object.members += self.jobMembers(line).members
        object["transport"] = nil
        object["found"] = .bool(snapshot != nil)
        return JSONValue.object(object).serialized()
    }

    /// The `follow` record of an outcome: every field of a `final` record (event `outcome`), plus `consumer`,
    /// `holder` (`follow --fleet`) and `delivery`. `elapsed_ms` and `transport` are the line's.
    static func outcomeLine(_ outcome: FollowedOutcome) -> String {
        guard case .object(var object) = self.value(for: .final(outcome.line)) else {
            preconditionFailure("a final record is an object")
        }
        object["event"] = .string("outcome")
        object["consumer"] = outcome.consumer.map(JSONValue.string) ?? .null
        object["holder"] = outcome.holder.map(JSONValue.string) ?? .null
        object["delivery"] = .int(outcome.delivery)
        return JSONValue.object(object).serialized()
    }

    /// The `follow --dead-letters` record of a dead letter: who gave up on which job, when and why, and the job's
    /// last state as in `status` records.
    static func deadLetterLine(_ letter: DeadLetterView) -> String {
        var object: JSONObject = [
            "v": .int(self.schemaVersion),
            "event": .string("dead_letter"),
            "consumer": .string(letter.consumer),
            "job_id": .string(letter.id.rawValue),
            "outcome": .string(letter.outcome.name),
            "attempts": .int(letter.attempts),
            "reason": .string(letter.reason),
            "dead_lettered_at": .string(letter.at),
        ]
        var members = self.jobMembers(JobLine(id: letter.id, snapshot: letter.snapshot))
        members["job_id"] = nil
        members["transport"] = nil
        object.members += members.members
        return JSONValue.object(object).serialized()
    }

    private static func header(_ event: String, _ elapsed: Duration) -> JSONObject {
        ["v": .int(self.schemaVersion), "event": .string(event), "elapsed_ms": .int(self.milliseconds(elapsed))]
    }

    private static func jobMembers(_ line: JobLine) -> JSONObject {
        let snapshot = line.snapshot
        return [
            "job_id": .string(line.id.rawValue),
            "status": snapshot.map { .string($0.phase.name) } ?? .null,
            "progress": snapshot?.progress.map(JSONValue.string) ?? .null,
            "error": snapshot?.error.map(JSONValue.string) ?? .null,
            "result": snapshot?.result.map(self.resultValue) ?? .null,
            "updated_at": snapshot?.updatedAt.map(JSONValue.string) ?? .null,
            "transport": .string(line.transport.cliName),
        ]
    }

    private static func resultValue(_ result: ClassificationSummary) -> JSONValue {
        .object([
            "classification": result.classification.map(JSONValue.string) ?? .null,
            "confidence": result.confidence.map(JSONValue.double) ?? .null,
            "pages": .int(result.pageCount),
            "failed_pages": .array(result.failedPages.map(JSONValue.int)),
        ])
    }

    /// Whole milliseconds in a duration, rounded down.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}

extension JSONValue {
    /// An integer.
    static func int(_ value: Int) -> JSONValue { .number(JSONNumber(value)) }

    /// A number, or `null` for an infinity or NaN (JSON has none).
    static func double(_ value: Double) -> JSONValue { JSONNumber(value).map(JSONValue.number) ?? .null }
}
