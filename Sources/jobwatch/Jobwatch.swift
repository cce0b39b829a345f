import ArgumentParser
import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// `jobwatch`: watch document-classification jobs stored in Supabase, live.
@main
struct Jobwatch: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "jobwatch",
        abstract: "Watch document-classification jobs live (Supabase Realtime, REST polling fallback).",
        discussion: """
            Without a subcommand, runs the demo when no Supabase project is configured (SUPABASE_URL unset), \
            and prints this help otherwise.

            Keys come from the environment (SUPABASE_ANON_KEY or SUPABASE_KEY, SUPABASE_ACCESS_TOKEN, \
            JOBSYNC_API_KEY) or from --key-file, never from a flag, and are never printed.

            \(ExitStatus.helpText)
            """,
        subcommands: [Watch.self, Status.self, Follow.self, Serve.self, Demo.self, Admin.self]
    )

    func run() async throws {
        if ProcessInfo.processInfo.environment.nonEmpty("SUPABASE_URL") == nil {
            let demo = try Demo.parse([])
            try await demo.run()
        } else {
            throw CleanExit.helpRequest(self)
        }
    }

    /// The entry point: parses, runs, and maps errors to ``ExitStatus`` codes (usage errors exit 2, not
    /// argument-parser's 64; ``JobwatchError``s exit with their code's status).
    static func main() async {
        // A closed stdout (`jobwatch watch … | head -1`) must not kill the process mid-write.
        signal(SIGPIPE, SIG_IGN)
        let writer = OutputWriter()
        do {
            var command = try await Self.asyncParseAsRoot(nil)
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
            Foundation.exit(ExitStatus.completed.rawValue)
        } catch {
            Foundation.exit(Self.report(error, writer: writer))
        }
    }

    /// Prints `error` the way the user should see it and returns the exit code.
    static func report(_ error: any Error, writer: OutputWriter) -> Int32 {
        if let error = error as? JobwatchError {
            writer.error(error.message)
            return error.code.exitStatus.rawValue
        }
        var code = Self.exitCode(for: error).rawValue
        if code == EXIT_FAILURE, !(error is ExitCode) {
            // Not one of ours nor argument-parser's: its text could hold anything, so only its type is shown.
            writer.error("unexpected failure (\(type(of: error)))")
            return ExitStatus.unreachable.rawValue
        }
        let text = Self.fullMessage(for: error)
        if code == ExitCode.validationFailure.rawValue {
            code = ExitStatus.usage.rawValue
        }
        if !text.isEmpty {
            writer.line(text, to: code == 0 ? .stdout : .stderr)
        }
        return code
    }
}
