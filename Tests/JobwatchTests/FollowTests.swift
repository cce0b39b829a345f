import ArgumentParser
import Foundation
import JobSync
import NIOConcurrencyHelpers
import SupabaseREST
import Testing

@testable import jobwatch

#if canImport(Glibc)
import Glibc
#endif

/// What a fake follow session saw happen to its outcomes, in order.
final class SettlementLog: Sendable {
    private let entries = NIOLockedValueBox<[String]>([])

    func append(_ entry: String) { self.entries.withLockedValue { $0.append(entry) } }

    var all: [String] { self.entries.withLockedValue { $0 } }
}

/// A session that reports a script of outcomes, then fails or waits until cancelled; it logs settlements.
struct ScriptedFollowSession: FollowSession {
    var outcomes: [FollowedOutcome]
    var failure: JobwatchError?
    let log = SettlementLog()

    func run(report: @escaping @Sendable (FollowEvent) async -> Void) async throws {
        await report(.transport(.live))
        for outcome in self.outcomes {
            let id = outcome.line.id.rawValue
            let log = self.log
            await report(
                .outcome(
                    FollowDelivery(
                        outcome: outcome,
                        acknowledge: { log.append("ack \(id)") },
                        reject: { reason in log.append("reject \(id) \(reason)") }
                    )))
        }
        if let failure = self.failure {
            throw failure
        }
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        for await _ in stream {}
        withExtendedLifetime(continuation) {}
    }

    func flush() async { self.log.append("flush") }

    var pending: Int { 0 }
}

@Suite("jobwatch follow: options, records and the runner")
struct FollowTests {
    static let secret = "sb_secret_THIS-MUST-NEVER-BE-PRINTED"

    /// A key file holding ``secret``, removed after `body`.
    private func withKeyFile<T>(_ body: (String) throws -> T) throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-key-\(UUID())").path
        try (Self.secret + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    private static func outcome(_ id: JobID, _ phase: JobPhase, delivery: Int = 1) -> FollowedOutcome {
        let kind: JobOutcome = phase == .completed ? .completed : .failed
        let snapshot = Fixture.snapshot(
            id, phase, error: phase == .failed ? "Failed to process PDF: File appears to be corrupted" : nil,
            result: phase == .completed ? Fixture.invoice : nil)
        return FollowedOutcome(
            line: JobLine(id: id, snapshot: snapshot, outcome: kind), consumer: "billing", delivery: delivery)
    }

    @Test("follow parses --consumer, --since, --exec, --max-attempts, --retry-delay and --cache")
    func parses() throws {
        try self.withKeyFile { path in
            let command = try Jobwatch.parseAsRoot([
                "follow", "--url", "http://127.0.0.1:54321", "--key-file", path, "--consumer", "billing-v2",
                "--since", "2026-12-01T08:00:00Z", "--exec", "./route.sh", "--max-attempts", "3",
                "--retry-delay", "0.25", "--cache", "/tmp/state.sqlite", "--json",
            ])
            let follow = try #require(command as? Jobwatch.Follow)
            #expect(follow.consumer == "billing-v2")
            #expect(follow.exec == "./route.sh")
            #expect(follow.output.json == true)
            let parameters = try follow.parameters(cacheFile: URL(fileURLWithPath: "/tmp/state.sqlite"))
            #expect(parameters.consumer == "billing-v2")
            #expect(parameters.stateFile?.path == "/tmp/state.sqlite")
            #expect(parameters.start == .since(try #require(JobTimestamp("2026-12-01T08:00:00Z"))))
            #expect(parameters.maximumAttempts == 3)
            #expect(parameters.retryDelay == .milliseconds(250))
            // Without --consumer nothing is stored, whatever the cache options say.
            let plain = try #require(
                try Jobwatch.parseAsRoot(["follow", "--url", "http://h", "--key-file", path]) as? Jobwatch.Follow)
            let ephemeral = try plain.parameters(cacheFile: URL(fileURLWithPath: "/tmp/cache.sqlite"))
            #expect(ephemeral.consumer == nil && ephemeral.stateFile == nil)
            #expect(ephemeral.start == .now && ephemeral.maximumAttempts == 5 && ephemeral.retryDelay == .seconds(1))
        }
    }

