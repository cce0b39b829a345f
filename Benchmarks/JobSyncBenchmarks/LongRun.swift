// Long run: a JobSync client in all-jobs mode (a child process of its own, so its resident memory is its own) while
// N jobs flow through SupabaseLocal (in memory, in this process): each job inserted (queued), updated to processing,
// then completed with a result; a fraction is deleted later. The client's resident memory (VmRSS), its store's job
// count and its cache file size are taken at checkpoints (10k, 50k, 100k, 200k completed jobs) while the server
// pauses, so each figure describes a quiescent client that has seen exactly that many completions.
import Foundation
import JobSync

#if canImport(Glibc)
    import Glibc
#endif
import SupabaseLocal
import Synchronization

struct LongRunSettings: Sendable {
    /// Jobs in all (default 200,000; quick: 50,000).
    var jobs = 200_000
    /// Fraction of jobs deleted on the server some time (5,000 jobs) after they completed (default 0.1).
    var deleteFraction = 0.1
    /// Whether the client persists to a cache file (`SQLiteJobPersistence`).
    var cache = true
    /// The store's retention period for finished jobs, in seconds (nil: the store's default, 10 minutes).
    var retentionSeconds: Double?
    /// Jobs per server-side burst (insert all, then update all, then complete all), as the throughput benchmark
    /// commits a burst as fast as it can.
    var chunk = 500
    /// Completed jobs by which the server may run ahead of what the client has seen (flow control, so the run
    /// measures the client's steady state, not a growing socket backlog).
    var maximumLag = 1_000

    var checkpoints: [Int] {
        var points = [10_000, 50_000, 100_000, 200_000].filter { $0 < self.jobs }
        points.append(self.jobs)
        return points
    }

    /// Whether job `index` is one of those deleted later (deterministic: the first `deleteFraction` of every 100).
    func isDoomed(_ index: Int) -> Bool {
        Double(index % 100) < self.deleteFraction * 100
    }
}

struct LongRunCheckpoint: Sendable {
    var completed: Int
    var residentBytes: Int
    var storeJobs: Int
    /// How many of `storeJobs` are finished (the retention policy bounds them).
    var finishedStoreJobs: Int
    /// Live heap bytes (``heapInUse()``), as opposed to resident memory, which also counts freed memory the allocator
    /// keeps.
    var heapInUse: Int
    var cacheBytes: Int?
    /// Since the client was ready.
    var elapsed: Duration
}

struct LongRunResult: Sendable {
    var startResidentBytes: Int
    var startHeapBytes: Int
    var checkpoints: [LongRunCheckpoint]
    var events: Int
    var serverWrites: Int
    var deleted: Int

    func description(_ settings: LongRunSettings) -> String {
        var lines: [String] = []
        let retention =
            "store retention: finished jobs leave memory after "
            + (settings.retentionSeconds.map { "\($0) s" } ?? "10 minutes (the default)")
            + " or beyond 10,000 finished jobs"
        lines.append(
            "`JobSyncClient` in all-jobs mode (Realtime table-wide binding + REST), one `allUpdates()` subscriber, "
                + "in a child process; SupabaseLocal (in-memory table) in the harness. Per job: insert (queued), "
                + "update (processing), update (completed, with a result), in bursts of \(settings.chunk) jobs; "
                + "\(Int((settings.deleteFraction * 100).rounded())) % of jobs are deleted 5,000 jobs after they "
                + "completed (the store keeps at most 10,000 tombstones); the server runs at most "
                + "\(settings.maximumLag) completions ahead of the client. Cache: "
                + (settings.cache ? "`SQLiteJobPersistence` file" : "none") + "; \(retention). "
                + "Resident memory = VmRSS of the client process; heap in use = glibc `malloc_stats` total in use (live "
                + "allocations; the rest of RSS growth is freed memory the allocator keeps); start = live, empty table; "
                + "each checkpoint is taken "
                + "by the subscriber when it sees that many completions, with the server paused. "
                + "\(self.serverWrites) server writes (\(self.deleted) deletions), \(self.events) events seen by the "
                + "subscriber.\n")
        lines.append("| completed jobs | client RSS | above start | heap in use | jobs in memory (finished) "
            + "| cache file (db + wal) | elapsed |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|")
        lines.append(
            "| 0 (start) | \(format(bytes: Double(self.startResidentBytes))) | — | "
                + "\(format(bytes: Double(self.startHeapBytes))) | 0 | — | — |")
        for point in self.checkpoints {
            let above = point.residentBytes - self.startResidentBytes
            lines.append(
                "| \(point.completed) | \(format(bytes: Double(point.residentBytes))) | "
                    + "\(format(bytes: Double(above))) | \(format(bytes: Double(point.heapInUse))) | "
                    + "\(point.storeJobs) (\(point.finishedStoreJobs)) | "
                    + "\(point.cacheBytes.map { format(bytes: Double($0)) } ?? "no cache") | "
                    + "\(format(point.elapsed)) |")
        }
        if let last = self.checkpoints.last {
            let above = last.residentBytes - self.startResidentBytes
            let goal = 64 * 1_048_576
            lines.append(
                "\nGoal (flat, ≤ 64 MiB above start): "
                    + (above <= goal
                        ? "met (\(format(bytes: Double(above))) above start at \(last.completed) jobs)."
                        : "NOT met: \(format(bytes: Double(above))) above start at \(last.completed) jobs."))
        }
        return lines.joined(separator: "\n")
    }
}

