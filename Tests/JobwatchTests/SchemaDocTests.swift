import Foundation
import JobSync
import Testing

@testable import jobwatch

@Suite("docs/jobwatch-json.md stays in step with the encoder")
struct SchemaDocTests {
    /// The JSON lines of the doc's ```json blocks.
    private func documentedLines() throws -> [String] {
        let docs = URL(fileURLWithPath: #filePath).resolvingSymlinksInPath()
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("docs/jobwatch-json.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        var lines: [String] = []
        var inBlock = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            if line.hasPrefix("```") {
                inBlock = line == "```json"
            } else if inBlock {
                lines.append(String(line))
            }
        }
        return lines
    }

    /// The keys the encoder writes, per event.
    private func encodedKeys() throws -> [String: Set<String>] {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice))
        line.outcome = .completed
        let records: [String] = [
            JSONLines.line(for: .job(line)),
            JSONLines.line(for: .final(line)),
            JSONLines.line(for: .transport(.polling, elapsed: .zero)),
            JSONLines.line(for: .end(.completed, [line])),
            JSONLines.statusLine(id: Fixture.a, snapshot: line.snapshot),
            JSONLines.outcomeLine(FollowedOutcome(line: line, consumer: "billing", delivery: 1)),
            JSONLines.deadLetterLine(
                DeadLetterView(
                    consumer: "billing", id: Fixture.a, outcome: .completed, attempts: 5, reason: "exit status 1",
                    at: "2026-11-29T07:52:10.114302Z", snapshot: line.snapshot)),
        ]
        var keys: [String: Set<String>] = [:]
        for record in records {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(record.utf8)) as? [String: Any])
            keys[try #require(object["event"] as? String)] = Set(object.keys)
        }
        return keys
    }

    @Test("Every documented example parses and has exactly the fields the encoder writes")
    func examplesMatch() throws {
        let lines = try self.documentedLines()
        #expect(lines.count >= 10)
        let expected = try self.encodedKeys()
        var seen: Set<String> = []
        for line in lines {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let event = try #require(object["event"] as? String)
            seen.insert(event)
            #expect(Set(object.keys) == expected[event], "documented \(event) record: \(line)")
            #expect(object["v"] as? Int == JSONLines.schemaVersion)
        }
        #expect(seen == Set(expected.keys))
    }
}
