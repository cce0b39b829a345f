import Foundation
import JobSync
import Logging
import SupabaseLocal

extension Adapters {
    /// The error message of the demo's failing job (one of the service's documented messages).
    static let demoFailure = "Failed to process PDF: File appears to be corrupted"

    /// `jobwatch demo`: an embedded local stack, a few simulated jobs (one fails), a Realtime outage midway, the
    /// live view and the summary. Returns `completed` when every job ended as scripted.
    static func demo(_ command: Jobwatch.Demo, writer: OutputWriter, logger: Logger) async throws -> ExitStatus {
        var configuration = SupabaseLocalConfiguration()
        configuration.logger = Self.stackLogger(command.output.verbose, writer: writer)
        do {
            return try await SupabaseLocal.withRunning(configuration) { stack in
                try await Self.runDemo(command, stack: stack, writer: writer, logger: logger)
            }
        } catch let error as JobwatchError {
            throw error
        } catch {
            throw JobwatchError(.localStack, "the embedded local stack could not start")
        }
    }

    private static func runDemo(
        _ command: Jobwatch.Demo,
        stack: SupabaseLocalStack,
        writer: OutputWriter,
        logger: Logger
    ) async throws -> ExitStatus {
        var simulation = JobSimulator.Configuration()
        simulation.pages = 6...10
        simulation.queueDelay = .milliseconds(800)
        simulation.pageInterval = .milliseconds(800)
        simulation.failureRate = 0
        simulation.seed = 2026
        let simulator = JobSimulator(backend: stack.backend, configuration: simulation)
        var scripted = simulator.plan(count: command.jobs)
        // The second job fails on its third page with a documented error; the others complete.
        scripted[1].error = Self.demoFailure
        scripted[1].failAtPage = 3
        scripted[1].result = nil
        let plans = scripted
        for plan in plans {
            _ = try await stack.backend.insert([
                "id": .string(plan.id), "status": .string("queued"), "progress": .string("Queued"),
            ])
        }
        let ids = try JobID.parseAll(plans.map(\.id))
        writer.line(
            "jobwatch demo: \(ids.count) jobs on a local stack at \(stack.baseURL.absoluteString); one will fail, "
                + "and Realtime drops for a few seconds midway.",
            to: .stderr
        )
        let settings = ConnectionSettings(
            source: .supabase(url: stack.baseURL, table: "jobs", schema: "public"),
            apiKey: Secret(value: stack.anonKey),
            accessToken: nil
        )
        let session = JobSyncWatchSession(
            connection: try Connection(settings: settings, cacheFile: nil, logger: logger)
        )
        let faults = stack.faults
        let status = await withTaskGroup(of: ExitStatus?.self) { group in
            group.addTask {
                try? await simulator.drive(plans)
                return nil
            }
            group.addTask {
                // Midway, Realtime goes away: sockets dropped, new handshakes refused for 2 s; the jobs run long enough
                // (up to 10 pages × 0.8 s) for the view to come back to realtime before they end.
                try? await ContinuousClock().sleep(for: .milliseconds(2500))
                faults.refuseConnections(ConnectionRefusal(status: 503, retryAfterSeconds: 1), for: .seconds(2))
                faults.dropAllConnections(code: 1012, reason: "demo outage")
                return nil
            }
            group.addTask {
                await WatchCommandRunner.run(
                    session: session,
                    ids: ids,
                    timeout: .seconds(60),
                    options: command.output,
                    writer: writer,
                    logger: logger,
                    onFinish: { status in Foundation.exit(Self.demoExit(status, writer: writer).rawValue) }
                )
            }
            var status: ExitStatus = .interrupted
            for await result in group {
                if let result {
                    status = result
                    group.cancelAll()
                }
            }
            return status
        }
        return Self.demoExit(status, writer: writer)
    }

    /// One job fails on purpose: a watch ending with exit 1 and nothing worse is the scripted outcome (exit 0).
    static func demoExit(_ status: ExitStatus, writer: OutputWriter) -> ExitStatus {
        guard status == .failed else { return status }
        writer.line("jobwatch demo: the failure was part of the script; the demo exits 0.", to: .stderr)
        return .completed
    }
}