enum LongRunBenchmark {
    /// The completed state: a result classified page by page (3 pages).
    static let completion: TableRow = [
        "status": .string("completed"), "progress": .null,
        "result": .object([
            "classification": .string("invoice"), "confidence": .double(0.93),
            "page_results": .array((1...3).map { page in
                .object([
                    "page": .int(page), "classification": .string("invoice"), "confidence": .double(0.93),
                    "success": .bool(true),
                ])
            }),
        ]),
    ]

    /// Runs the child and drives the jobs through the server.
    static func run(_ settings: LongRunSettings) async throws -> LongRunResult {
        try await SupabaseLocal.withRunning { stack in
            var arguments = [
                "longrun-client", "--url", stack.baseURL.absoluteString, "--key", stack.anonKey,
                "--checkpoints", settings.checkpoints.map(String.init).joined(separator: ","),
                "--progress", "{dir}/progress", "--capacity", "\(4 * settings.maximumLag + 10_000)",
            ]
            if settings.cache { arguments += ["--cache", "{dir}/cache.sqlite"] }
            if let retention = settings.retentionSeconds { arguments += ["--retention", "\(retention)"] }
            let child = try ChildPeer(executable: ThroughputBenchmark.selfExecutable, arguments: arguments)
            defer { child.kill() }
            try await child.waitReady(timeout: .seconds(120))
            let progressPath = child.directory.appendingPathComponent("progress").path
            /// (completions seen, checkpoints taken) as last written by the child.
            func progress() -> (Int, Int) {
                let text = (try? String(contentsOfFile: progressPath, encoding: .utf8)) ?? ""
                let fields = text.split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
                return fields.count == 2 ? (fields[0], fields[1]) : (0, 0)
            }
            func waitFor(_ what: String, _ condition: ((Int, Int)) -> Bool) async throws {
                let ok = await waitUntil(timeout: .seconds(120)) {
                    condition(progress()) || !child.process.isRunning
                }
                guard ok, child.process.isRunning else {
                    throw BenchError("long run: client did not reach \(what) (progress \(progress())): "
                        + child.stderrTail())
                }
            }
            let backend = stack.backend
            let checkpoints = settings.checkpoints
            var ids: [String] = []
            ids.reserveCapacity(settings.jobs)
            var nextDeletion = 0
            var writes = 0
            var deleted = 0
            var deletedAt: [Int: Int] = [:]
            var start = 0
            while start < settings.jobs {
                let nextCheckpoint = checkpoints.first { $0 > start } ?? settings.jobs
                let end = min(start + settings.chunk, nextCheckpoint)
                let chunk = (start..<end).map { _ in UUID().uuidString.lowercased() }
                ids += chunk
                // Deletions lag the completions by 5,000 jobs ("deleted later"); committed before this burst's
                // completions, so a checkpoint (taken at a completion) has seen every deletion counted for it.
                while nextDeletion < end - 5_000 {
                    if settings.isDoomed(nextDeletion) {
                        _ = try await backend.delete(primaryKey: .string(ids[nextDeletion]))
                        writes += 1
                        deleted += 1
                    }
                    nextDeletion += 1
                }
                for id in chunk {
                    _ = try await backend.insert(["id": .string(id), "progress": .string("Waiting in queue")])
                }
                for id in chunk {
                    _ = try await backend.update(
                        primaryKey: .string(id),
                        set: ["status": .string("processing"), "progress": .string("Processing page 1 of 3")])
                }
                for id in chunk {
                    _ = try await backend.update(primaryKey: .string(id), set: Self.completion)
                }
                writes += 3 * chunk.count
                start = end
                if let index = checkpoints.firstIndex(of: end) {
                    deletedAt[end] = deleted
                    // Pause the server at each checkpoint until the child has measured it.
                    try await waitFor("checkpoint \(checkpoints[index])") { $0.1 > index }
                } else {
                    try await waitFor("\(end - settings.maximumLag) completions") { $0.0 >= end - settings.maximumLag }
                }
            }
            let result = try await child.finish(timeout: .seconds(60))
            func int(_ object: [String: Any], _ key: String) -> Int {
                (object[key] as? Int) ?? Int((object[key] as? Double) ?? 0)
            }
            let points = (result["checkpoints"] as? [[String: Any]] ?? []).map { point in
                LongRunCheckpoint(
                    completed: int(point, "completed"), residentBytes: int(point, "rss"),
                    storeJobs: int(point, "store_jobs"), finishedStoreJobs: int(point, "finished_jobs"),
                    heapInUse: int(point, "heap"),
                    cacheBytes: point["cache_bytes"].map { _ in int(point, "cache_bytes") },
                    elapsed: .nanoseconds(Int64(((point["elapsed"] as? Double) ?? 0) * 1e9)))
            }
            return LongRunResult(
                startResidentBytes: int(result, "start_rss"), startHeapBytes: int(result, "start_heap"),
                checkpoints: points,
                events: int(result, "events"),
                serverWrites: writes, deleted: deleted)
        }
    }

