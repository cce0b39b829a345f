import Foundation
import JobSync
import SupabaseLocal
import NIOConcurrencyHelpers
import Testing

/// Seeded randomized soak: 1,000 jobs started in waves while random faults hit the socket, the change stream,
/// tokens and REST; the same invariants as the fault matrix. The fault choices and job plans come from the seed
/// (timing on a shared machine does not).
///
/// Environment: `JOBSYNC_SOAK_SEED` (default: random, printed), `JOBSYNC_SOAK_SECONDS` (fault phase, default 60),
/// `JOBSYNC_SOAK_JOBS` (default 1,000).
extension JobSyncIntegration {
    @Suite("Soak: seeded random faults, 1,000 jobs")
    struct SoakTests {
        struct Parameters: Sendable {
            var seed: UInt64
            var seconds: Int
            var jobs: Int

            static func fromEnvironment() -> Parameters {
                let environment = ProcessInfo.processInfo.environment
                return Parameters(
                    seed: environment["JOBSYNC_SOAK_SEED"].flatMap { UInt64($0) } ?? UInt64.random(in: 1...UInt64.max),
                    seconds: environment["JOBSYNC_SOAK_SECONDS"].flatMap { Int($0) }.map { max(4, $0) } ?? 60,
                    jobs: environment["JOBSYNC_SOAK_JOBS"].flatMap { Int($0) }.map { max(10, $0) } ?? 1_000)
            }
        }

        @Test("random faults while 1,000 jobs run: no lost outcome, no regression, no duplicate, store = server")
        func soak() async throws {
            let parameters = Parameters.fromEnvironment()
            let reproduce = "JOBSYNC_SOAK_SEED=\(parameters.seed) JOBSYNC_SOAK_SECONDS=\(parameters.seconds) "
                + "JOBSYNC_SOAK_JOBS=\(parameters.jobs)"
            print("soak: \(reproduce)")
            var settings = IntegrationRun.Settings()
            settings.jobs = parameters.jobs
            settings.simulator.seed = parameters.seed
            settings.userTokens = true
            settings.convergenceDeadline = .seconds(60)
        settings.liveDeadline = .seconds(60)
            settings.label = "(reproduce with \(reproduce))"
            let log = FaultLog()
            let scenario = IntegrationRun.Scenario(
                name: "soak",
                during: { context in
                    try await Self.injectFaults(context, parameters: parameters, log: log)
                },
                drive: { context in
                    try await Self.driveInWaves(context, parameters: parameters)
                })
            defer { print("soak: faults injected: \(log.entries.withLockedValue { $0 }.joined(separator: ", "))") }
            try await IntegrationRun.run(scenario, settings: settings)
            print("soak: passed (\(reproduce))")
        }

        /// Starts the planned jobs in waves, one every 2 s over the fault phase; some queued jobs of each wave are
        /// deleted instead of started.
        static func driveInWaves(_ context: IntegrationRun.Context, parameters: Parameters) async throws {
            var random = SplitMix64(seed: parameters.seed ^ 0x5EED)
            let waves = max(1, parameters.seconds / 2)
            let size = (context.plans.count + waves - 1) / waves
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, start) in stride(from: 0, to: context.plans.count, by: size).enumerated() {
                    if index > 0 { try await Task.sleep(for: .seconds(2)) }
                    var wave = Array(context.plans[start..<min(start + size, context.plans.count)])
                    // About 2 % of jobs are deleted while still queued.
                    let doomed = wave.filter { _ in Double.random(in: 0..<1, using: &random) < 0.02 }.map(\.id)
                    if !doomed.isEmpty {
                        try await context.deleteUnfinished(doomed)
                        wave.removeAll { doomed.contains($0.id) }
                    }
                    group.addTask { try await context.simulator.drive(wave) }
                }
                try await group.waitForAll()
            }
        }

        /// Injects one random fault at a time for `parameters.seconds`, then clears every fault.
        static func injectFaults(
            _ context: IntegrationRun.Context, parameters: Parameters, log: FaultLog
        ) async throws {
            var random = SplitMix64(seed: parameters.seed)
            let faults = context.faults
            let clock = ContinuousClock()
            let end = clock.now.advanced(by: .seconds(parameters.seconds))
            func milliseconds(_ range: ClosedRange<Int>) -> Duration {
                .milliseconds(Int.random(in: range, using: &random))
            }
            while clock.now < end {
                try await Task.sleep(for: milliseconds(300...2_500))
                let choice = Int.random(in: 0...12, using: &random)
                let name: String
                switch choice {
                case 0:
                    name = "clean close"
                    faults.dropAllConnections(code: 1000)
                case 1:
                    name = "abrupt drop"
                    faults.dropAllConnections(code: nil)
                case 2:
                    let duration = milliseconds(1_000...3_000)
                    name = "stall \(duration)"
                    faults.stall(for: duration)
                    try await Task.sleep(for: duration)
                case 3:
                    let duration = milliseconds(500...2_000)
                    name = "restart, refused \(duration)"
                    faults.restart(refuseFor: duration)
                    try await Task.sleep(for: duration)
                case 4:
                    let duration = milliseconds(1_000...5_000)
                    name = "drop + refuse 503 \(duration)"
                    faults.refuseConnections(ConnectionRefusal(status: 503), for: duration)
                    faults.dropAllConnections(code: nil)
                    try await Task.sleep(for: duration)
                case 5:
                    let fraction = Double(Int.random(in: 10...50, using: &random)) / 100
                    let duration = milliseconds(2_000...5_000)
                    name = "drop \(fraction) of changes for \(duration)"
                    faults.dropChanges(fraction: fraction)
                    try await Task.sleep(for: duration)
                    faults.dropChanges(fraction: 0)
                case 6:
                    let delay = milliseconds(500...2_000)
                    name = "system ok delayed \(delay) + clean close"
                    faults.setSystemOkDelay(delay)
                    faults.dropAllConnections(code: 1000)
                    try await Task.sleep(for: delay + .milliseconds(500))
                    faults.setSystemOkDelay(nil)
                case 7:
                    name = "token expiry"
                    context.expireTokens()
                case 8:
                    let duration = milliseconds(2_000...5_000)
                    name = "413 truncation for \(duration)"
                    faults.setMaxRecordBytes(400)
                    try await Task.sleep(for: duration)
                    faults.setMaxRecordBytes(nil)
                case 9:
                    let duration = milliseconds(1_000...3_000)
                    name = "REST 429 for \(duration)"
                    faults.failREST(RESTFailure(status: 429, retryAfterSeconds: 1))
                    try await Task.sleep(for: duration)
                    faults.failREST(nil)
                case 10:
                    let duration = milliseconds(1_000...3_000)
                    name = "REST 500 for \(duration)"
                    faults.failREST(RESTFailure(status: 500))
                    try await Task.sleep(for: duration)
                    faults.failREST(nil)
                case 11:
                    let delay = milliseconds(200...800)
                    let duration = milliseconds(1_000...3_000)
                    name = "changes delayed \(delay) for \(duration)"
                    faults.delayChanges(by: delay)
                    try await Task.sleep(for: duration)
                    faults.delayChanges(by: .zero)
                default:
                    name = "channels crash"
                    faults.crashChannels()
                }
                log.entries.withLockedValue { $0.append(name) }
            }
            faults.reset()
        }
    }
}

/// The faults a soak run injected, in order (printed at the end).
final class FaultLog: Sendable {
    let entries = NIOLockedValueBox<[String]>([])
}
