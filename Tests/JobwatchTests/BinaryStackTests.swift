import Foundation
import GRDB
import JobSync
import SupabaseLocal
import Testing

@testable import jobwatch

/// The built `jobwatch` binary against an in-process SupabaseLocal (port 0, 127.0.0.1): exit codes, JSON Lines,
/// timeouts, bad keys, unreachable services, the result cache and the admin commands.
@Suite("jobwatch binary against SupabaseLocal")
struct BinaryStackTests {
    static let invoice = LocalJSON.object([
        "classification": .string("invoice"),
        "confidence": .double(0.97),
        "total_pages": .int(3),
        "page_results": .array([
            .object([
                "page": .int(1), "classification": .string("invoice"), "confidence": .double(0.9),
                "success": .bool(true),
            ]),
            .object([
                "page": .int(2), "classification": .string("invoice"), "confidence": .double(0.8),
                "success": .bool(false),
            ]),
            .object([
                "page": .int(3), "classification": .string("invoice"), "confidence": .double(0.7),
                "success": .bool(true),
            ]),
        ]),
    ])

    /// Runs `body` with a fresh local stack and the environment that points the CLI at it.
    private func withStack(_ body: (SupabaseLocalStack, [String: String]) async throws -> Void) async throws {
        try await SupabaseLocal.withRunning { stack in
            let environment = [
                "SUPABASE_URL": stack.baseURL.absoluteString,
                "SUPABASE_ANON_KEY": stack.anonKey,
            ]
            try await body(stack, environment)
        }
    }

    /// Inserts a job and returns its id.
    private func insert(_ stack: SupabaseLocalStack, _ row: TableRow) async throws -> String {
        let stored = try await stack.backend.insert(row)
        return try #require(stored["id"]?.stringValue)
    }

