// Throughput and CPU: N `postgres_changes` UPDATEs committed as fast as possible on SupabaseLocal and pushed to
// one subscriber process (JobSync: decode → merge → store subscriber; Python: decode → callback). Each client runs
// alone in its own child process so its CPU time is its own; the server runs in this process.
// Memory: a child process measures its resident-memory delta for N watched jobs held in a JobSync store.
import Foundation
import JobSync
import JobSyncCore
import SupabaseLocal
import SupabaseREST
import Synchronization

struct ThroughputResult: Sendable {
    var client: String
    var events: Int
    var expected: Int
    /// First commit → last event received.
    var elapsed: Duration?
    /// Client CPU (user + system) from ready to the last event.
    var cpu: Duration
    /// How long the server took to commit all changes.
    var commitTime: Duration
}

struct MemoryResult: Sendable {
    var jobs: Int
    var rssDelta: Int
}

/// Command-line options `--name value` of a child mode.
struct ChildOptions {
    var values: [String: String] = [:]

    init(_ arguments: ArraySlice<String>) {
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            if argument.hasPrefix("--"), let value = iterator.next() { self.values[String(argument.dropFirst(2))] = value }
        }
    }

    func require(_ name: String) throws -> String {
        guard let value = self.values[name] else { throw BenchError("missing --\(name)") }
        return value
    }
}

enum ThroughputBenchmark {
    static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Runs one client (JobSync child or Python peer) against a fresh stack with `count` jobs.
    static func run(python: PythonSetup?, count: Int, jobSync: Bool) async throws -> ThroughputResult? {
        if !jobSync && python == nil { return nil }
        return try await SupabaseLocal.withRunning { stack in
            let ids = try await Fixtures.insertJobs(count, on: stack)
            let child: ChildPeer
            if jobSync {
                child = try ChildPeer(
                    executable: self.selfExecutable,
                    arguments: ["throughput-client", "--url", stack.baseURL.absoluteString, "--key", stack.anonKey,
                                "--count", "\(count)"])
            } else if let python {
                child = try ChildPeer(
                    executable: python.python,
                    arguments: [python.scriptDirectory + "/rt_watch.py", "--url", stack.baseURL.absoluteString,
                                "--key", stack.anonKey, "--mode", "throughput", "--count", "\(count)"])
            } else {
                return nil
            }
            defer { child.kill() }
            try await child.waitReady(timeout: .seconds(120))
            let start = MonoInstant.now
            for id in ids {
                try await Fixtures.finish(id, index: 0, on: stack)
            }
            let committed = MonoInstant.now
            let result = try await child.finish(timeout: .seconds(120), askToStop: false)
            let events = (result["events"] as? Int) ?? Int((result["events"] as? Double) ?? 0)
            let last = (result["last"] as? Double).map { MonoInstant(pythonSeconds: $0) }
            let cpu = Duration.nanoseconds(Int64(((result["cpu"] as? Double) ?? 0) * 1e9))
            return ThroughputResult(
                client: jobSync ? "JobSync" : "Python realtime 2.34.1", events: events, expected: count,
                elapsed: last.map { $0 - start }, cpu: cpu, commitTime: committed - start)
        }
    }

