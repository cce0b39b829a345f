// REST cost of watching many jobs, and JobSync-specific figures (requests per poll cycle, socket loss → first
// poll, silent stall → outcome).
import Foundation
import JobSync
import SupabaseLocal
import Synchronization

struct CostSettings: Sendable {
    /// Jobs watched, by every client.
    var watched = 10_000
    /// The plain poller starts polling each job at a random moment in this span (as if the jobs had been submitted
    /// over it), so that 10,000 jobs do not poll in lockstep.
    var pollStartSpread: Duration = .seconds(30)
    /// Time before the measurement window: every job's plain polling has reached the 30 s cap (31 s after its
    /// start) by then.
    var warmUp: Duration = .seconds(65)
    /// The measurement window (figures are scaled to one minute).
    var window: Duration = .seconds(60)
}

/// The clients whose cost is measured, each against a SupabaseLocal stack of its own.
enum CostClient: CaseIterable, Sendable {
    case jobSync, python, plainPolling, watermarkEverySecond, watermarkEveryFiveSeconds

    var name: String {
        switch self {
        case .jobSync: return "JobSync, postgres_changes (live)"
        case .python: return "Python realtime 2.34.1, postgres_changes"
        case .plainPolling: return "plain polling, one GET per job (1 s doubling to 30 s)"
        case .watermarkEverySecond: return "watermark poller, one request every 1 s"
        case .watermarkEveryFiveSeconds: return "watermark poller, one request every 5 s"
        }
    }
}

/// One client's traffic in the window, as its stack's server counted it (``WireTraffic``), scaled to one minute.
struct CostRow: Sendable, Encodable {
    var client: String
    var requestsPerMinute: Double
    var restBytesPerMinute: Double
    var webSocketBytesPerMinute: Double
    var totalBytesPerMinute: Double
    var notes: String
    /// The window's raw counts.
    var requests: Int
    var restBytes: Int
    var webSocketBytes: Int
    var webSocketConnections: Int

    init(_ client: CostClient, before: WireTraffic, after: WireTraffic, window: Duration, notes: String) {
        let minute = 60 / window.secondsValue
        self.client = client.name
        self.requests = after.restRequests - before.restRequests
        self.restBytes = after.rest.bytes - before.rest.bytes
        self.webSocketBytes = after.websocket.bytes - before.websocket.bytes
        self.webSocketConnections = after.websocket.connections
        self.requestsPerMinute = Double(self.requests) * minute
        self.restBytesPerMinute = Double(self.restBytes) * minute
        self.webSocketBytesPerMinute = Double(self.webSocketBytes) * minute
        self.totalBytesPerMinute = self.restBytesPerMinute + self.webSocketBytesPerMinute
        self.notes = notes
    }
}

struct CostResult: Sendable, Encodable {
    var watched: Int
    var warmUpSeconds: Double
    var windowSeconds: Double
    var rows: [CostRow]
    /// Changes committed (to every stack) in the window.
    var changes: Int
    /// JobSync's REST requests in the window as its own transport counted them (the server's count is in its row).
    var jobSyncClientRequests: Int
}

enum CostBenchmark {
    /// Every client watches the same `watched` jobs on a stack of its own; one change stream (1 % of the jobs per
    /// minute, progress updates) is committed to every stack at once. Bytes and requests are the servers' counts.
    static func run(_ settings: CostSettings, python: PythonSetup?) async throws -> CostResult {
        let clients = CostClient.allCases.filter { $0 != .python || python != nil }
        return try await self.withStacks(clients.count) { stacks in
            let ids = (0..<settings.watched).map { _ in UUID().uuidString.lowercased() }
            for stack in stacks { try await Fixtures.insertJobs(ids: ids, on: stack) }
            let stack = Dictionary(uniqueKeysWithValues: zip(clients, stacks))
            return try await self.measure(settings, clients: clients, stack: stack, ids: ids, python: python)
        }
    }

