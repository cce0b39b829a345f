import ArgumentParser
import Foundation

extension Jobwatch {
    /// `jobwatch serve`: a local stand-in for Supabase (Realtime, PostgREST, the status endpoint).
    struct Serve: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Run a local Supabase stand-in (Realtime + PostgREST + status endpoint) until Ctrl-C.",
            discussion: """
                Prints the URL and the keys to export on stdout. These are throwaway keys made up for this \
                local process and printed on purpose; this is the only command that prints keys.
                """
        )

        @Option(help: ArgumentHelp("Loopback address to listen on (127.0.0.1, ::1 or localhost).", valueName: "host"))
        var host: String = "127.0.0.1"

        @Option(help: ArgumentHelp("Port to listen on (0: any free port).", valueName: "port"))
        var port: Int = 54321

        @Option(
            help: ArgumentHelp(
                "Keep jobs in this PostgreSQL database (read through a wal2json slot, as Supabase does) "
                    + "instead of in memory (needs wal_level=logical and the wal2json plugin).",
                valueName: "postgres-url"
            )
        )
        var postgres: String?

        @Flag(help: "Run the job simulator: new jobs move through queued → processing → completed or failed.")
        var simulate = false

        @Flag(name: .shortAndLong, help: "Debug logs on stderr.")
        var verbose = false

        func validate() throws {
            // The stack's keys are printed and it has an admin endpoint: it must never be reachable from elsewhere.
            guard ["127.0.0.1", "::1", "localhost"].contains(self.host) else {
                throw ValidationError("--host must be a loopback address (127.0.0.1, ::1 or localhost)")
            }
            guard (0...65_535).contains(self.port) else {
                throw ValidationError("--port must be between 0 and 65535")
            }
            if let postgres = self.postgres {
                guard let url = URL(string: postgres), ["postgres", "postgresql"].contains(url.scheme ?? "") else {
                    throw ValidationError("--postgres must be a postgres:// URL")
                }
            }
        }

        func run() async throws {
            let writer = OutputWriter()
            let logger = OutputOptions.logger(verbose: self.verbose, writer: writer)
            try await Adapters.serve(self, writer: writer, logger: logger)
        }
    }

    /// `jobwatch demo`: the whole picture with no project: a local stack, a few jobs, a Realtime outage.
    struct Demo: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Watch a few jobs on an embedded local Supabase; Realtime drops midway (no project needed).",
            discussion: """
                Starts the local stand-in in this process, creates a handful of jobs (one fails with \
                "Failed to process PDF: File appears to be corrupted"), drops the Realtime connection midway so \
                the view switches to polling and back, and ends with the summary. Exits 0 when the demo ran as \
                scripted.
                """
        )

        @OptionGroup var output: OutputOptions

        @Option(help: ArgumentHelp("How many jobs to create (2–20).", valueName: "count"))
        var jobs: Int = 5

        func validate() throws {
            guard (2...20).contains(self.jobs) else {
                throw ValidationError("--jobs must be between 2 and 20")
            }
        }

        func run() async throws {
            let writer = OutputWriter()
            let status = try await Adapters.demo(self, writer: writer, logger: self.output.logger(writer: writer))
            throw ExitCode(status.rawValue)
        }
    }
}
