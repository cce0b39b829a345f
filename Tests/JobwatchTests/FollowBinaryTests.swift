import Foundation
import GRDB
import JobSync
import NIOConcurrencyHelpers
import SupabaseLocal
import Testing

@testable import jobwatch

/// The built `jobwatch follow` against an in-process SupabaseLocal: durable consumers across clean stops and
/// SIGKILLs, `--exec` with redelivery and dead letters.
@Suite("jobwatch follow binary against SupabaseLocal")
struct FollowBinaryTests {
    /// A running `jobwatch follow`: its pid, the job ids of its outcome lines as they come, and its result.
    final class Run: Sendable {
        let pid: Int32
        let result: Task<BinaryRunner.Result, any Error>
        private let seen: NIOLockedValueBox<[String]>

        private init(pid: Int32, result: Task<BinaryRunner.Result, any Error>, seen: NIOLockedValueBox<[String]>) {
            self.pid = pid
            self.result = result
            self.seen = seen
        }

        /// The job ids of the outcome lines written so far, in order.
        var ids: [String] { self.seen.withLockedValue { $0 } }

        /// Starts `jobwatch arguments…` and returns once it runs.
        static func start(_ arguments: [String], environment: [String: String], limit: Duration = .seconds(80))
            async throws -> Run
        {
            let seen = NIOLockedValueBox<[String]>([])
            let (pids, pidContinuation) = AsyncStream<Int32>.makeStream()
            let result = Task {
                try await BinaryRunner.run(
                    arguments, environment: environment, limit: limit,
                    onStart: { pidContinuation.yield($0) },
                    onStdoutLine: { line in
                        if let id = FollowBinaryTests.outcomeID(line) { seen.withLockedValue { $0.append(id) } }
                    })
            }
            var iterator = pids.makeAsyncIterator()
            let pid = try #require(await iterator.next())
            return Run(pid: pid, result: result, seen: seen)
        }

        /// Waits until `condition` holds for the ids written so far (checked every 50 ms), at most `limit`.
        func waitUntil(limit: Duration = .seconds(30), _ condition: ([String]) -> Bool) async throws -> Bool {
            let deadline = ContinuousClock.now.advanced(by: limit)
            while ContinuousClock.now < deadline {
                if condition(self.ids) { return true }
                try await Task.sleep(for: .milliseconds(50))
            }
            return condition(self.ids)
        }

        /// Sends `signal` and waits for the process to end.
        func stop(_ signal: Int32) async throws -> BinaryRunner.Result {
            kill(self.pid, signal)
            return try await self.result.value
        }
    }