    /// Child mode `throughput-client`: JobSync in all-jobs mode; counts `completed` updates seen by a store
    /// subscriber.
    static func client(_ options: ChildOptions) async throws {
        guard let url = URL(string: try options.require("url")) else { throw BenchError("bad --url") }
        let count = Int(try options.require("count")) ?? 0
        let sync = try JobSyncUnderTest.make(
            baseURL: url, apiKey: try options.require("key"), mode: .allJobs, subscriberCapacity: 4 * count + 1000)
        let readyPath = try options.require("ready")
        let stopPath = try options.require("stop")
        let outPath = try options.require("out")
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask { try await sync.run() }
            let ready = await waitUntil(timeout: .seconds(120)) {
                sync.client.transportMode == .live && sync.client.store.jobs.count >= count
            }
            guard ready else { throw BenchError("not live with \(count) jobs") }
            let counter = Arrivals()
            let progress = ChangeCounter()
            let last = LastInstant()
            let updates = sync.client.store.allUpdates()
            group.addTask {
                for try await event in updates {
                    if case .updated(let job) = event, job.status == .completed {
                        progress.increment()
                        last.set(MonoInstant.now)
                        if progress.value >= count { counter.record("done", at: MonoInstant.now) }
                    }
                }
            }
            let cpuAtReady = processCPU()
            _ = FileManager.default.createFile(atPath: readyPath, contents: Data("ready\n".utf8))
            await waitUntil(timeout: .seconds(600)) {
                counter.count > 0 || FileManager.default.fileExists(atPath: stopPath)
            }
            let cpu = processCPU() - cpuAtReady
            let lastSeconds = last.value.map { Double($0.nanoseconds) / 1e9 }
            var json = "{\"events\":\(progress.value),\"cpu\":\(cpu.secondsValue)"
            if let lastSeconds { json += ",\"last\":\(lastSeconds)" }
            json += "}"
            try Data(json.utf8).write(to: URL(fileURLWithPath: outPath + ".tmp"))
            try FileManager.default.moveItem(atPath: outPath + ".tmp", toPath: outPath)
        }
    }

    /// Runs the memory child for `jobs` watched jobs.
    static func memory(jobs: Int) async throws -> MemoryResult {
        let child = try ChildPeer(executable: self.selfExecutable, arguments: ["memory-client", "--jobs", "\(jobs)"])
        let result = try await child.finish(timeout: .seconds(300), askToStop: false)
        let delta = (result["rss_delta"] as? Int) ?? Int((result["rss_delta"] as? Double) ?? 0)
        return MemoryResult(jobs: jobs, rssDelta: delta)
    }

    /// Child mode `memory-client`: resident memory before and after watching N jobs whose rows are in the store.
    static func memoryClient(_ options: ChildOptions) async throws {
        let jobs = Int(try options.require("jobs")) ?? 0
        let outPath = try options.require("out")
        let rest = try PostgRESTClient(configuration: .init(baseURL: "http://127.0.0.1:9/rest/v1", apiKey: "unused"))
        let stamp = WallClock.system.now().postgresJSONText
        func row(_ id: String) -> JSONObject {
            [
                "id": .string(id), "status": .string("processing"), "progress": .string("Processing page 1 of 3"),
                "error": .null, "result": .null, "created_at": .string(stamp), "updated_at": .string(stamp),
            ]
        }
        // Warm up code paths and allocator with a small client first.
        let warm = try JobSyncClient(configuration: .init(source: SupabaseTableSource(client: rest), feed: nil))
        let warmIDs = (0..<1000).map { _ in UUID().uuidString.lowercased() }
        warm.watch(try warmIDs.map { try JobID($0) })
        _ = warm.store.merge(try warmIDs.map { try JobObservation.row(row($0), source: .poll) })
        let ids = (0..<jobs).map { _ in UUID().uuidString.lowercased() }
        let before = residentBytes()
        let client = try JobSyncClient(configuration: .init(source: SupabaseTableSource(client: rest), feed: nil))
        client.watch(try ids.map { try JobID($0) })
        var start = 0
        while start < ids.count {
            let batch = ids[start..<min(start + 1000, ids.count)]
            _ = client.store.merge(try batch.map { try JobObservation.row(row($0), source: .poll) })
            start += batch.count
        }
        let after = residentBytes()
        withExtendedLifetime((client, warm)) {}
        let json = "{\"rss_delta\":\(after - before),\"jobs\":\(client.store.jobs.count)}"
        try Data(json.utf8).write(to: URL(fileURLWithPath: outPath))
    }
}

final class LastInstant: Sendable {
    private let instant = Mutex<MonoInstant?>(nil)
    func set(_ value: MonoInstant) { self.instant.withLock { $0 = value } }
    var value: MonoInstant? { self.instant.withLock { $0 } }
}
