// Persistence: merges per second to disk through `JobStore` with `SQLiteJobPersistence` (WAL, synchronous=NORMAL,
// group commit), with 1, 4 and 16 concurrent mergers. Each run is a child process of its own (a fresh file, its own
// CPU time), started under `strace -f -c` (when strace is installed) to count the fsync/fdatasync calls the process
// really made; the child itself counts the transactions (`JobStorePersistence.write` calls, one SQLite transaction
// each) through a counting decorator.
import Foundation
import JobSync
import JobSyncCore
import SupabaseLocal
import Synchronization

struct PersistenceResult: Sendable {
    var mergers: Int
    var merges: Int
    var elapsed: Duration
    var cpu: Duration
    var transactions: Int
    var changesWritten: Int
    var failures: Int
    var databaseBytes: Int
    var walBytes: Int
    var reloadedJobs: Int
    var expectedJobs: Int
    var mergeLatencyP50: Duration
    var mergeLatencyP99: Duration
    var mergeLatencyMax: Duration
    /// fsync + fdatasync calls strace saw during the timed merges (nil: strace not installed or not readable).
    var syncCalls: Int?
    /// The same over the whole child process (file creation, final checkpoint at close and the check included).
    var syncCallsTotal: Int?

    var mergesPerSecond: Double { Double(self.merges) / self.elapsed.secondsValue }
    var transactionsPerSecond: Double { Double(self.transactions) / self.elapsed.secondsValue }
}

/// Counts the batches (transactions) and changes a persistence writes, and how long the writes took.
final class CountingPersistence: JobStorePersistence {
    struct Counts: Sendable {
        var transactions = 0
        var changes = 0
        var writeTime: Duration = .zero
    }

    private let base: any JobStorePersistence
    private let counts = Mutex(Counts())

    init(_ base: any JobStorePersistence) {
        self.base = base
    }

    func load() throws(JobSyncError) -> PersistedJobs { try self.base.load() }

    func job(_ id: JobID) throws(JobSyncError) -> Job? { try self.base.job(id) }

    func write(_ changes: [PersistedChange]) throws(JobSyncError) {
        let start = ContinuousClock.now
        try self.base.write(changes)
        let took = ContinuousClock.now - start
        self.counts.withLock {
            $0.transactions += 1
            $0.changes += changes.count
            $0.writeTime += took
        }
    }

    var snapshot: Counts { self.counts.withLock { $0 } }
}

enum PersistenceBenchmark {
    static let straceExecutable = "/usr/bin/strace"

    /// Runs one child with `mergers` concurrent mergers, `jobs` jobs in all (3 merges each).
    static func run(mergers: Int, jobs: Int) async throws -> PersistenceResult {
        let strace = FileManager.default.isExecutableFile(atPath: Self.straceExecutable)
        let straceOutput = FileManager.default.temporaryDirectory
            .appendingPathComponent("jobsync-bench-strace-\(UUID()).txt").path
        defer { try? FileManager.default.removeItem(atPath: straceOutput) }
        let childArguments = [
            "persistence-client", "--mergers", "\(mergers)", "--jobs", "\(jobs)", "--db", "{dir}/jobs.sqlite",
        ]
        let child: ChildPeer
        if strace {
            // --seccomp-bpf: only the traced calls stop the process, so strace costs nothing on the others.
            // -ttt: each call with its wall-clock time, to count those inside the child's timed window.
            child = try ChildPeer(
                executable: Self.straceExecutable,
                arguments: ["-f", "--seccomp-bpf", "-ttt", "-e", "trace=fsync,fdatasync", "-o", straceOutput,
                            ThroughputBenchmark.selfExecutable] + childArguments)
        } else {
            child = try ChildPeer(executable: ThroughputBenchmark.selfExecutable, arguments: childArguments)
        }
        let result = try await child.finish(timeout: .seconds(600), askToStop: false)
        func int(_ key: String) -> Int { (result[key] as? Int) ?? Int((result[key] as? Double) ?? 0) }
        func seconds(_ key: String) -> Duration { .nanoseconds(Int64(((result[key] as? Double) ?? 0) * 1e9)) }
        var syncCalls: Int?
        var syncCallsTotal: Int?
        if strace, let text = try? String(contentsOfFile: straceOutput, encoding: .utf8) {
            let times = Self.syncCallTimes(text)
            let window = ((result["start_wall"] as? Double) ?? 0)...((result["end_wall"] as? Double) ?? 0)
            syncCalls = times.filter { window.contains($0) }.count
            syncCallsTotal = times.count
        }
        return PersistenceResult(
            mergers: mergers, merges: int("merges"), elapsed: seconds("elapsed"), cpu: seconds("cpu"),
            transactions: int("transactions"), changesWritten: int("changes"), failures: int("failures"),
            databaseBytes: int("db_bytes"), walBytes: int("wal_bytes"), reloadedJobs: int("reloaded"),
            expectedJobs: jobs, mergeLatencyP50: seconds("p50"), mergeLatencyP99: seconds("p99"),
            mergeLatencyMax: seconds("max"), syncCalls: syncCalls, syncCallsTotal: syncCallsTotal)
    }