    /// The job id of an `outcome` line, `nil` for anything else.
    static func outcomeID(_ line: String) -> String? {
        guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any],
            object["event"] as? String == "outcome"
        else { return nil }
        return object["job_id"] as? String
    }

    /// The parsed outcome records of a run's stdout (every line must be one).
    private func outcomes(_ result: BinaryRunner.Result) throws -> [[String: Any]] {
        try result.stdoutLines.map { line in
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
            #expect(object["event"] as? String == "outcome", "\(line)")
            return object
        }
    }

    /// Runs `body` with a fresh local stack, the environment pointing the CLI at it, and a state file path.
    private func withStack(_ body: (SupabaseLocalStack, [String: String], String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-follow-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await SupabaseLocal.withRunning { stack in
            let environment = ["SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey]
            try await body(stack, environment, directory.appendingPathComponent("state.sqlite").path)
        }
    }

    /// Inserts a finished job and returns its id.
    private func insertFinished(_ stack: SupabaseLocalStack, failed: Bool = false) async throws -> String {
        let row: TableRow =
            failed
            ? ["status": .string("failed"), "error": .string("Failed to process PDF: File appears to be corrupted")]
            : ["status": .string("completed"), "result": BinaryStackTests.invoice]
        let stored = try await stack.backend.insert(row)
        return try #require(stored["id"]?.stringValue)
    }

    @Test("A durable consumer prints each outcome once across a clean restart, and those reached while it was down")
    func restart() async throws {
        try await self.withStack { stack, environment, state in
            var before: Set<String> = []
            for index in 0..<3 { before.insert(try await self.insertFinished(stack, failed: index == 1)) }
            let arguments = ["follow", "--consumer", "c1", "--json", "--since", "beginning", "--cache", state]
            let first = try await Run.start(arguments, environment: environment)
            #expect(try await first.waitUntil { Set($0) == before })
            let firstResult = try await first.stop(SIGTERM)
            #expect(firstResult.status == 0 && firstResult.uncaughtSignal == nil, "stderr: \(firstResult.stderr)")
            #expect(!firstResult.killed)
            let records = try self.outcomes(firstResult)
            #expect(records.count == 3)
            #expect(records.allSatisfy { $0["consumer"] as? String == "c1" && $0["delivery"] as? Int == 1 })
            #expect(records.filter { $0["outcome"] as? String == "failed" }.count == 1)
            #expect(!firstResult.stdout.contains(stack.anonKey) && !firstResult.stderr.contains(stack.anonKey))

            // Two jobs finish while nothing runs.
            var during: Set<String> = []
            for _ in 0..<2 { during.insert(try await self.insertFinished(stack)) }
            let second = try await Run.start(arguments, environment: environment)
            #expect(try await second.waitUntil { Set($0).isSuperset(of: during) })
            // Time for a repeat to show up, if there were one.
            try await Task.sleep(for: .seconds(2))
            let secondResult = try await second.stop(SIGINT)
            #expect(secondResult.status == 0, "stderr: \(secondResult.stderr)")
            let again = try self.outcomes(secondResult).compactMap { $0["job_id"] as? String }
            #expect(again.sorted() == during.sorted(), "the second run printed \(again)")
        }
    }

    // The crash test (issue 12's acceptance): 1,000 jobs finish at a steady rate (about 28 a second, inserted as
    // queued and finished later, or inserted finished) while `follow --consumer` is SIGKILLed at random moments
    // (after 1.5 to 4 s up, 0.3 to 1.5 s down, so jobs finish while it is down), 7 times; then a run that ends with
    // SIGTERM, and a last run that must print nothing.
    //
    // Bound on repeats: `follow` acknowledges an outcome right after its line is written, and the consumer writes
    // acknowledgements to the file in group commits, so a SIGKILL can lose at most the acknowledgements not yet
    // committed: of outcomes that run printed, and at most `maximumUnacknowledged` (1,000) of them, since the
    // consumer holds no more outcomes than that. An outcome printed by a run that then stopped cleanly (SIGTERM:
    // every acknowledgement flushed before exit) is never printed again. No run prints an outcome twice (nothing
    // is rejected without --exec). So: every repeat of an outcome follows a print by a SIGKILLed run, and each kill
    // causes at most min(printed by that run, 1,000) repeats.
    @Test("Crash test: SIGKILLed at random moments, follow --consumer prints every outcome, repeats only after a kill")
    func crashes() async throws {
        try await self.withStack { stack, environment, state in
            let total = 1000
            let kills = 7
            let running = NIOLockedValueBox(false)
            let finishedWhileDown = NIOLockedValueBox(0)
            let finished = NIOLockedValueBox<Set<String>>([])
            // The producer: every 35 ms one job is inserted queued and the oldest queued one finishes (every fifth
            // fails); every third tick, one more is inserted already finished.
            let producer = Task {
                var queued: [String] = []
                var made = 0
                var tick = 0
                while finished.withLockedValue({ $0.count }) < total {
                    tick += 1
                    if made < total {
                        let stored = try await stack.backend.insert(["status": .string("queued")])
                        queued.append(try #require(stored["id"]?.stringValue))
                        made += 1
                    }
                    if made < total && tick % 3 == 0 {
                        let id = try await self.insertFinished(stack, failed: tick % 5 == 0)
                        made += 1
                        self.record(id, finished: finished, running: running, down: finishedWhileDown)
                    }
                    if queued.count > 20 || (made == total && !queued.isEmpty) {
                        let id = queued.removeFirst()
                        let values: TableRow =
                            tick % 5 == 0
                            ? ["status": .string("failed"), "error": .string("Failed to upload file to storage.")]
                            : ["status": .string("completed"), "result": BinaryStackTests.invoice]
                        _ = try await stack.backend.update(primaryKey: .string(id), set: values)
                        self.record(id, finished: finished, running: running, down: finishedWhileDown)
                    }
                    try await Task.sleep(for: .milliseconds(35))
                }
            }
            defer { producer.cancel() }
            let arguments = ["follow", "--consumer", "crash", "--json", "--since", "beginning", "--cache", state]
            var runs: [(ids: [String], result: BinaryRunner.Result, killed: Bool)] = []
            var generator = SystemRandomNumberGenerator()
            for _ in 0..<kills {
                running.withLockedValue { $0 = true }
                let run = try await Run.start(arguments, environment: environment)
                try await Task.sleep(for: .milliseconds(Int64.random(in: 1500...4000, using: &generator)))
                let result = try await run.stop(SIGKILL)
                running.withLockedValue { $0 = false }
                // Each kill fired: the process ended by SIGKILL, not by the watchdog or on its own.
                #expect(result.uncaughtSignal == SIGKILL && !result.killed, "stderr: \(result.stderr)")
                runs.append((try self.outcomes(result).compactMap { $0["job_id"] as? String }, result, true))
                try await Task.sleep(for: .milliseconds(Int64.random(in: 300...1500, using: &generator)))
            }
            // The clean run: until every outcome is printed (by some run), then SIGTERM.
            running.withLockedValue { $0 = true }
            let clean = try await Run.start(arguments, environment: environment)
            let printedBefore = Set(runs.flatMap(\.ids))
            let complete = try await clean.waitUntil(limit: .seconds(45)) { ids in
                let all = finished.withLockedValue { $0 }
                return all.count == total && printedBefore.union(ids).isSuperset(of: all)
            }
            #expect(complete, "not every outcome was printed in time")
            try await producer.value
            // When the killed runs printed everything, `complete` holds at once: give the clean run time to start
            // (a SIGTERM before its handlers exist ends any process by the signal; this test is about the stop of a
            // running consumer), as the last run below gets.
            try await Task.sleep(for: .seconds(3))
            let cleanResult = try await clean.stop(SIGTERM)
            #expect(cleanResult.status == 0 && cleanResult.uncaughtSignal == nil, "stderr: \(cleanResult.stderr)")
            runs.append((try self.outcomes(cleanResult).compactMap { $0["job_id"] as? String }, cleanResult, false))
            // After a clean stop with everything acknowledged, a new run has nothing to print.
            let last = try await Run.start(arguments, environment: environment)
            try await Task.sleep(for: .seconds(3))
            let lastResult = try await last.stop(SIGTERM)
            #expect(lastResult.status == 0, "stderr: \(lastResult.stderr)")
            runs.append((try self.outcomes(lastResult).compactMap { $0["job_id"] as? String }, lastResult, false))

            let all = finished.withLockedValue { $0 }
            #expect(all.count == total)
            #expect(finishedWhileDown.withLockedValue { $0 } > 0, "no job finished while follow was down")
            // Every outcome printed at least once.
            let printed = Set(runs.flatMap(\.ids))
            #expect(printed.isSuperset(of: all), "\(all.subtracting(printed).count) outcomes never printed")
            #expect(printed.isSubset(of: all), "outcomes of jobs that did not finish")
            #expect(runs.last?.ids.isEmpty == true, "the run after the clean stop printed \(runs.last?.ids ?? [])")
            var repeats = 0
            for (index, run) in runs.enumerated() {
                #expect(Set(run.ids).count == run.ids.count, "run \(index) printed an outcome twice")
                let later = Set(runs[(index + 1)...].flatMap(\.ids))
                let repeated = Set(run.ids).intersection(later)
                repeats += repeated.count
                if run.killed {
                    #expect(repeated.count <= min(run.ids.count, 1000), "run \(index): \(repeated.count) repeats")
                } else {
                    // Printed by a run that then stopped cleanly: never printed again.
                    #expect(repeated.isEmpty, "run \(index) stopped cleanly, yet \(repeated.count) were printed again")
                }
            }
            print(
                "crash test: \(total) outcomes, \(kills) kills, \(runs.map(\.ids.count)) printed per run, "
                    + "\(repeats) repeats, \(finishedWhileDown.withLockedValue { $0 }) finished while down")
        }
    }

    /// Notes a finished job, and whether follow was down when it finished.
    private func record(
        _ id: String,
        finished: NIOLockedValueBox<Set<String>>,
        running: NIOLockedValueBox<Bool>,
        down: NIOLockedValueBox<Int>
    ) {
        finished.withLockedValue { _ = $0.insert(id) }
        if !running.withLockedValue({ $0 }) { down.withLockedValue { $0 += 1 } }
    }

    @Test("--exec: a failed command redelivers the outcome (delivery 2); one that always fails makes a dead letter")
    func exec() async throws {
        try await self.withStack { stack, environment, state in
            let flaky = try await self.insertFinished(stack)
            let broken = try await self.insertFinished(stack, failed: true)
            let fine = try await self.insertFinished(stack)
            let log = URL(fileURLWithPath: state).deletingLastPathComponent().appendingPathComponent("exec.log").path
            // Appends the record; fails the first delivery of `flaky` and every delivery of `broken`.
            let command = """
                cat >> '\(log)'; case "$JOBWATCH_JOB_ID" in \
                \(flaky)) test "$JOBWATCH_DELIVERY" -ge 2 ;; \(broken)) exit 7 ;; *) exit 0 ;; esac
                """
            let arguments = [
                "follow", "--consumer", "router", "--since", "beginning", "--cache", state, "--exec", command,
                "--max-attempts", "3", "--retry-delay", "0.2",
            ]
            let run = try await Run.start(arguments, environment: environment)
            let records = { () -> [[String: Any]] in
                let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
                return text.split(separator: "\n").compactMap {
                    try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
                }
            }
            let deadline = ContinuousClock.now.advanced(by: .seconds(30))
            while ContinuousClock.now < deadline, records().filter({ $0["job_id"] as? String == broken }).count < 3 {
                try await Task.sleep(for: .milliseconds(100))
            }
            // The dead-letter report comes within a second of the last rejection.
            try await Task.sleep(for: .seconds(2))
            let result = try await run.stop(SIGTERM)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(result.stdout.isEmpty, "with --exec the records go to the command")
            let seen = records()
            let deliveries = { (id: String) in
                seen.filter { $0["job_id"] as? String == id }.compactMap { $0["delivery"] as? Int }
            }
            #expect(deliveries(flaky) == [1, 2])
            #expect(deliveries(broken) == [1, 2, 3])
            #expect(deliveries(fine) == [1])
            #expect(
                result.stderr.contains(
                    "jobwatch: dead letter: job \(broken) (consumer router) after 3 attempts: exit status 7"))
            #expect(!result.stderr.contains("dead letter: job \(flaky)"))

            let listed = try await BinaryRunner.run(
                ["follow", "--dead-letters", "--consumer", "router", "--cache", state], environment: environment)
            #expect(listed.status == 0, "stderr: \(listed.stderr)")
            let letters = try listed.stdoutLines.map { line in
                try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            }
            #expect(letters.count == 1)
            #expect(letters.first?["event"] as? String == "dead_letter")
            #expect(letters.first?["job_id"] as? String == broken)
            #expect(letters.first?["attempts"] as? Int == 3)
            #expect(letters.first?["reason"] as? String == "exit status 7")
            #expect(letters.first?["outcome"] as? String == "failed")

            // Listing an unknown name lists nothing and does not register it as a consumer.
            let unknown = try await BinaryRunner.run(
                ["follow", "--dead-letters", "--consumer", "rooter", "--cache", state], environment: environment)
            #expect(unknown.status == 0 && unknown.stdout.isEmpty, "stderr: \(unknown.stderr)")
            let names = try await DatabaseQueue(path: state).read { db in
                try String.fetchAll(db, sql: "SELECT name FROM jobsync_consumers ORDER BY name")
            }
            #expect(names == ["router"])

            // Acknowledged and dead-lettered outcomes are not handed to the command again.
            let before = records().count
            let again = try await Run.start(arguments, environment: environment)
            try await Task.sleep(for: .seconds(2))
            let againResult = try await again.stop(SIGTERM)
            #expect(againResult.status == 0)
            #expect(records().count == before)
        }
    }
    @Test("A closed stdout ends follow with exit 0 and leaves the outcome it could not write for the next run")
    func closedStdout() async throws {
        try await self.withStack { stack, environment, state in
            let binary = try #require(BinaryRunner.executable, "jobwatch binary not found")
            let first = try await self.insertFinished(stack)
            let later = NIOLockedValueBox<String?>(nil)
            let inserted = NIOLockedValueBox<Task<Void, any Error>?>(nil)
            // `head -n 1` exits after the first outcome; the next write (of an outcome finished afterwards) fails
            // with EPIPE. bash reports jobwatch's own exit status.
            let script = """
                set -o pipefail; '\(binary.path)' follow --consumer pipe --json --since beginning --cache '\(state)' \
                | head -n 1; echo "jobwatch exit ${PIPESTATUS[0]}" >&2
                """
            let result = try await BinaryRunner.run(
                ["-c", script], environment: environment, executable: URL(fileURLWithPath: "/bin/bash"),
                onStdoutLine: { _ in
                    // head has written its one line and exits: finish another job.
                    inserted.withLockedValue { task in
                        task = Task {
                            try await Task.sleep(for: .milliseconds(300))
                            later.withLockedValue { $0 = "pending" }
                            let id = try await self.insertFinished(stack)
                            later.withLockedValue { $0 = id }
                        }
                    }
                })
            try await inserted.withLockedValue { $0 }?.value
            #expect(!result.killed)
            #expect(result.stderr.contains("jobwatch exit 0"), "stderr: \(result.stderr)")
            #expect(FollowBinaryTests.outcomeID(result.stdoutLines.first ?? "") == first)
            let second = try #require(later.withLockedValue { $0 })
            // The next run prints only the outcome whose write failed.
            let arguments = ["follow", "--consumer", "pipe", "--json", "--cache", state]
            let run = try await Run.start(arguments, environment: environment)
            #expect(try await run.waitUntil { $0.contains(second) })
            try await Task.sleep(for: .seconds(1))
            let again = try await run.stop(SIGTERM)
            #expect(again.status == 0)
            #expect(try self.outcomes(again).compactMap { $0["job_id"] as? String } == [second])
        }
    }

    @Test("On a terminal: human lines on stdout and the one-line summary on stderr; SIGINT exits 0")
    func terminal() async throws {
        try await self.withStack { stack, environment, _ in
            let binary = try #require(BinaryRunner.executable, "jobwatch binary not found")
            let script = URL(fileURLWithPath: "/usr/bin/script")
            try #require(
                FileManager.default.isExecutableFile(atPath: script.path), "util-linux script is not installed")
            let id = try await self.insertFinished(stack)
            // 10 s: a sanitizer build on a loaded machine takes seconds to start and read the table.
            let command = "timeout --preserve-status -s INT 10 '\(binary.path)' follow --since beginning"
            let result = try await BinaryRunner.run(
                ["-q", "-e", "-c", command, "/dev/null"],
                environment: environment.merging(["COLUMNS": "120", "TERM": "xterm"]) { _, new in new },
                executable: script)
            let screen = result.stdout
            #expect(result.status == 0, "terminal output: \(screen.suffix(2000))")
            #expect(screen.contains("\(id)  completed  invoice, confidence 97%, 3 pages"), "\(screen)")
            #expect(screen.contains("jobwatch follow: 1 outcome in the last minute · "))
            #expect(screen.contains(" · pending 0"))
            #expect(!screen.contains(#""event":"outcome""#))
        }
    }
}
