import ArgumentParser
import Foundation
import JobSync

extension Jobwatch {
    /// `jobwatch status <job-id>…`
    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print the current state of jobs once (final jobs come from the result cache).",
            discussion: """
                One line per job on stdout; with --json (default when stdout is not a terminal), one JSON \
                object per job (schema in docs/jobwatch-json.md). Exit status: 0 every job was found and none \
                failed (running jobs count as found), 1 a job failed, 2 invalid input, 3 --timeout elapsed, \
                4 a job was not found, 5 the service is unreachable or rejected the key.
                """
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var cache: CacheOptions

        @Option(help: ArgumentHelp("Give up after this many seconds (exit 3).", valueName: "seconds"))
        var timeout: Double = 30

        @Argument(help: ArgumentHelp("The job ids (UUIDs) to read.", valueName: "job-id"))
        var jobIDs: [String] = []

        func validate() throws {
            guard !self.jobIDs.isEmpty else {
                throw ValidationError("give at least one job id")
            }
            do {
                _ = try JobID.parseAll(self.jobIDs)
            } catch {
                throw ValidationError(error.message)
            }
            try self.connection.validateSettings()
            guard self.timeout.isFinite, self.timeout > 0, self.timeout <= 86_400 else {
                throw ValidationError("--timeout must be a number of seconds greater than 0")
            }
        }

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            let settings = try self.connection.resolve(environment: environment)
            let ids = try JobID.parseAll(self.jobIDs)
            let writer = OutputWriter()
            let reader = try Adapters.statusReader(
                settings: settings,
                cacheFile: self.cache.cacheFile(environment: environment, settings: settings),
                logger: self.output.logger(writer: writer)
            )
            let terminal = TerminalInfo.current()
            let mode = OutputMode.choose(json: self.output.json, quiet: self.output.quiet, terminal: terminal)
            let limit = Duration.milliseconds(Int64((self.timeout * 1000).rounded(.up)))
            let states = try await Self.read(ids, from: reader, within: limit) {
                // Exits at once: waiting for the cancelled request to unwind can hang on Linux (see
                // WatchCommandRunner).
                writer.error("no answer within \(HumanFormat.elapsed(limit))")
                Foundation.exit(ExitStatus.timeout.rawValue)
            }
            guard let states else {
                writer.error("no answer within \(HumanFormat.elapsed(limit))")
                throw ExitCode(ExitStatus.timeout.rawValue)
            }
            let format = HumanFormat(colors: terminal.stdoutColors)
            for id in ids {
                let text =
                    mode.data == .json
                    ? JSONLines.statusLine(id: id, snapshot: states[id])
                    : format.statusLine(id: id, snapshot: states[id])
                writer.line(text, to: .stdout)
            }
            throw ExitCode(Self.exitStatus(ids: ids, states: states).rawValue)
        }

        /// Reads with a time limit; `nil` when the limit elapsed first.
        static func read<C: Clock<Duration>>(
            _ ids: [JobID],
            from reader: any StatusReader,
            within limit: Duration,
            clock: C = ContinuousClock(),
            onTimeout: @escaping @Sendable () -> Void = {}
        ) async throws -> [JobID: JobSnapshot]? {
            try await withThrowingTaskGroup(of: [JobID: JobSnapshot]?.self) { group in
                group.addTask { try await reader.read(ids) }
                group.addTask {
                    try await clock.sleep(for: limit)
                    onTimeout()
                    return nil
                }
                defer { group.cancelAll() }
                return try await group.next() ?? nil
            }
        }

        /// 4 if any job is missing, else 1 if any failed, else 0.
        static func exitStatus(ids: [JobID], states: [JobID: JobSnapshot]) -> ExitStatus {
            ids.map { id -> ExitStatus in
                guard let state = states[id] else { return .notFound }
                return state.phase == .failed ? .failed : .completed
            }.max() ?? .completed
        }
    }
}

extension HumanFormat {
    /// A `status` line: full id, status, then the result, error or progress.
    func statusLine(id: JobID, snapshot: JobSnapshot?) -> String {
        guard let snapshot else {
            return "\(id.rawValue)  " + "not_found".padding(toLength: 11, withPad: " ", startingAt: 0)
                + "no such job (or not visible with this key)"
        }
        var detail = ""
        switch snapshot.phase {
        case .completed:
            detail = snapshot.result.map(self.resultText) ?? "no result"
        case .failed:
            detail = snapshot.error.map(Self.sanitized) ?? "no error message"
        case .queued, .processing, .unknown:
            detail = snapshot.progress.map(Self.sanitized) ?? ""
        }
        let status = snapshot.phase.name.padding(toLength: 11, withPad: " ", startingAt: 0)
        return "\(id.rawValue)  \(status)\(detail)"
    }
}
