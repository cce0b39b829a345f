import Foundation
import UnixSignals
import JobSync
import Logging
import ServiceLifecycle
import SupabaseLocal

extension Adapters {
    /// `jobwatch serve`: runs SupabaseLocal until SIGINT/SIGTERM, printing the URL and the local keys.
    static func serve(_ command: Jobwatch.Serve, writer: OutputWriter, logger: Logger) async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.host = command.host
        configuration.port = command.port
        configuration.logger = Self.stackLogger(command.verbose, writer: writer)
        if let postgres = command.postgres {
            // The URL may hold a password: errors name the option, never the URL.
            do {
                configuration.backend = PostgresJobsBackend(
                    configuration: try .init(url: postgres), logger: configuration.logger)
            } catch {
                throw JobwatchError(.localStack, "--postgres: the PostgreSQL URL cannot be used (\(type(of: error)))")
            }
        }
        let simulate = command.simulate
        let service = LocalStackService(configuration: configuration) { stack in
            writer.line("# SupabaseLocal listening on \(stack.baseURL.absoluteString) (Ctrl-C to stop)", to: .stderr)
            writer.line(
                "# These are throwaway keys made up for this local process, printed on purpose; never print real keys.",
                to: .stderr
            )
            writer.line("export SUPABASE_URL=\(stack.baseURL.absoluteString)", to: .stdout)
            writer.line("export SUPABASE_ANON_KEY=\(stack.anonKey)", to: .stdout)
            writer.line("export SUPABASE_SERVICE_KEY=\(stack.serviceKey)", to: .stdout)
            // A signed-in user's token (role `authenticated`, 24 h): what private Broadcast channels need (the
            // shipped read policy admits `authenticated`, not `anon`), so `--feed broadcast` works as printed.
            writer.line(
                "export SUPABASE_ACCESS_TOKEN=\(stack.mintUserToken(lifetime: .seconds(86_400)))", to: .stdout)
            writer.line("export JOBSYNC_BASE_URL=\(stack.baseURL.absoluteString)", to: .stdout)
            writer.line("export JOBSYNC_API_KEY=\(stack.configuration.classifyAPIKey)", to: .stdout)
            if simulate {
                var settings = JobSimulator.Configuration()
                settings.queueDelay = .seconds(1)
                settings.pageInterval = .milliseconds(500)
                let plans = try await stack.startSimulation(count: 5, configuration: settings)
                writer.line("export JOB_IDS=\"\(plans.map(\.id).joined(separator: " "))\"", to: .stdout)
                writer.line(
                    "# simulating 5 jobs: jobwatch watch $JOB_IDS (or, over Broadcast: jobwatch watch --feed broadcast $JOB_IDS)",
                    to: .stderr)
            }
        }
        var group = ServiceGroupConfiguration(
            services: [.init(service: service)],
            gracefulShutdownSignals: [.sigint, .sigterm],
            logger: logger
        )
        group.maximumGracefulShutdownDuration = .seconds(5)
        do {
            try await ServiceGroup(configuration: group).run()
        } catch let error as JobwatchError {
            throw error
        } catch {
            throw JobwatchError(
                .localStack,
                "the local stack stopped: cannot listen on \(command.host):\(command.port)?"
            )
        }
    }
}

extension Adapters {
    /// The embedded stack's logger: debug with `--verbose`, else only critical messages (its shutdown chatter is
    /// not for users).
    static func stackLogger(_ verbose: Bool, writer: OutputWriter) -> Logger {
        let level: Logger.Level = verbose ? .debug : .critical
        return Logger(label: "SupabaseLocal") { label in WriterLogHandler(writer: writer, label: label, logLevel: level)
        }
    }
}

/// Runs a SupabaseLocal stack as a `Service`: started, announced through `onStarted`, stopped on graceful shutdown.
struct LocalStackService: Service, CustomStringConvertible {
    /// Safe to log (ServiceGroup logs its services).
    var description: String { "SupabaseLocal stack" }

    let configuration: SupabaseLocalConfiguration
    let onStarted: @Sendable (SupabaseLocalStack) async throws -> Void

    func run() async throws {
        try await cancelWhenGracefulShutdown {
            try await SupabaseLocal.withRunning(self.configuration) { stack in
                try await self.onStarted(stack)
                // Runs until the graceful shutdown cancels this task.
                let (stream, continuation) = AsyncStream<Void>.makeStream()
                for await _ in stream {}
                withExtendedLifetime(continuation) {}
            }
        }
    }
}
