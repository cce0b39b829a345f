// Throughput and CPU: N `postgres_changes` UPDATEs committed as fast as possible on SupabaseLocal and pushed to
// one subscriber process (JobSync: decode → merge → store subscriber; Python: decode → callback). Each client runs
// alone in its own child process so its CPU time is its own; the server runs in this process.
// Memory: a child process measures its resident-memory delta for N watched jobs held in a JobSync store.
import Foundation
import JobSync
import JobSyncCore
import RealtimeProtocol
import SupabaseLocal
import SupabaseREST
import Synchronization

struct ThroughputResult: Sendable {
    var client: String
    var events: Int
    var expected: Int
    /// The client's first event → its last event.
    var elapsed: Duration?
    /// Client CPU (user + system) from ready to the last event.
    var cpu: Duration
    /// Heap allocations (`malloc` calls, counted by ordo-one's malloc-interposer) from ready to the last event.
    var allocations: Int?
    /// How long the server took to write every frame (it renders them all before the first write).
    var writeTime: Duration
    /// Events a JobSync store subscriber saw (its buffer keeps each job's latest unread state).
    var seen: Int?
    /// WebSocket connections the server accepted from the client (more than 1: it reconnected, and lost the
    /// frames written to the first one).
    var connections: Int
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

/// One client of the throughput run.
enum ThroughputClient: CaseIterable, Sendable {
    case jobSync(ProtocolVersionChoice)
    case python

    enum ProtocolVersionChoice: String, CaseIterable, Sendable { case v1 = "1.0.0", v2 = "2.0.0" }

    static var allCases: [ThroughputClient] { [.jobSync(.v2), .jobSync(.v1), .python] }

    var name: String {
        switch self {
        case .jobSync(let version): "JobSync, vsn \(version.rawValue) (decode → merge → store subscriber)"
        case .python: "Python realtime 2.34.1, vsn 1.0.0 (decode → callback)"
        }
    }
}

enum ThroughputBenchmark {
    static var selfExecutable: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// `updates` rounds of one UPDATE per job (progress, then the terminal state in the last round), each row
    /// version newer than the one before, as `postgres_changes` sends them: the whole new row, the old identity.
    static func changes(ids: [String], updates: Int) -> [TableChange] {
        let base = WallClock.system.now().microsecondsSinceEpoch
        let created = LocalJSON.string(LocalTimestamp(microsecondsSinceEpoch: base - 3_600_000_000).postgresJSONText)
        var changes: [TableChange] = []
        changes.reserveCapacity(ids.count * updates)
        for round in 1...updates {
            for (index, id) in ids.enumerated() {
                let stamp = LocalTimestamp(microsecondsSinceEpoch: base + Int64(round * ids.count + index))
                let last = round == updates
                let record: TableRow = [
                    "id": .string(id), "status": .string(last ? "completed" : "processing"),
                    "progress": last ? .null : .string("Processing page \(round) of \(updates - 1)"), "error": .null,
                    "result": last
                        ? .object([
                            "classification": .string("invoice"), "confidence": .double(0.93),
                            "page_results": .array([]),
                        ]) : .null,
                    "created_at": created, "updated_at": .string(stamp.postgresJSONText),
                ]
                changes.append(
                    TableChange(
                        kind: .update, schema: "public", table: "jobs", commitTimestamp: stamp, record: record,
                        oldRecord: ["id": .string(id)]))
            }
        }
        return changes
    }

    /// Runs one client alone against a fresh stack holding `jobs` jobs, then replays `jobs × updates` UPDATEs to it
    /// (``SupabaseLocalStack/replay(_:batch:)``: rendered first, then written in batches, so the server is not
    /// the limit).
    static func run(_ client: ThroughputClient, python: PythonSetup?, jobs: Int, updates: Int) async throws
        -> ThroughputResult?
    {
        let count = jobs * updates
        return try await SupabaseLocal.withRunning { stack in
            let child: ChildPeer
            let ids = try await Fixtures.insertJobs(jobs, on: stack)
            let changes = Self.changes(ids: ids, updates: updates)
            let common = ["--url", stack.baseURL.absoluteString, "--key", stack.anonKey, "--count", "\(count)"]
            switch client {
            case .jobSync(let version):
                child = try ChildPeer(
                    executable: self.selfExecutable,
                    arguments: ["throughput-client", "--jobs", "\(jobs)", "--vsn", version.rawValue] + common,
                    environment: MallocCounter.preload.map { ["LD_PRELOAD": $0] } ?? [:])
            case .python:
                guard let python else { return nil }
                child = try ChildPeer(
                    executable: python.python,
                    arguments: [python.scriptDirectory + "/rt_watch.py", "--mode", "throughput"] + common)
            }
            defer { child.kill() }
            try await child.waitReady(timeout: .seconds(120))
            let start = MonoInstant.now
            let report = await stack.replay(changes)
            let written = MonoInstant.now
            guard report.sockets == 1 else { throw BenchError("replay reached \(report.sockets) sockets, not 1") }
            let result = try await child.finish(timeout: .seconds(300), askToStop: false)
            func number(_ key: String) -> Double? { (result[key] as? Double) ?? (result[key] as? Int).map(Double.init) }
            let first = number("first").map { MonoInstant(pythonSeconds: $0) }
            let last = number("last").map { MonoInstant(pythonSeconds: $0) }
            return ThroughputResult(
                client: client.name, events: Int(number("events") ?? 0), expected: count,
                elapsed: first.flatMap { first in last.map { $0 - first } },
                cpu: .nanoseconds(Int64((number("cpu") ?? 0) * 1e9)),
                allocations: number("allocations").map { Int($0) }, writeTime: written - start,
                seen: number("seen").map { Int($0) }, connections: stack.acceptedSocketCount)
        }
    }