    /// Child mode `longrun-client`: all-jobs mode; the one `allUpdates()` subscriber counts completions, writes
    /// `<completions> <checkpoints taken>` to `--progress`, and takes each checkpoint (RSS first, then the store's
    /// job count and the cache size) when the count reaches it.
    static func client(_ options: ChildOptions) async throws {
        guard let url = URL(string: try options.require("url")) else { throw BenchError("bad --url") }
        let checkpoints = try options.require("checkpoints").split(separator: ",").compactMap { Int($0) }
        let progressPath = try options.require("progress")
        let readyPath = try options.require("ready")
        let stopPath = try options.require("stop")
        let outPath = try options.require("out")
        let capacity = Int(options.values["capacity"] ?? "") ?? 50_000
        let cachePath = options.values["cache"]
        var storeConfiguration = JobStore.Configuration(subscriberCapacity: capacity)
        if let cachePath { storeConfiguration.persistence = try SQLiteJobPersistence(path: cachePath) }
        let retention = options.values["retention"].flatMap(Double.init)
        // The store's default retention (10 minutes, at most 10,000 finished jobs) unless --retention SECONDS.
        if let retention {
            storeConfiguration.retention.period = .milliseconds(Int64((retention * 1000).rounded()))
        }
        let sync = try JobSyncUnderTest.make(
            baseURL: url, apiKey: try options.require("key"), mode: .allJobs, storeConfiguration: storeConfiguration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask { try await sync.run() }
            let live = await waitUntil(timeout: .seconds(120)) { sync.client.transportMode == .live }
            guard live else { throw BenchError("not live") }
            let store = sync.client.store
            let updates = store.allUpdates()
            let startRSS = vmRSS()
            let startHeap = heapInUse()
            let started = ContinuousClock.now
            let state = LongRunTally()
            group.addTask {
                defer { FileHandle.standardError.write(Data("allUpdates stopped at \(state.progress)\n".utf8)) }
                for try await event in updates {
                    let completed = state.record(event)
                    guard let completed, checkpoints.contains(completed) else { continue }
                    let rss = vmRSS()
                    let (jobs, finished) = store.jobsInMemory
                    var point = "{\"completed\":\(completed),\"rss\":\(rss),\"store_jobs\":\(jobs),"
                        + "\"finished_jobs\":\(finished),\"heap\":\(heapInUse()),"
                        + "\"elapsed\":\((ContinuousClock.now - started).secondsValue)"
                    if let cachePath { point += ",\"cache_bytes\":\(Self.cacheBytes(cachePath))" }
                    point += "}"
                    state.take(point)
                }
            }
            group.addTask {
                // Progress for the driver's flow control, every 20 ms; a status line on stderr every 5 s (shown by
                // the driver if the run fails).
                var ticks = 0
                while !Task.isCancelled {
                    ticks += 1
                    if ticks % 250 == 0 {
                        let line = "progress \(state.progress), mode \(sync.client.transportMode), "
                            + "\(sync.client.statistics)\n"
                        FileHandle.standardError.write(Data(line.utf8))
                    }
                    let (completed, taken) = state.progress
                    try Data("\(completed) \(taken)\n".utf8).write(to: URL(fileURLWithPath: progressPath + ".tmp"))
                    guard rename(progressPath + ".tmp", progressPath) == 0 else {
                        throw BenchError("cannot rename the progress file: errno \(errno)")
                    }
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            _ = FileManager.default.createFile(atPath: readyPath, contents: Data("ready\n".utf8))
            await waitUntil(timeout: .seconds(3600)) { FileManager.default.fileExists(atPath: stopPath) }
            let (events, taken) = state.result
            let json = "{\"start_rss\":\(startRSS),\"start_heap\":\(startHeap),\"events\":\(events),"
                + "\"checkpoints\":[\(taken.joined(separator: ","))]}"
            try Data(json.utf8).write(to: URL(fileURLWithPath: outPath + ".tmp"))
            try FileManager.default.moveItem(atPath: outPath + ".tmp", toPath: outPath)
        }
    }

    /// Size of the cache file and its write-ahead log.
    static func cacheBytes(_ path: String) -> Int {
        [path, path + "-wal"].reduce(0) { total, file in
            total + (((try? FileManager.default.attributesOfItem(atPath: file))?[.size] as? NSNumber)?.intValue ?? 0)
        }
    }
}

/// What the long-run subscriber counted, and the checkpoints it took (JSON objects).
final class LongRunTally: Sendable {
    private let state = Mutex((completed: 0, events: 0, taken: [String]()))

    /// Counts one event; returns the completion count when the event is a completion.
    func record(_ event: JobEvent) -> Int? {
        self.state.withLock { state -> Int? in
            state.events += 1
            guard case .updated(let job) = event, job.status == .completed else { return nil }
            state.completed += 1
            return state.completed
        }
    }

    func take(_ point: String) { self.state.withLock { $0.taken.append(point) } }

    var progress: (completed: Int, taken: Int) { self.state.withLock { ($0.completed, $0.taken.count) } }

    var result: (events: Int, taken: [String]) { self.state.withLock { ($0.events, $0.taken) } }
}

/// This process's resident set size in bytes, from `VmRSS` in `/proc/self/status` (0 if unreadable).
/// Live heap bytes: glibc's `malloc_stats()` total "in use bytes" (small blocks in use plus mmapped ones), as opposed
/// to resident memory, which also counts freed memory the allocator keeps. 0 where unavailable.
func heapInUse() -> Int {
    #if canImport(Glibc)
        // malloc_stats prints to stderr: point fd 2 at a scratch file while it runs.
        guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "malloc_stats") else { return 0 }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("malloc-stats-\(getpid())").path
        let file = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        guard file >= 0 else { return 0 }
        let saved = dup(2)
        dup2(file, 2)
        unsafeBitCast(symbol, to: (@convention(c) () -> Void).self)()
        fflush(nil)
        dup2(saved, 2)
        close(saved)
        close(file)
        defer { unlink(path) }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8),
            let total = text.range(of: "Total (incl. mmap):"),
            let line = text[total.upperBound...].split(separator: "\n").first(where: { $0.contains("in use bytes") }),
            let bytes = line.split(separator: "=").last.flatMap({ Int($0.trimmingCharacters(in: .whitespaces)) })
        else { return 0 }
        return bytes
    #else
        return 0
    #endif
}

func vmRSS() -> Int {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
        let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
        let kilobytes = line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first.flatMap({ Int($0) })
    else { return 0 }
    return kilobytes * 1024
}