    /// Parses JSON Lines.
    private func records(_ result: BinaryRunner.Result) throws -> [[String: Any]] {
        try result.stdoutLines.map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
        }
    }

    /// A running `jobwatch`: its pid, its stdout lines as they come, and its pending result.
    struct Running {
        let pid: Int32
        var lines: AsyncStream<String>.Iterator
        let result: Task<BinaryRunner.Result, any Error>

        /// Waits for a stdout line containing `text` (any line when `text` is empty).
        mutating func waitFor(_ text: String) async throws {
            while let line = await self.lines.next() {
                if text.isEmpty || line.contains(text) { return }
            }
            Issue.record("jobwatch ended without writing \(text)")
        }
    }

    /// Starts `jobwatch arguments…` and returns once it has written its first stdout line.
    private func started(_ arguments: [String], environment: [String: String]) async throws -> Running {
        let (lines, continuation) = AsyncStream<String>.makeStream()
        let (pids, pidContinuation) = AsyncStream<Int32>.makeStream()
        let result = Task {
            defer { continuation.finish() }
            return try await BinaryRunner.run(
                arguments,
                environment: environment,
                onStart: { pidContinuation.yield($0) },
                onStdoutLine: { continuation.yield($0) }
            )
        }
        var pidIterator = pids.makeAsyncIterator()
        let pid = try #require(await pidIterator.next())
        var running = Running(pid: pid, lines: lines.makeAsyncIterator(), result: result)
        try await running.waitFor("")
        return running
    }

    @Test("A completed job: exit 0; JSON Lines end with a final record carrying the result, then end")
    func completed() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("completed"), "result": Self.invoice])
            let result = try await BinaryRunner.run(["watch", id], environment: environment)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let records = try self.records(result)  // stdout is a file: JSON by default
            let final = try #require(records.first { $0["event"] as? String == "final" })
            #expect(final["outcome"] as? String == "completed")
            let summary = try #require(final["result"] as? [String: Any])
            #expect(summary["classification"] as? String == "invoice")
            #expect(summary["pages"] as? Int == 3)
            #expect(summary["failed_pages"] as? [Int] == [2])
            #expect(records.last?["event"] as? String == "end")
            #expect(records.last?["exit_code"] as? Int == 0)
            #expect(!result.stdout.contains(stack.anonKey) && !result.stderr.contains(stack.anonKey))
        }
    }

    @Test("--schema app: the jobs table in schema app is watched (REST Accept-Profile, Realtime bindings)")
    func schemaApp() async throws {
        var configuration = SupabaseLocalConfiguration()
        var table = TableDescriptor.jobs
        table.schema = "app"
        configuration.backend = try InMemoryJobsBackend(table: table)
        try await SupabaseLocal.withRunning(configuration) { stack in
            let environment = ["SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey]
            let id = try await self.insert(stack, ["status": .string("completed"), "result": Self.invoice])
            let result = try await BinaryRunner.run(["watch", "--schema", "app", id], environment: environment)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            let final = try #require(try self.records(result).first { $0["event"] as? String == "final" })
            #expect(final["outcome"] as? String == "completed")
            // Without --schema the default (public) schema has no jobs table: a clear error, not "job not found".
            let public_ = try await BinaryRunner.run(["watch", "--timeout", "3", id], environment: environment)
            #expect(public_.status == 5, "stderr: \(public_.stderr)")
            #expect(public_.stderr.contains("no such table"))
        }
    }

    @Test("A failed job: exit 1 and its error; --no-json prints the human summary")
    func failed() async throws {
        try await self.withStack { stack, environment in
            let message = "Invalid conditions format. Must be a valid JSON string."
            let id = try await self.insert(stack, ["status": .string("FAILED"), "error": .string(message)])
            let json = try await BinaryRunner.run(["watch", "--json", id], environment: environment)
            #expect(json.status == 1)
            #expect(
                try self.records(json).contains {
                    $0["event"] as? String == "final" && $0["error"] as? String == message
                }
            )
            let human = try await BinaryRunner.run(["watch", "--no-json", id], environment: environment)
            #expect(human.status == 1)
            #expect(human.stdout.contains("failed     \(message)"))
            #expect(human.stdout.contains("1 failed · exit 1"))
        }
    }

    @Test("A job that does not exist: exit 4, outcome not_found")
    func notFound() async throws {
        try await self.withStack { _, environment in
            let result = try await BinaryRunner.run(["watch", UUID().uuidString], environment: environment)
            #expect(result.status == 4)
            #expect(try self.records(result).contains { $0["outcome"] as? String == "not_found" })
        }
    }

    @Test("A job deleted while watched: exit 4, outcome deleted")
    func deleted() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("processing")])
            var watch = try await self.started(["watch", "--timeout", "30", id], environment: environment)
            try await watch.waitFor(#""event":"job""#)
            _ = try await stack.backend.delete(primaryKey: .string(id))
            let result = try await watch.result.value
            #expect(result.status == 4, "stdout: \(result.stdout)")
            #expect(try self.records(result).contains { $0["outcome"] as? String == "deleted" })
        }
    }

    @Test("A job that changes while watched: its progress and final state arrive; exit 0")
    func followsChanges() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("queued")])
            var watch = try await self.started(["watch", "--timeout", "30", id], environment: environment)
            try await watch.waitFor(#""status":"queued""#)
            _ = try await stack.backend.update(
                primaryKey: .string(id),
                set: ["status": .string("PROCESSING"), "progress": .string("Processing page 1 of 3")]
            )
            try await watch.waitFor(#""status":"processing""#)
            _ = try await stack.backend.update(
                primaryKey: .string(id),
                set: ["status": .string("completed"), "result": Self.invoice]
            )
            let result = try await watch.result.value
            #expect(result.status == 0, "stdout: \(result.stdout)")
            let statuses = try self.records(result).filter { $0["event"] as? String == "job" }.compactMap {
                $0["status"] as? String
            }
            #expect(statuses.first == "queued")
            #expect(statuses.last == "completed")
        }
    }

    @Test("--timeout: a job that never finishes ends with exit 3 and outcome timeout")
    func timeout() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("processing"), "progress": .string("page 1")])
            // 15 s: enough for a sanitizer-instrumented binary to start and read the job before the timeout, with
            // the whole suite starting at once on 2 cores (5 s was not, once under ThreadSanitizer: no progress read).
            let result = try await BinaryRunner.run(["watch", "--timeout", "15", id], environment: environment)
            #expect(result.status == 3)
            #expect(!result.killed)
            let final = try #require(try self.records(result).first { $0["event"] as? String == "final" })
            #expect(final["outcome"] as? String == "timeout")
            #expect(final["progress"] as? String == "page 1")
        }
    }

    @Test("SIGINT and SIGTERM end the watch cleanly: exit 130, final records and the end record are written")
    func interrupted() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("processing")])
            for signal in [SIGINT, SIGTERM] {
                let watch = try await self.started(["watch", id], environment: environment)
                kill(watch.pid, signal)
                let result = try await watch.result.value
                #expect(result.status == 130, "signal \(signal), stderr: \(result.stderr)")
                #expect(!result.killed)
                let records = try self.records(result)
                #expect(records.contains { $0["outcome"] as? String == "interrupted" })
                #expect(records.last?["event"] as? String == "end")
            }
        }
    }

    @Test("--verbose logs never contain the key")
    func verboseHidesKey() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("completed")])
            let result = try await BinaryRunner.run(["watch", "--verbose", id], environment: environment)
            #expect(result.status == 0)
            #expect(result.stderr.contains("debug"))
            #expect(!result.stderr.contains(stack.anonKey) && !result.stdout.contains(stack.anonKey))
        }
    }

    @Test("A wrong key: exit 5 with a clear message that does not contain the key")
    func wrongKey() async throws {
        try await self.withStack { _, environment in
            var wrong = environment
            wrong["SUPABASE_ANON_KEY"] = "sb_publishable_WRONG-KEY-MUST-NOT-BE-PRINTED"
            let result = try await BinaryRunner.run(
                ["watch", "--timeout", "20", UUID().uuidString],
                environment: wrong
            )
            #expect(result.status == 5)
            #expect(result.stderr.contains("rejected the key") || result.stdout.contains("rejected the key"))
            #expect(!result.stdout.contains("WRONG-KEY") && !result.stderr.contains("WRONG-KEY"))
        }
    }

    @Test("An unreachable URL: exit 5 well within --timeout, with the URL but no key")
    func unreachable() async throws {
        let result = try await BinaryRunner.run(
            ["watch", "--timeout", "20", UUID().uuidString],
            environment: ["SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_ANON_KEY": "sb_secret_UNREACHABLE"],
            limit: .seconds(30)
        )
        #expect(result.status == 5)
        #expect(!result.killed)
        #expect(result.stdout.contains("cannot reach the service at http://127.0.0.1:9"))
        #expect(!result.stdout.contains("UNREACHABLE") && !result.stderr.contains("UNREACHABLE"))
    }

    @Test("status answers final jobs from the result cache, even once the row is gone")
    func statusCache() async throws {
        try await self.withStack { stack, environment in
            let id = try await self.insert(stack, ["status": .string("completed"), "result": Self.invoice])
            let cache = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-cache-\(UUID()).sqlite")
            defer { try? FileManager.default.removeItem(at: cache) }
            let first = try await BinaryRunner.run(["status", "--cache", cache.path, id], environment: environment)
            #expect(first.status == 0)
            let record = try #require(try self.records(first).first)
            #expect(record["event"] as? String == "status")
            #expect(record["found"] as? Bool == true)
            _ = try await stack.backend.delete(primaryKey: .string(id))
            let cached = try await BinaryRunner.run(["status", "--cache", cache.path, id], environment: environment)
            #expect(cached.status == 0)
            #expect(try self.records(cached).first?["status"] as? String == "completed")
            let uncached = try await BinaryRunner.run(["status", "--no-cache", id], environment: environment)
            #expect(uncached.status == 4)
            #expect(try self.records(uncached).first?["found"] as? Bool == false)
        }
    }

    @Test("two processes share one cache: jobwatch waits for another process's write lock instead of dropping it")
    func sharedCache() async throws {
        try await self.withStack { stack, environment in
            var ids: [String] = []
            for _ in 0..<20 {
                ids.append(try await self.insert(stack, ["status": .string("completed"), "result": Self.invoice]))
            }
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-\(UUID())")
            defer { try? FileManager.default.removeItem(at: directory) }
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            let cache = directory.appendingPathComponent("cache.sqlite").path
            _ = try SQLiteJobPersistence(path: cache)  // created at the current schema
            // Another process (this one) holds the write lock for 1.5 s while jobwatch starts and writes.
            let holder = try DatabaseQueue(path: cache)
            let locked = DispatchSemaphore(value: 0)
            let lockHolder = Thread {
                try? holder.inTransaction(.immediate) { _ in
                    locked.signal()
                    Thread.sleep(forTimeInterval: 1.5)
                    return .commit
                }
            }
            lockHolder.start()
            locked.wait()
            let result = try await BinaryRunner.run(["status", "--cache", cache] + ids, environment: environment)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(!result.stderr.contains("cache unavailable"), "stderr: \(result.stderr)")
            let persisted = try SQLiteJobPersistence(path: cache).load()
            #expect(Set(persisted.jobs.map(\.0.id.rawValue)) == Set(ids))
        }
    }

    @Test("--source status-endpoint reads GET /classify/{id} with JOBSYNC_API_KEY")
    func statusEndpoint() async throws {
        try await self.withStack { stack, _ in
            let id = try await self.insert(stack, ["status": .string("Completed"), "result": Self.invoice])
            let environment = [
                "JOBSYNC_BASE_URL": stack.baseURL.absoluteString,
                "JOBSYNC_API_KEY": stack.configuration.classifyAPIKey,
            ]
            let result = try await BinaryRunner.run(
                ["watch", "--source", "status-endpoint", id],
                environment: environment
            )
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(try self.records(result).contains { $0["outcome"] as? String == "completed" })
        }
    }

    @Test("admin create-jobs starts simulated jobs that watch then follows to the end")
    func adminCreateJobs() async throws {
        try await self.withStack { stack, environment in
            var admin = environment
            admin["SUPABASE_SERVICE_KEY"] = stack.serviceKey
            let created = try await BinaryRunner.run(
                ["admin", "create-jobs", "--failure-rate", "0", "--page-ms", "20", "--queue-ms", "20", "3"],
                environment: admin
            )
            #expect(created.status == 0, "stderr: \(created.stderr)")
            let ids = created.stdoutLines
            #expect(ids.count == 3)
            let watched = try await BinaryRunner.run(["watch", "--timeout", "30"] + ids, environment: environment)
            #expect(watched.status == 0, "stdout: \(watched.stdout)")
            let fault = try await BinaryRunner.run(["admin", "fault", "reset"], environment: admin)
            #expect(fault.status == 0)
            #expect(fault.stdout.contains("open_sockets"))
            let refused = try await BinaryRunner.run(
                ["admin", "fault", "reset"],
                environment: environment.merging(
                    ["SUPABASE_SERVICE_KEY": stack.anonKey]) { _, new in new }
            )
            #expect(refused.status == 5)
            #expect(refused.stderr.contains("rejected the service key"))
        }
    }
}