    private static func measure(
        _ settings: CostSettings, clients: [CostClient], stack: [CostClient: SupabaseLocalStack], ids: [String],
        python: PythonSetup?
    ) async throws -> CostResult {
        let jobSyncStack = stack[.jobSync]!
        let sync = try JobSyncUnderTest.make(stack: jobSyncStack)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask { try await sync.run() }
            sync.client.watch(try ids.map { try JobID($0) })
            let live = await waitUntil(timeout: .seconds(180)) {
                sync.client.transportMode == .live && sync.client.store.jobs.count == ids.count
            }
            guard live else { throw BenchError("JobSync did not become live with \(ids.count) jobs") }
            let initial = jobSyncStack.wireTraffic

            var child: ChildPeer?
            defer { child?.kill() }
            if let python, let pythonStack = stack[.python] {
                child = try ChildPeer(
                    executable: python.python,
                    arguments: [python.scriptDirectory + "/rt_watch.py", "--url", pythonStack.baseURL.absoluteString,
                                "--key", pythonStack.anonKey, "--mode", "outcomes", "--ids", "{dir}/ids.txt"],
                    files: ["ids.txt": ids.joined(separator: "\n")])
                try await child?.waitReady(timeout: .seconds(60))
            }

            let pollTransport = CountingTransport()
            if let pollStack = stack[.plainPolling] {
                let poller = PlainPoller(
                    baseURL: pollStack.baseURL.absoluteString, apiKey: pollStack.configuration.classifyAPIKey,
                    transport: pollTransport)
                let spreadMs = Int64(settings.pollStartSpread.millisecondsValue)
                for id in ids {
                    let start = Duration.milliseconds(Int64.random(in: 0..<max(spreadMs, 1)))
                    group.addTask {
                        try? await Task.sleep(for: start)
                        _ = await poller.poll(id)
                    }
                }
            }
            let watched = Set(ids)
            for (client, interval) in [(CostClient.watermarkEverySecond, Duration.seconds(1)),
                                       (.watermarkEveryFiveSeconds, .seconds(5))] {
                guard let pollStack = stack[client] else { continue }
                let poller = WatermarkPoller(
                    baseURL: pollStack.baseURL.absoluteString, apiKey: pollStack.anonKey, interval: interval,
                    transport: CountingTransport())
                let since = WallClock.system.now()
                group.addTask { await poller.run(watched: watched, since: since, arrivals: Arrivals()) }
            }

            // 1 % of the watched jobs change per minute (progress updates, nothing finishes), on every stack.
            let interval = Duration.seconds(60) / max(1, settings.watched / 100)
            let changes = ChangeCounter()
            let stacks = clients.compactMap { stack[$0] }
            group.addTask {
                var step = 0
                while !Task.isCancelled {
                    try await Task.sleep(for: interval)
                    let id = ids[Int.random(in: ids.indices)]
                    for stack in stacks { try await Fixtures.touch(id, step: step, on: stack) }
                    step += 1
                    changes.increment()
                }
            }
            try await Task.sleep(for: settings.warmUp)
            let before = clients.map { stack[$0]!.wireTraffic }
            let changesBefore = changes.value
            let receivedBefore = sync.client.statistics.changesReceived
            let clientRequestsBefore = sync.rest.snapshot.requests
            let pollBefore = pollTransport.snapshot
            try await Task.sleep(for: settings.window)
            let pollAfter = pollTransport.snapshot
            let after = clients.map { stack[$0]!.wireTraffic }
            let received = sync.client.statistics.changesReceived - receivedBefore
            let clientRequests = sync.rest.snapshot.requests - clientRequestsBefore
            let changed = changes.value - changesBefore

            var rows: [CostRow] = []
            for (index, client) in clients.enumerated() {
                let notes: String
                switch client {
                case .jobSync:
                    notes = "changes received over Realtime in the window: \(received) (committed in it: \(changed)); "
                        + "becoming live (once): "
                        + "\(initial.restRequests) requests, \(format(bytes: Double(initial.rest.bytes))) REST + "
                        + "\(format(bytes: Double(initial.websocket.bytes))) WebSocket"
                case .python:
                    notes = "table-wide channel, filtered in the client; no REST, so it cannot catch up after a loss"
                case .plainPolling:
                    // The poller waits 30 s after each answer: slow answers stretch its period.
                    let answered = pollAfter.answered - pollBefore.answered
                    let meanAnswer = answered > 0 ? (pollAfter.answerTime - pollBefore.answerTime) / answered : nil
                    notes = "each job's polling started at a random moment in the first "
                        + "\(format(settings.pollStartSpread)); steady state: one GET per job per 30 s + the answer "
                        + "time (in the window: mean \(format(meanAnswer)) from send to answer in the client, "
                        + "\(pollAfter.failures - pollBefore.failures) failed)"
                case .watermarkEverySecond, .watermarkEveryFiveSeconds:
                    notes = "`updated_at=gte.<watermark − 1 s>`, paged by 1,000; the pause runs from the end of one "
                        + "cycle to the start of the next"
                }
                rows.append(
                    CostRow(client, before: before[index], after: after[index], window: settings.window, notes: notes))
            }
            return CostResult(
                watched: ids.count, warmUpSeconds: settings.warmUp.secondsValue,
                windowSeconds: settings.window.secondsValue, rows: rows, changes: changed,
                jobSyncClientRequests: clientRequests)
        }
    }

    /// Runs `body` with `count` SupabaseLocal stacks (default settings), each on a port of its own.
    private static func withStacks<T>(
        _ count: Int, started: [SupabaseLocalStack] = [], _ body: ([SupabaseLocalStack]) async throws -> T
    ) async throws -> T {
        if started.count == count { return try await body(started) }
        return try await SupabaseLocal.withRunning { stack in
            try await self.withStacks(count, started: started + [stack], body)
        }
    }
}

final class ChangeCounter: Sendable {
    private let count = Mutex(0)
    func increment() { self.count.withLock { $0 += 1 } }
    var value: Int { self.count.withLock { $0 } }
}

struct PollCycleResult: Sendable {
    var watched: Int
    var byIDsRequests: Int
    var byIDsBytes: Int
    var watermarkRequests: Int
    var watermarkBytes: Int
}

struct LossToPollResult: Sendable {
    var delays: [Duration]
    var pollsDuringOutages: Int
    var reconnectDelays: [Duration]
}