    /// Child mode `throughput-client`: JobSync in all-jobs mode with one store subscriber. Done when the subscriber
    /// has seen every job completed (the last round); events = changes the client received and merged from ready
    /// to then. The subscriber sees each job's latest state (its buffer coalesces versions it has not read yet), so
    /// it may see fewer events than were merged: reported as `seen`.
    static func client(_ options: ChildOptions) async throws {
        guard let url = URL(string: try options.require("url")) else { throw BenchError("bad --url") }
        let jobs = Int(try options.require("jobs")) ?? 0
        guard let version = ProtocolVersion(rawValue: try options.require("vsn")) else { throw BenchError("bad --vsn") }
        let sync = try JobSyncUnderTest.make(
            baseURL: url, apiKey: try options.require("key"), mode: .allJobs, subscriberCapacity: jobs + 1000,
            protocolVersion: version)
        let readyPath = try options.require("ready")
        let stopPath = try options.require("stop")
        let outPath = try options.require("out")
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask { try await sync.run() }
            let ready = await waitUntil(timeout: .seconds(120)) {
                sync.client.transportMode == .live && sync.client.store.jobs.count >= jobs
            }
            guard ready else { throw BenchError("not live with \(jobs) jobs") }
            let seen = EventProgress()
            let completed = EventProgress()
            let updates = sync.client.store.allUpdates()
            group.addTask {
                for try await event in updates {
                    guard case .updated(let job) = event else { continue }
                    let now = MonoInstant.now
                    _ = seen.record(now)
                    if job.status == .completed, completed.record(now) >= jobs { return }
                }
            }
            let receivedAtReady = sync.client.statistics.changesReceived
            let cpuAtReady = processCPU()
            MallocCounter.start()
            _ = FileManager.default.createFile(atPath: readyPath, contents: Data("ready\n".utf8))
            await waitUntil(timeout: .seconds(600)) {
                completed.count >= jobs || FileManager.default.fileExists(atPath: stopPath)
            }
            let allocations = MallocCounter.stop()
            let cpu = processCPU() - cpuAtReady
            let received = sync.client.statistics.changesReceived - receivedAtReady
            var fields = ["\"events\":\(received)", "\"seen\":\(seen.count)", "\"cpu\":\(cpu.secondsValue)"]
            if let (first, _) = seen.span, let (_, last) = completed.span {
                fields += ["\"first\":\(Double(first.nanoseconds) / 1e9)", "\"last\":\(Double(last.nanoseconds) / 1e9)"]
            }
            if let allocations { fields.append("\"allocations\":\(allocations)") }
            try Data(("{" + fields.joined(separator: ",") + "}").utf8).write(to: URL(fileURLWithPath: outPath + ".tmp"))
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

/// Events counted by a subscriber task: how many, the first and the last receive instant.
final class EventProgress: Sendable {
    private let state = Mutex<(count: Int, first: MonoInstant?, last: MonoInstant?)>((0, nil, nil))

    /// Counts one event received at `instant`; returns the count so far.
    func record(_ instant: MonoInstant) -> Int {
        self.state.withLock { state in
            state.count += 1
            if state.first == nil { state.first = instant }
            state.last = instant
            return state.count
        }
    }

    var count: Int { self.state.withLock { $0.count } }
    var span: (MonoInstant, MonoInstant)? {
        self.state.withLock { state in state.first.flatMap { first in state.last.map { (first, $0) } } }
    }
}
