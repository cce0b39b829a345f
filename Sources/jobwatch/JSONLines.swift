import JobSync

/// The `--json` output: one JSON object per line, per change. The schema is documented in
/// `docs/jobwatch-json.md`; ``JSONLines/schemaVersion`` changes only when a field changes meaning or goes away.
enum JSONLines {
    /// The value of the `"v"` field of every record.
    static let schemaVersion = 1

    /// A JSON value with ordered object keys, so records are stable and easy to read.
    indirect enum Value: Sendable, Hashable {
        case string(String)
        case int(Int)
        case double(Double)
        case bool(Bool)
        case null
        case array([Value])
        case object([(String, Value)])

        static func == (lhs: Value, rhs: Value) -> Bool { lhs.serialized == rhs.serialized }
        func hash(into hasher: inout Hasher) { hasher.combine(self.serialized) }

        /// Compact JSON text (no spaces, no line breaks).
        var serialized: String {
            var output = ""
            self.write(into: &output)
            return output
        }

        private func write(into output: inout String) {
            switch self {
            case .string(let text): Self.writeString(text, into: &output)
            case .int(let number): output += String(number)
            case .double(let number): output += number.isFinite ? "\(number)" : "null"
            case .bool(let flag): output += flag ? "true" : "false"
            case .null: output += "null"
            case .array(let values):
                output += "["
                for (index, value) in values.enumerated() {
                    if index > 0 { output += "," }
                    value.write(into: &output)
                }
                output += "]"
            case .object(let members):
                output += "{"
                for (index, (key, value)) in members.enumerated() {
                    if index > 0 { output += "," }
                    Self.writeString(key, into: &output)
                    output += ":"
                    value.write(into: &output)
                }
                output += "}"
            }
        }

        private static func writeString(_ text: String, into output: inout String) {
            output += "\""
            for scalar in text.unicodeScalars {
                switch scalar {
                case "\"": output += "\\\""
                case "\\": output += "\\\\"
                case "\n": output += "\\n"
                case "\r": output += "\\r"
                case "\t": output += "\\t"
                case _
                where scalar.value < 0x20 || scalar.value == 0x7F || scalar.value == 0x2028
                    || scalar.value == 0x2029:
                    let hex = String(scalar.value, radix: 16)
                    output += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                default: output.unicodeScalars.append(scalar)
                }
            }
            output += "\""
        }
    }

    /// The JSON line for a record (without the trailing newline).
    static func line(for record: WatchState.Record) -> String {
        self.value(for: record).serialized
    }

    /// The JSON value for a record.
    static func value(for record: WatchState.Record) -> Value {
        switch record {
        case .job(let line):
            return .object(self.header("job", line.elapsed) + self.jobMembers(line))
        case .final(let line):
            var members = self.header("final", line.elapsed) + self.jobMembers(line)
            members.append(("outcome", .string(line.outcome?.name ?? "waiting")))
            if case .unavailable(let message)? = line.outcome {
                members.append(("message", .string(message)))
            } else {
                members.append(("message", .null))
            }
            return .object(members)
        case .transport(let mode, let elapsed):
            return .object(self.header("transport", elapsed) + [("transport", .string(mode.cliName))])
        case .end(let status, let lines):
            var counts: [(String, Value)] = []
            for name in ["completed", "failed", "not_found", "deleted", "timeout", "interrupted", "unavailable"] {
                let count = lines.count { $0.outcome?.name == name }
                if count > 0 { counts.append((name, .int(count))) }
            }
            let elapsed = lines.map(\.elapsed).max() ?? .zero
            return .object(
                self.header("end", elapsed) + [("exit_code", .int(Int(status.rawValue))), ("counts", .object(counts))]
            )
        }
    }

    /// The one-shot `status` record for a job (`nil` snapshot: not found).
    static func statusLine(id: JobID, snapshot: JobSnapshot?) -> String {
        var line = JobLine(id: id, snapshot: snapshot)
        line.outcome = snapshot == nil ? .notFound : nil
        var members: [(String, Value)] = [("v", .int(self.schemaVersion)), ("event", .string("status"))]
        members += self.jobMembers(line).filter { $0.0 != "transport" }
        members.append(("found", .bool(snapshot != nil)))
        return Value.object(members).serialized
    }

    private static func header(_ event: String, _ elapsed: Duration) -> [(String, Value)] {
        [("v", .int(self.schemaVersion)), ("event", .string(event)), ("elapsed_ms", .int(self.milliseconds(elapsed)))]
    }

    private static func jobMembers(_ line: JobLine) -> [(String, Value)] {
        let snapshot = line.snapshot
        return [
            ("job_id", .string(line.id.rawValue)),
            ("status", snapshot.map { .string($0.phase.name) } ?? .null),
            ("progress", snapshot?.progress.map(Value.string) ?? .null),
            ("error", snapshot?.error.map(Value.string) ?? .null),
            ("result", snapshot?.result.map(self.resultValue) ?? .null),
            ("updated_at", snapshot?.updatedAt.map(Value.string) ?? .null),
            ("transport", .string(line.transport.cliName)),
        ]
    }

    private static func resultValue(_ result: ClassificationSummary) -> Value {
        .object([
            ("classification", result.classification.map(Value.string) ?? .null),
            ("confidence", result.confidence.map(Value.double) ?? .null),
            ("pages", .int(result.pageCount)),
            ("failed_pages", .array(result.failedPages.map(Value.int))),
        ])
    }

    /// Whole milliseconds in a duration, rounded down.
    static func milliseconds(_ duration: Duration) -> Int {
        let (seconds, attoseconds) = duration.components
        return Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000)
    }
}