struct StallResult: Sendable {
    /// Commit → notified.
    var commitToOutcome: Duration?
    /// Stall start → notified.
    var stallToOutcome: Duration?
    var audits: Int
    var polls: Int
}

enum JobSyncSpecificBenchmark {
    /// REST requests of one poll cycle with `watched` unchanged jobs: by ids (source without `updated_at`) and by
    /// watermark. Measured between the 2nd and 3rd successful poll (realtime off).
    static func pollCycle(watched: Int) async throws -> PollCycleResult {
        let byIDs = try await self.pollCycle(watched: watched, watermark: false)
        let watermark = try await self.pollCycle(watched: watched, watermark: true)
        return PollCycleResult(
            watched: watched, byIDsRequests: byIDs.requests, byIDsBytes: byIDs.bytes,
            watermarkRequests: watermark.requests, watermarkBytes: watermark.bytes)
    }

    private static func pollCycle(watched: Int, watermark: Bool) async throws -> (requests: Int, bytes: Int) {
        try await SupabaseLocal.withRunning { stack in
            let ids = try await Fixtures.insertJobs(watched, on: stack)
            let sync = try JobSyncUnderTest.make(stack: stack, realtime: false, watermark: watermark)
            sync.client.watch(try ids.map { try JobID($0) })
            return try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                group.addTask { try await sync.run() }
                guard await waitUntil(timeout: .seconds(40), { sync.client.statistics.polls >= 2 }) else {
                    throw BenchError("no second poll within 40 s (\(sync.client.statistics))")
                }
                let before = sync.rest.snapshot
                guard await waitUntil(timeout: .seconds(120), { sync.client.statistics.polls >= 3 }) else {
                    throw BenchError("no third poll")
                }
                let after = sync.rest.snapshot
                return (after.requests - before.requests, after.bytes - before.bytes)
            }
        }
    }

    /// Abrupt socket loss (TCP closed, no close frame) → first REST request, `repeats` times.
    static func lossToFirstPoll(jobs: Int, repeats: Int) async throws -> LossToPollResult {
        try await SupabaseLocal.withRunning { stack in
            let ids = try await Fixtures.insertJobs(jobs, on: stack)
            let sync = try JobSyncUnderTest.make(stack: stack)
            sync.client.watch(try ids.map { try JobID($0) })
            return try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                group.addTask { try await sync.run() }
                var result = LossToPollResult(delays: [], pollsDuringOutages: 0, reconnectDelays: [])
                for _ in 0..<repeats {
                    guard await waitUntil(timeout: .seconds(60), { sync.client.transportMode == .live }) else {
                        throw BenchError("JobSync did not become live")
                    }
                    try await Task.sleep(for: .seconds(2))
                    let polls = sync.client.statistics.polls
                    let lost = MonoInstant.now
                    stack.faults.dropAllConnections(code: nil)
                    let sawRequest = await waitUntil(timeout: .seconds(10)) { sync.rest.firstRequest(after: lost) != nil }
                    if sawRequest, let first = sync.rest.firstRequest(after: lost) { result.delays.append(first - lost) }
                    await waitUntil(timeout: .milliseconds(500)) { sync.client.transportMode != .live }
                    await waitUntil(timeout: .seconds(60)) { sync.client.transportMode == .live }
                    result.reconnectDelays.append(MonoInstant.now - lost)
                    result.pollsDuringOutages += sync.client.statistics.polls - polls
                }
                return result
            }
        }
    }

    /// A silent stall (TCP open, nothing moves) starts; a job completes 1 s later; when is it seen?
    static func stallToOutcome(jobs: Int, stall: Duration) async throws -> StallResult {
        try await SupabaseLocal.withRunning { stack in
            let ids = try await Fixtures.insertJobs(jobs, on: stack)
            let sync = try JobSyncUnderTest.make(stack: stack)
            let target = try JobID(ids[0])
            sync.client.watch(try ids.map { try JobID($0) })
            return try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                group.addTask { try await sync.run() }
                guard await waitUntil(timeout: .seconds(60), { sync.client.transportMode == .live }) else {
                    throw BenchError("JobSync did not become live")
                }
                try await Task.sleep(for: .seconds(1))
                let arrivals = Arrivals()
                let updates = sync.client.updates(for: target)
                group.addTask {
                    for try await event in updates {
                        if case .updated(let job) = event, job.status.isTerminal {
                            arrivals.record(job.id.rawValue, at: MonoInstant.now)
                        }
                    }
                }
                let before = sync.client.statistics
                let stallStart = MonoInstant.now
                stack.faults.stall(for: stall)
                try await Task.sleep(for: .seconds(1))
                let commit = try await Fixtures.finish(target.rawValue, index: 0, on: stack)
                await waitUntil(timeout: stall + .seconds(30)) { arrivals.count == 1 }
                let after = sync.client.statistics
                let arrival = arrivals.all[target.rawValue]
                return StallResult(
                    commitToOutcome: arrival.map { $0 - commit }, stallToOutcome: arrival.map { $0 - stallStart },
                    audits: after.audits - before.audits, polls: after.polls - before.polls)
            }
        }
    }
}
