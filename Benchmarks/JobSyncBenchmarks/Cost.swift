// REST cost of watching many jobs, and JobSync-specific figures (requests per poll cycle, socket loss → first
// poll, silent stall → outcome).
import Foundation
import JobSync
import SupabaseLocal
import Synchronization

struct CostSettings: Sendable {
    /// Jobs watched.
    var watched = 10_000
    /// Jobs actually polled by the plain poller (its cost is per job: extrapolated to `watched`).
    var polledSample = 1_000
    /// Time before the measurement window (the poller's delays reach the 30 s cap after 31 s).
    var warmUp: Duration = .seconds(35)
    /// The measurement window (figures are scaled to one minute).
    var window: Duration = .seconds(60)
}

struct CostResult: Sendable {
    var settings: CostSettings
    var jobSyncInitialRequests: Int
    var jobSyncInitialBytes: Int
    var jobSyncRequests: Int
    var jobSyncBytes: Int
    var pollRequests: Int
    var pollBytes: Int
    var changes: Int
    var jobSyncChangesReceived: Int

    var perMinute: Double { 60 / self.settings.window.secondsValue }
    var pollScale: Double { Double(self.settings.watched) / Double(self.settings.polledSample) }
}

enum CostBenchmark {
    static func run(_ settings: CostSettings) async throws -> CostResult {
        try await SupabaseLocal.withRunning { stack in
            let ids = try await Fixtures.insertJobs(settings.watched, on: stack)
            let sync = try JobSyncUnderTest.make(stack: stack)
            let poller = PlainPoller(
                baseURL: stack.baseURL.absoluteString, apiKey: stack.configuration.classifyAPIKey,
                transport: CountingTransport())
            return try await withThrowingTaskGroup(of: Void.self) { group in
                defer { group.cancelAll() }
                group.addTask { try await sync.run() }
                sync.client.watch(try ids.map { try JobID($0) })
                let live = await waitUntil(timeout: .seconds(180)) {
                    sync.client.transportMode == .live && sync.client.store.jobs.count == ids.count
                }
                guard live else { throw BenchError("JobSync did not become live with \(ids.count) jobs") }
                let initial = sync.rest.snapshot
                for id in ids.prefix(settings.polledSample) {
                    group.addTask { _ = await poller.poll(id) }
                }
                // 1 % of the watched jobs change per minute (progress updates, nothing finishes).
                let interval = Duration.seconds(60) / max(1, settings.watched / 100)
                let changes = ChangeCounter()
                group.addTask {
                    var step = 0
                    while !Task.isCancelled {
                        try await Task.sleep(for: interval)
                        try await Fixtures.touch(ids[Int.random(in: ids.indices)], step: step, on: stack)
                        step += 1
                        changes.increment()
                    }
                }
                try await Task.sleep(for: settings.warmUp)
                let syncBefore = sync.rest.snapshot
                let pollBefore = poller.transport.snapshot
                let changesBefore = changes.value
                let receivedBefore = sync.client.statistics.changesReceived
                try await Task.sleep(for: settings.window)
                let syncAfter = sync.rest.snapshot
                let pollAfter = poller.transport.snapshot
                return CostResult(
                    settings: settings,
                    jobSyncInitialRequests: initial.requests, jobSyncInitialBytes: initial.bytes,
                    jobSyncRequests: syncAfter.requests - syncBefore.requests,
                    jobSyncBytes: syncAfter.bytes - syncBefore.bytes,
                    pollRequests: pollAfter.requests - pollBefore.requests,
                    pollBytes: pollAfter.bytes - pollBefore.bytes,
                    changes: changes.value - changesBefore,
                    jobSyncChangesReceived: sync.client.statistics.changesReceived - receivedBefore)
            }
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
