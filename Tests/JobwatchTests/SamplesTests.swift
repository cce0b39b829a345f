import Foundation
import NIOConcurrencyHelpers
import SupabaseLocal
import Testing

/// The two programs in Samples/ run against a local stack, as a user would run them against a project.
@Suite("Samples against SupabaseLocal")
struct SamplesTests {
    /// A sample executable built next to `jobwatch`.
    private func sample(_ name: String) throws -> URL {
        let jobwatch = try #require(BinaryRunner.executable, "build the package first (swift build)")
        return jobwatch.deletingLastPathComponent().appendingPathComponent(name)
    }

    private let invoice: LocalJSON = .object([
        "classification": .string("Invoice"), "confidence": .number("0.93"), "total_pages": .number("2"),
        "processed_pages": .number("2"),
        "page_results": .array([
            .object(["page": .number("1"), "success": .bool(true), "classification": .string("Invoice"),
                     "confidence": .number("0.95")]),
            .object(["page": .number("2"), "success": .bool(true), "classification": .string("Invoice"),
                     "confidence": .number("0.91")]),
        ]),
    ])

    @Test("ClassificationPipeline routes a completed document by label and rejects a failed one with its error")
    func pipeline() async throws {
        let binary = try self.sample("ClassificationPipeline")
        try await SupabaseLocal.withRunning { stack in
            let done = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
            let failed = try await stack.backend.insert([
                "status": .string("failed"), "error": .string("Failed to process PDF: File appears to be corrupted"),
            ])
            let ids = try [done, failed].map { try #require($0["id"]?.stringValue) }
            let result = try await BinaryRunner.run(
                ids,
                environment: ["SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey],
                executable: binary)
            #expect(result.status == 1)
            #expect(result.stdoutLines.contains("route \(ids[0]) archive/invoice"))
            #expect(result.stdoutLines.contains("reject \(ids[1]) Failed to process PDF: File appears to be corrupted"))
        }
    }

    @Test("JobReactor reacts to each outcome once and shuts down gracefully")
    func reactor() async throws {
        let binary = try self.sample("JobReactor")
        try await SupabaseLocal.withRunning { stack in
            let done = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
            let failed = try await stack.backend.insert([
                "status": .string("failed"), "error": .string("Failed to upload file to storage. Please try again."),
            ])
            let ids = try [done, failed].map { try #require($0["id"]?.stringValue) }
            let result = try await BinaryRunner.run(
                [],
                environment: self.reactorEnvironment(stack, holder: "solo").merging(["JOBREACTOR_EXIT_AFTER": "2"]) {
                    $1
                },
                executable: binary)
            #expect(result.status == 0, "stderr: \(result.stderr)")
            #expect(result.stdoutLines.contains("completed \(ids[0]) Invoice [solo]"))
            #expect(
                result.stdoutLines.contains("failed \(ids[1]) Failed to upload file to storage. Please try again. [solo]"))
            #expect(result.stdoutLines.count == 2)
            // Handled as a fleet: each outcome claimed and acknowledged in the claims table.
            let claims = stack.claimStatistics
            #expect(claims.claimsGranted >= 2 && claims.acksAccepted >= 2 && claims.acksRefused == 0, "\(claims)")
        }
    }

    /// The environment of a JobReactor copy: a service key (the claim functions refuse the anon key), a 3 s lease.
    private func reactorEnvironment(_ stack: SupabaseLocalStack, holder: String) -> [String: String] {
        [
            "SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_SERVICE_KEY": stack.serviceKey,
            "JOBREACTOR_HOLDER": holder, "JOBREACTOR_LEASE": "3", "JOBREACTOR_START": "beginning",
        ]
    }

    /// A JobReactor copy running in the background: its pid, the outcome lines it printed, and its result.
    private struct Copy {
        let pid: Int32
        let lines: NIOLockedValueBox<[String]>
        let result: Task<BinaryRunner.Result, any Error>

        static func start(_ binary: URL, environment: [String: String]) async throws -> Copy {
            let lines = NIOLockedValueBox<[String]>([])
            let (pids, continuation) = AsyncStream<Int32>.makeStream()
            let result = Task {
                try await BinaryRunner.run(
                    [], environment: environment, executable: binary, limit: .seconds(90),
                    onStart: { continuation.yield($0) },
                    onStdoutLine: { line in lines.withLockedValue { $0.append(line) } })
            }
            var iterator = pids.makeAsyncIterator()
            return Copy(pid: try #require(await iterator.next()), lines: lines, result: result)
        }

        /// The job ids this copy handled.
        var ids: [String] { self.lines.withLockedValue { $0 }.compactMap { $0.split(separator: " ").dropFirst().first.map(String.init) } }
    }

    @Test("JobReactor as a fleet: two copies handle each outcome once; after one is SIGKILLed the other takes over")
    func reactorFleet() async throws {
        let binary = try self.sample("JobReactor")
        try await SupabaseLocal.withRunning { stack in
            let first = try await Copy.start(binary, environment: self.reactorEnvironment(stack, holder: "copy-1"))
            let second = try await Copy.start(binary, environment: self.reactorEnvironment(stack, holder: "copy-2"))
            func finish(_ count: Int) async throws -> Set<String> {
                var ids: Set<String> = []
                for _ in 0..<count {
                    let row = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
                    ids.insert(try #require(row["id"]?.stringValue))
                }
                return ids
            }
            func waitUntil(_ condition: () -> Bool) async throws {
                let deadline = ContinuousClock.now + .seconds(30)
                while !condition(), ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(50)) }
            }
            let before = try await finish(8)
            try await waitUntil { Set(first.ids + second.ids).isSuperset(of: before) }
            let handled = first.ids + second.ids
            #expect(Set(handled) == before, "every outcome handled")
            #expect(handled.count == before.count, "an outcome handled by both copies: \(handled)")
            // The copies acknowledge in the claims table just after handling; the kill comes once all 8 are there, so
            // nothing the dead copy handled may be handled again (a kill in between would allow it: at least once).
            try await waitUntil { stack.claimStatistics.acksAccepted >= before.count }
            #expect(stack.claimStatistics.acksAccepted >= before.count)

            kill(first.pid, SIGKILL)
            let killed = try await first.result.value
            #expect(killed.uncaughtSignal == SIGKILL && !killed.killed, "stderr: \(killed.stderr)")
            let firstHandled = first.ids

            let after = try await finish(8)
            try await waitUntil { Set(second.ids).isSuperset(of: after) }
            #expect(Set(second.ids).isSuperset(of: after), "the remaining copy took over every new outcome")
            #expect(second.ids.count == Set(second.ids).count, "the remaining copy handled an outcome twice")
            #expect(second.lines.withLockedValue { $0 }.allSatisfy { $0.hasSuffix("[copy-2]") })
            // Nothing handled by the dead copy was handled again (its acknowledgements had reached the table).
            #expect(Set(firstHandled).isDisjoint(with: second.ids))
            kill(second.pid, SIGTERM)
            let stopped = try await second.result.value
            #expect(stopped.status == 0 && stopped.uncaughtSignal == nil, "stderr: \(stopped.stderr)")
        }
    }

    @Test("Samples/Pipeline/pipeline.sh routes outcomes from jobwatch follow, skips a repeat, stops cleanly on SIGTERM")
    func shellPipeline() async throws {
        let jobwatch = try #require(BinaryRunner.executable, "build the package first (swift build)")
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Samples/Pipeline/pipeline.sh")
        try #require(FileManager.default.isExecutableFile(atPath: "/usr/bin/jq"), "jq is not installed")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pipeline-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await SupabaseLocal.withRunning { stack in
            let done = try await stack.backend.insert(["status": .string("completed"), "result": self.invoice])
            let failed = try await stack.backend.insert([
                "status": .string("failed"), "error": .string("Failed to process PDF: File appears to be corrupted"),
            ])
            let ids = try [done, failed].map { try #require($0["id"]?.stringValue) }
            let environment = [
                "SUPABASE_URL": stack.baseURL.absoluteString, "SUPABASE_ANON_KEY": stack.anonKey,
                "JOBWATCH": jobwatch.path, "PIPELINE_SEEN": directory.appendingPathComponent("seen").path,
            ]
            /// Runs the pipeline until `done` holds for its stdout, then sends it SIGTERM.
            func pipeline(consumer: String, until done: @escaping @Sendable (String) -> Bool) async throws
                -> BinaryRunner.Result
            {
                let out = NIOLockedValueBox("")
                let (pids, continuation) = AsyncStream<Int32>.makeStream()
                let run = Task {
                    try await BinaryRunner.run(
                        [
                            "--since", "beginning", "--cache",
                            directory.appendingPathComponent("\(consumer).sqlite").path,
                        ],
                        environment: environment.merging(["PIPELINE_CONSUMER": consumer]) { $1 },
                        executable: script, limit: .seconds(60),
                        onStart: { continuation.yield($0) },
                        onStdoutLine: { line in out.withLockedValue { $0 += line + "\n" } })
                }
                var iterator = pids.makeAsyncIterator()
                let pid = try #require(await iterator.next())
                let deadline = ContinuousClock.now + .seconds(30)
                while ContinuousClock.now < deadline, !done(out.withLockedValue { $0 }) {
                    try await Task.sleep(for: .milliseconds(50))
                }
                // SIGTERM goes to the script's jobwatch: it stops cleanly, closes the pipe, and the script ends with
                // its status once it has read every line. (The script forwards its own SIGTERM to jobwatch, but a
                // child of this test process starts with SIGTERM blocked, which bash cannot undo.)
                let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(pid)/children", encoding: .utf8)) ?? ""
                let follow = children.split(separator: " ").compactMap { Int32($0) }.filter { child in
                    ((try? String(contentsOfFile: "/proc/\(child)/cmdline", encoding: .utf8)) ?? "").contains("follow")
                }
                #expect(follow.count == 1, "jobwatch follow is not a child of the script: \(children)")
                for child in follow { kill(child, SIGTERM) }
                return try await run.value
            }
            let first = try await pipeline(consumer: "router") { out in ids.allSatisfy { out.contains($0) } }
            // SIGTERM: jobwatch stopped cleanly (exit 0), and the script with it.
            #expect(first.status == 0 && !first.killed, "stderr: \(first.stderr)")
            #expect(first.stdoutLines.contains("route \(ids[0]) archive/invoice"), "\(first.stdout)")
            #expect(first.stdoutLines.contains("reject \(ids[1]) Failed to process PDF: File appears to be corrupted"))
            #expect(first.stdoutLines.count == 2)
            // The same outcomes delivered again (here to a new consumer name, as after a crash of jobwatch): the
            // handler skips them.
            let again = try await pipeline(consumer: "router-2") { out in
                ids.allSatisfy { out.contains("skip \($0) (already handled)") }
            }
            #expect(again.status == 0 && !again.killed, "stderr: \(again.stderr)")
            #expect(Set(again.stdoutLines) == Set(ids.map { "skip \($0) (already handled)" }), "\(again.stdout)")
        }
    }
}