    /// The wall-clock times of the fsync/fdatasync calls in `strace -f -ttt` output (`PID SECONDS.MICROS fsync(5…`;
    /// a call interrupted by another thread's appears again as `<... fsync resumed>`, which is not counted twice).
    static func syncCallTimes(_ text: String) -> [Double] {
        var times: [Double] = []
        for line in text.split(separator: "\n") {
            let fields = line.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: true)
            guard fields.count == 3, fields[2].hasPrefix("fsync(") || fields[2].hasPrefix("fdatasync("),
                let time = Double(fields[1])
            else { continue }
            times.append(time)
        }
        return times
    }

    /// Child mode `persistence-client`: `--mergers` threads merge `--jobs` jobs (queued → processing → completed,
    /// each state a newer `updated_at`) into one store persisted to `--db`, then reopen the file to check it.
    static func client(_ options: ChildOptions) async throws {
        let mergers = max(1, Int(try options.require("mergers")) ?? 1)
        let jobs = Int(try options.require("jobs")) ?? 0
        let path = try options.require("db")
        let outPath = try options.require("out")

        // Observations are built before the clock starts: the figure is merge + persistence, not fixture building.
        // Each merger owns its jobs; per job its three states in order, interleaved across jobs like a live feed.
        let base = WallClock.system.now().microsecondsSinceEpoch
        var perMerger: [[JobObservation]] = Array(repeating: [], count: mergers)
        let statuses = ["queued", "processing", "completed"]
        for step in 0..<3 {
            for index in 0..<jobs {
                let id = Self.jobID(index)
                // Distinct, increasing `updated_at` per state; all within the store's clock-skew limit.
                let stamp = LocalTimestamp(microsecondsSinceEpoch: base + Int64(step * jobs + index))
                var row: JSONObject = [
                    "id": .string(id), "status": .string(statuses[step]), "error": .null,
                    "created_at": .string(LocalTimestamp(microsecondsSinceEpoch: base).postgresJSONText),
                    "updated_at": .string(stamp.postgresJSONText),
                    "progress": step == 1 ? .string("Processing page 1 of 3") : .null,
                    "result": .null,
                ]
                if step == 2 {
                    row["result"] = .object([
                        "classification": .string("invoice"), "confidence": .number(JSONNumber(text: "0.93")),
                        "page_results": .array([
                            .object([
                                "page": .number(JSONNumber(1)), "classification": .string("invoice"),
                                "confidence": .number(JSONNumber(text: "0.93")), "success": .bool(true),
                            ])
                        ]),
                    ])
                }
                perMerger[index % mergers].append(try JobObservation.row(row, source: .realtime))
            }
        }

        let counting = CountingPersistence(try SQLiteJobPersistence(path: path))
        let store = try JobStore(configuration: .init(persistence: counting))
        let merges = perMerger.reduce(0) { $0 + $1.count }
        let latencies = LatencyLog()
        let cpuBefore = processCPU()
        let startWall = Date().timeIntervalSince1970
        let start = ContinuousClock.now
        // OS threads, not tasks: `merge` is synchronous and a leader blocks in SQLite while it writes; the
        // cooperative pool has one thread per core (2 here), so tasks could never have more than 2 merges in flight.
        let threads = perMerger.map { observations in
            MergerThread {
                var own: [Duration] = []
                own.reserveCapacity(observations.count)
                for observation in observations {
                    let begin = ContinuousClock.now
                    store.merge(observation)
                    own.append(ContinuousClock.now - begin)
                }
                latencies.append(own)
            }
        }
        for thread in threads { thread.start() }
        for thread in threads { await thread.join() }
        store.flush()  // what the background writer still holds counts in the time
        let elapsed = ContinuousClock.now - start
        let endWall = Date().timeIntervalSince1970
        let cpu = processCPU() - cpuBefore
        let counts = counting.snapshot
        let failures = store.persistenceFailures
        func size(_ file: String) -> Int {
            ((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? 0
        }
        let databaseBytes = size(path)
        let walBytes = size(path + "-wal")
        // Check what was written: a second connection reads every job back, each in its final state.
        let reloaded = try SQLiteJobPersistence(path: path).load().jobs.filter { $0.0.status == .completed }.count
        let sorted = latencies.all.sorted()
        func percentile(_ fraction: Double) -> Double {
            guard !sorted.isEmpty else { return 0 }
            let rank = min(sorted.count - 1, max(0, Int((fraction * Double(sorted.count)).rounded(.up)) - 1))
            return sorted[rank].secondsValue
        }
        let json = """
            {"merges":\(merges),"elapsed":\(elapsed.secondsValue),"cpu":\(cpu.secondsValue),\
            "transactions":\(counts.transactions),"changes":\(counts.changes),"failures":\(failures),\
            "write_seconds":\(counts.writeTime.secondsValue),"db_bytes":\(databaseBytes),"wal_bytes":\(walBytes),\
            "reloaded":\(reloaded),"p50":\(percentile(0.5)),"p99":\(percentile(0.99)),"max":\(percentile(1)),\
            "start_wall":\(startWall),"end_wall":\(endWall)}
            """
        try Data(json.utf8).write(to: URL(fileURLWithPath: outPath))
    }

    /// A deterministic UUID-shaped id for job `index`.
    static func jobID(_ index: Int) -> String {
        let hex = String(index, radix: 16)
        let tail = String(repeating: "0", count: max(0, 12 - hex.count)) + hex
        return "00000000-0000-4000-8000-" + tail
    }
}

/// Merge latencies collected from several threads.
final class LatencyLog: Sendable {
    private let values = Mutex([Duration]())

    func append(_ more: [Duration]) { self.values.withLock { $0.append(contentsOf: more) } }

    var all: [Duration] { self.values.withLock { $0 } }
}

/// An OS thread running one closure; `join()` waits for it without blocking a cooperative thread.
final class MergerThread {
    private let thread: Thread
    private let finished: AsyncStream<Void>

    init(_ body: @escaping @Sendable () -> Void) {
        let (finished, continuation) = AsyncStream<Void>.makeStream()
        self.finished = finished
        self.thread = Thread {
            body()
            continuation.finish()
        }
        self.thread.stackSize = 1 << 20
    }

    func start() { self.thread.start() }

    func join() async {
        for await _ in self.finished {}
    }
}