    @Test("follow --fleet parses --holder and --lease (default 30 s, the library's holder by default)")
    func parsesFleet() throws {
        try self.withKeyFile { path in
            let base = ["follow", "--url", "http://127.0.0.1:54321", "--key-file", path, "--consumer", "router"]
            let command = try Jobwatch.parseAsRoot(base + ["--fleet", "--holder", "host-1.a", "--lease", "3"])
            let follow = try #require(command as? Jobwatch.Follow)
            let parameters = try follow.parameters(cacheFile: URL(fileURLWithPath: "/tmp/state.sqlite"))
            #expect(parameters.fleet == FollowFleet(holder: "host-1.a", lease: .seconds(3)))
            let defaults = try #require(try Jobwatch.parseAsRoot(base + ["--fleet"]) as? Jobwatch.Follow)
            let settings = try defaults.parameters(cacheFile: URL(fileURLWithPath: "/tmp/state.sqlite"))
            #expect(settings.fleet == FollowFleet(holder: nil, lease: .seconds(30)))
            let alone = try #require(try Jobwatch.parseAsRoot(base) as? Jobwatch.Follow)
            #expect(try alone.parameters(cacheFile: URL(fileURLWithPath: "/tmp/state.sqlite")).fleet == nil)
        }
    }

    @Test("--filter takes PostgREST's eq, neq, in and is.null, repeatable; the consumer's scope matches them all")
    func filters() throws {
        try self.withKeyFile { path in
            let command = try Jobwatch.parseAsRoot([
                "follow", "--url", "http://127.0.0.1:54321", "--key-file", path, "--filter", "tenant_id=eq.42",
                "--filter", "status=in.(completed,failed)", "--filter", "error=is.null", "--filter", "kind=neq.test",
            ])
            let follow = try #require(command as? Jobwatch.Follow)
            let parameters = try follow.parameters(cacheFile: nil)
            #expect(
                parameters.filters == [
                    PostgRESTFilter("tenant_id", .eq("42")), PostgRESTFilter("status", .in(["completed", "failed"])),
                    PostgRESTFilter("error", .isNull), PostgRESTFilter("kind", .neq("test")),
                ])
        }
    }

    @Test("--since takes beginning, now or an ISO 8601 time")
    func since() throws {
        #expect(try FollowStart(argument: "beginning") == .beginning)
        #expect(try FollowStart(argument: "NOW") == .now)
        let eight = try #require(JobTimestamp("2026-12-01T08:00:00Z"))
        #expect(try FollowStart(argument: "2026-12-01T09:00:00+01:00") == .since(eight))
        for bad in ["", "yesterday", "2026-13-01T00:00:00Z", "12:00", "-1"] {
            #expect(throws: JobwatchError.self, "\(bad)") { try FollowStart(argument: bad) }
        }
    }

    @Test("Bad follow options are usage errors: exit 2, a clear message, nothing on stdout, no key")
    func usageErrors() throws {
        try self.withKeyFile { path in
            let connection = ["--url", "http://127.0.0.1:54321", "--key-file", path]
            let cases: [([String], String)] = [
                (["--since", "yesterday"], "--since 'yesterday' is not a time"),
                (["--dead-letters"], "--dead-letters needs --consumer NAME"),
                (["--dead-letters", "--consumer", "c", "--exec", "true"], "--dead-letters only lists"),
                (["--consumer", "c", "--no-cache"], "--consumer keeps its state in the cache file"),
                (["--consumer", "two words"], "is not a consumer name"),
                (["--consumer", ""], "is not a consumer name"),
                (["--max-attempts", "0"], "--max-attempts must be"),
                (["--retry-delay", "0"], "--retry-delay must be"),
                (["--retry-delay", "nan"], "--retry-delay must be"),
                (["--exec", " "], "--exec needs a command"),
                (["--source", "status-endpoint"], "follow needs --source supabase"),
                (["--fleet"], "--fleet needs --consumer NAME"),
                (["--holder", "a"], "--holder and --lease need --fleet"),
                (["--consumer", "c", "--lease", "10"], "--holder and --lease need --fleet"),
                (["--consumer", "c", "--fleet", "--lease", "2"], "--lease must be a whole number of seconds from 3"),
                (["--consumer", "c", "--fleet", "--lease", "86401"], "--lease must be a whole number"),
                (["--consumer", "c", "--fleet", "--lease", "2.5"], "--lease"),
                (["--consumer", "c", "--fleet", "--holder", "a b"], "is not a holder name"),
                (["--consumer", "c", "--fleet", "--holder", ""], "is not a holder name"),
                (["--consumer", "c", "--fleet", "--dead-letters"], "--dead-letters only lists; it takes no --fleet"),
                (["--filter", "tenant_id"], "is not COLUMN=OP.VALUE"),
                (["--filter", "tenant id=eq.4"], "is not COLUMN=OP.VALUE"),
                (["--filter", "tenant_id=gt.4"], "the operator must be eq, neq, in or is.null"),
                (["--filter", "tenant_id=in.()"], "in.(…) takes 1 to 100 values"),
                (["--bogus"], "Unknown option"),
            ]
            for (arguments, message) in cases {
                let capture = CapturedOutput()
                do {
                    _ = try Jobwatch.parseAsRoot(["follow"] + connection + arguments)
                    Issue.record("\(arguments) should not parse")
                } catch {
                    #expect(Jobwatch.report(error, writer: capture.writer) == 2, "\(arguments)")
                    #expect(capture.text(.stderr).contains(message), "\(arguments): \(capture.text(.stderr))")
                    #expect(capture.text(.stdout).isEmpty)
                    #expect(!capture.text(.stderr).contains(Self.secret))
                }
            }
        }
    }

    @Test("An outcome record is a final record with event outcome, consumer and delivery")
    func outcomeRecord() throws {
        var outcome = Self.outcome(Fixture.a, .completed, delivery: 2)
        outcome.line.transport = .live
        outcome.line.elapsed = .milliseconds(1234)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(JSONLines.outcomeLine(outcome).utf8)) as? [String: Any])
        let final = try #require(
            try JSONSerialization.jsonObject(with: Data(JSONLines.line(for: .final(outcome.line)).utf8))
                as? [String: Any])
        #expect(Set(object.keys) == Set(final.keys).union(["consumer", "holder", "delivery"]))
        #expect(object["event"] as? String == "outcome")
        #expect(object["outcome"] as? String == "completed")
        #expect(object["consumer"] as? String == "billing")
        #expect(object["delivery"] as? Int == 2)
        #expect(object["transport"] as? String == "realtime")
        #expect(object["elapsed_ms"] as? Int == 1234)
        #expect(object["holder"] is NSNull, "no holder without --fleet")
        outcome.holder = "replica-a"
        #expect(JSONLines.outcomeLine(outcome).contains(#""holder":"replica-a""#))
        outcome.consumer = nil
        #expect(JSONLines.outcomeLine(outcome).contains(#""consumer":null"#))
        // A deletion of a job never seen: the job fields are null.
        let deleted = FollowedOutcome(line: JobLine(id: Fixture.b, outcome: .deleted), consumer: nil, delivery: 1)
        #expect(JSONLines.outcomeLine(deleted).contains(#""status":null"#))
        #expect(JSONLines.outcomeLine(deleted).contains(#""outcome":"deleted""#))
    }

    @Test("The runner acknowledges each outcome after its line is written, and flushes at the end")
    func acknowledgesAfterWrite() async {
        let capture = CapturedOutput()
        let session = ScriptedFollowSession(
            outcomes: [Self.outcome(Fixture.a, .completed), Self.outcome(Fixture.b, .failed)],
            failure: JobwatchError(.unreachable, "the consumer went away"))
        let status = await self.run(session, writer: capture.writer)
        #expect(status == .unreachable)
        let lines = capture.lines(.stdout)
        #expect(lines.count == 2)
        #expect(lines.allSatisfy { $0.contains(#""event":"outcome""#) && $0.contains(#""transport":"realtime""#) })
        #expect(session.log.all == ["ack \(Fixture.a.rawValue)", "ack \(Fixture.b.rawValue)", "flush"])
        #expect(capture.text(.stderr).contains("jobwatch: error: the consumer went away"))
    }

    @Test("A closed stdout (EPIPE) ends the follow with exit 0 and leaves the unwritten outcome unacknowledged")
    func brokenPipe() async {
        let written = NIOLockedValueBox(0)
        let writer = OutputWriter(checkedSink: { stream, _ in
            guard stream == .stdout else { return .written }
            let count = written.withLockedValue { count in
                count += 1
                return count
            }
            return count == 1 ? .written : .failed(errno: EPIPE)
        })
        let session = ScriptedFollowSession(
            outcomes: [
                Self.outcome(Fixture.a, .completed), Self.outcome(Fixture.b, .completed),
                Self.outcome(Fixture.c, .failed),
            ],
            failure: nil)
        let status = await self.run(session, writer: writer)
        #expect(status == .completed)
        #expect(session.log.all == ["ack \(Fixture.a.rawValue)", "flush"])
    }

    @Test("--exec: exit 0 acknowledges, another status rejects with it as the reason; the record is on stdin")
    func exec() async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-exec-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let log = directory.appendingPathComponent("stdin.log").path
        let capture = CapturedOutput()
        let session = ScriptedFollowSession(
            outcomes: [Self.outcome(Fixture.a, .completed), Self.outcome(Fixture.b, .failed)],
            failure: JobwatchError(.unreachable, "done"))
        let executor = FollowCommandExecutor(
            command: #"cat >> '\#(log)'; test "$JOBWATCH_OUTCOME" = completed || exit 4"#)
        let status = await self.run(session, writer: capture.writer, executor: executor)
        #expect(status == .unreachable)
        #expect(
            session.log.all == [
                "ack \(Fixture.a.rawValue)", "reject \(Fixture.b.rawValue) exit status 4", "flush",
            ])
        #expect(capture.text(.stdout).isEmpty)
        let stdin = try String(contentsOfFile: log, encoding: .utf8).split(separator: "\n")
        #expect(stdin.count == 2)
        #expect(stdin.first?.contains(#""job_id":"\#(Fixture.a.rawValue)""#) == true)
        #expect(capture.text(.stderr).contains("--exec failed (exit status 4, delivery 1)"))
    }

    @Test("Human lines: an outcome (with its delivery after the first) and the dead-letter table")
    func humanLines() {
        let format = HumanFormat()
        #expect(
            format.followLine(Self.outcome(Fixture.a, .completed))
                == "✓ \(Fixture.a.rawValue)  completed  invoice, confidence 97%, 10 pages, 2 failed (pages 3, 7)")
        #expect(
            format.followLine(Self.outcome(Fixture.b, .failed, delivery: 2))
                == "✗ \(Fixture.b.rawValue)  failed     Failed to process PDF: File appears to be corrupted  "
                + "(delivery 2)")
        let letter = DeadLetterView(
            consumer: "billing", id: Fixture.c, outcome: .failed, attempts: 5, reason: "exit status 1\u{1B}[31m",
            at: "2026-11-29T07:52:10.114302Z", snapshot: nil)
        let table = format.deadLetterTable([letter], consumer: "billing")
        #expect(table.count == 2)
        #expect(table[0].hasPrefix("JOB ID"))
        #expect(table[1] == "\(Fixture.c.rawValue)  5         2026-11-29T07:52:10.114302Z  exit status 1 [31m")
        #expect(format.deadLetterTable([], consumer: "billing") == ["no dead letters for consumer billing"])
    }

    @Test("The summary line and the outcome rate")
    func summary() {
        var rate = OutcomeRate()
        rate.record(at: .seconds(1))
        rate.record(at: .milliseconds(1500))
        rate.record(at: .seconds(30))
        #expect(rate.count(at: .seconds(31)) == 3)
        #expect(rate.count(at: .seconds(61)) == 1)
        #expect(rate.count(at: .seconds(200)) == 0)
        #expect(
            FollowOutput.summary(recent: 3, transport: .live, pending: 2)
                == "jobwatch follow: 3 outcomes in the last minute · realtime · pending 2")
    }

    /// Runs a ``FollowRunner`` over `session` with JSON data and no progress, and returns its exit status.
    private func run(
        _ session: ScriptedFollowSession,
        writer: OutputWriter,
        executor: FollowCommandExecutor? = nil
    ) async -> jobwatch.ExitStatus? {
        let result = WatchResult()
        let runner = FollowRunner(
            session: session,
            executor: executor,
            tickInterval: nil,
            clock: ContinuousClock(),
            output: FollowOutput(
                writer: writer, mode: OutputMode(data: .json, progress: .plain), format: HumanFormat(), width: 80),
            result: result
        )
        await runner.run()
        return result.status
    }
}
