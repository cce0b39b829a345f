import ArgumentParser
import Foundation
import JobSync
import Logging
import ServiceLifecycle
import SupabaseREST
import UnixSignals

/// Where a new consumer starts (`--since`): the CLI's reading of `OutcomeConsumer.StartPosition`.
enum FollowStart: Sendable, Hashable {
    /// Outcomes from now on (the default).
    case now
    /// Every outcome the table still holds.
    case beginning
    /// Outcomes of jobs that finished at or after this time.
    case since(JobTimestamp)

    /// Parses `now`, `beginning` or an ISO 8601 time (`2026-12-01T08:00:00Z`; without an offset, UTC).
    init(argument: String) throws(JobwatchError) {
        let text = argument.trimmingCharacters(in: .whitespaces)
        switch text.lowercased() {
        case "now": self = .now
        case "beginning": self = .beginning
        default:
            guard let time = JobTimestamp(text) else {
                throw JobwatchError(
                    .invalidInput,
                    "--since '\(Redact.shorten(argument))' is not a time: expected 'beginning', 'now' or an ISO 8601 "
                        + "time such as 2026-12-01T08:00:00Z"
                )
            }
            self = .since(time)
        }
    }
}

extension Jobwatch {
    /// `jobwatch follow`
    struct Follow: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print every job outcome (completed, failed, deleted) as it happens, until stopped.",
            discussion: """
                Follows every job of the table and writes one line per outcome on stdout: with --json, or \
                when stdout is not a terminal, a JSON Lines record ("event": "outcome"; schema in \
                docs/jobwatch-json.md). Runs until SIGINT (Ctrl-C) or SIGTERM, then exits 0.

                With --consumer NAME the follow is durable: its position and acknowledgements live in the \
                cache file (--cache, or the per-project default), so a later run with the same name prints \
                the outcomes reached while nothing ran and never prints again an outcome already written. \
                Each outcome is acknowledged once its line is written to stdout; an outcome whose write \
                fails (the reader closed the pipe) is not, and the follow ends. After a crash, outcomes whose \
                acknowledgement had not reached the file are printed again (at least once). Without --consumer \
                nothing is remembered.

                --since decides where a new consumer starts (default now); an existing consumer resumes \
                where it stopped.

                With --exec CMD, each outcome's JSON record goes to `/bin/sh -c CMD` on its stdin instead of \
                stdout (environment: JOBWATCH_JOB_ID, JOBWATCH_OUTCOME, JOBWATCH_DELIVERY); exit status 0 \
                acknowledges it, anything else rejects it: it is delivered again after a backoff starting at \
                --retry-delay, and becomes a dead letter after --max-attempts (reported on stderr; list \
                them with --dead-letters --consumer NAME).

                FLEET MODE (--fleet, needs --consumer): several follows on different machines share one \
                consumer name, each with its own cache file, and each outcome is printed by exactly one of them. \
                Before printing an outcome a follow claims it in the project's database (POST \
                /rest/v1/rpc/jobsync_claim, from supabase/migrations/20261202000000_jobsync_claims.sql, which \
                must be applied) for --lease seconds (default 30, at least 3), renews the claim while the outcome \
                is open, and acknowledges it there (jobsync_ack) once it is handled. A follow that dies holding \
                claims loses them to another one when the lease runs out (the database's clock): those outcomes \
                are printed again by the other follow (at least once). --holder names this follow in the claims \
                (default: host name, process id and a random suffix); every follow needs its own name. The \
                claim functions are executable by the authenticated and service_role roles, not anon: set \
                SUPABASE_ACCESS_TOKEN to a user's token, or use a service key (SUPABASE_KEY or --key-file), not \
                the anon key. At start, follow --fleet checks that the key may call jobsync_claim (a call with a \
                job id that is not a UUID, which the database rejects before it changes anything) and exits 5 \
                when the key's role is refused or the migration is missing.

                EXIT STATUS:
                  0    stopped by SIGINT or SIGTERM, or stdout was closed (e.g. | head)
                  1    stdout could not be written
                  2    usage error or invalid input (URL, missing key, --since)
                  5    cannot reach the service, authentication failed, or --fleet cannot claim
                """
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var feed: FeedOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var cache: CacheOptions

        @Option(
            help: ArgumentHelp(
                "A durable consumer name: its state lives in the cache file (letters, digits, . _ : -).",
                valueName: "name"
            )
        )
        var consumer: String?

        @Option(
            name: .customLong("filter"),
            help: ArgumentHelp(
                "Only jobs whose row matches: COLUMN=eq.VALUE, COLUMN=neq.VALUE, COLUMN=in.(A,B) or COLUMN=is.null; "
                    + "repeat to require several (a deletion carries no row: it is printed only for a job already "
                    + "being handled).",
                valueName: "column=op.value"
            )
        )
        var filters: [String] = []

        @Option(
            help: ArgumentHelp(
                "Where a new consumer starts: now (default), beginning, or an ISO 8601 time.",
                valueName: "time|beginning"
            )
        )
        var since: String?

        @Option(
            name: .customLong("exec"),
            help: ArgumentHelp("Run this shell command per outcome, the JSON record on its stdin.", valueName: "cmd")
        )
        var exec: String?

        @Option(
            name: .customLong("max-attempts"),
            help: ArgumentHelp("With --exec: deliveries of an outcome before it becomes a dead letter.")
        )
        var maxAttempts = 5

        @Option(
            name: .customLong("retry-delay"),
            help: ArgumentHelp(
                "With --exec: seconds before the first redelivery of a rejected outcome (doubling after each).",
                valueName: "seconds"
            )
        )
        var retryDelay = 1.0

        @Flag(
            name: .customLong("dead-letters"),
            help: "List the dead letters of --consumer NAME and exit."
        )
        var deadLetters = false

        @Flag(
            help: ArgumentHelp(
                "Share --consumer NAME with other follows, each outcome printed by one of them (needs a user "
                    + "token or a service key, not the anon key).")
        )
        var fleet = false

        @Option(
            help: ArgumentHelp(
                "With --fleet: this follow's name in the claims (default: host, process id, random suffix).",
                valueName: "name"
            )
        )
        var holder: String?

        @Option(
            help: ArgumentHelp(
                "With --fleet: seconds a claim lasts without renewal, the wait before a dead follow's outcomes "
                    + "pass to another (default 30, at least 3).",
                valueName: "seconds"
            )
        )
        var lease: Int?

        /// The shortest lease `--lease` accepts (the library's minimum).
        static let minimumLeaseSeconds = 3
        /// The longest lease `--lease` accepts (the claim function's maximum).
        static let maximumLeaseSeconds = 86_400
        /// The lease without `--lease`.
        static let defaultLeaseSeconds = 30

        func validate() throws {
            if let consumer = self.consumer {
                try validateName(consumer, option: "--consumer", kind: "consumer")
                guard !self.cache.noCache else {
                    throw ValidationError(
                        "--consumer keeps its state in the cache file: drop --no-cache (or pass --cache PATH)")
                }
            }
            if self.deadLetters {
                guard self.consumer != nil else {
                    throw ValidationError("--dead-letters needs --consumer NAME")
                }
                guard self.exec == nil, self.since == nil else {
                    throw ValidationError("--dead-letters only lists; it takes no --exec or --since")
                }
            }
            try self.validateFleet()
            for filter in self.filters {
                do {
                    _ = try Self.filter(filter)
                } catch {
                    throw ValidationError(error.message)
                }
            }
            if let since = self.since {
                do {
                    _ = try FollowStart(argument: since)
                } catch {
                    throw ValidationError(error.message)
                }
            }
            if let exec = self.exec, exec.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty {
                throw ValidationError("--exec needs a command")
            }
            guard (1...1000).contains(self.maxAttempts) else {
                throw ValidationError("--max-attempts must be a whole number from 1 to 1000")
            }
            guard self.retryDelay.isFinite, self.retryDelay > 0, self.retryDelay <= 3600 else {
                throw ValidationError("--retry-delay must be a number of seconds greater than 0, at most 3600")
            }
            guard self.connection.source == .supabase else {
                throw ValidationError("follow needs --source supabase (the status endpoint cannot list jobs)")
            }
            try self.feed.validate(source: self.connection.source, allJobs: true)
            try self.connection.validateSettings()
        }

        /// The checks of `--fleet`, `--holder` and `--lease`.
        private func validateFleet() throws {
            guard self.fleet else {
                guard self.holder == nil, self.lease == nil else {
                    throw ValidationError("--holder and --lease need --fleet")
                }
                return
            }
            guard self.consumer != nil else {
                throw ValidationError("--fleet needs --consumer NAME (the name the follows share)")
            }
            guard !self.deadLetters else {
                throw ValidationError("--dead-letters only lists; it takes no --fleet")
            }
            if let holder = self.holder {
                try validateName(holder, option: "--holder", kind: "holder")
            }
            if let lease = self.lease, !(Self.minimumLeaseSeconds...Self.maximumLeaseSeconds).contains(lease) {
                throw ValidationError(
                    "--lease must be a whole number of seconds from \(Self.minimumLeaseSeconds) to "
                        + "\(Self.maximumLeaseSeconds)")
            }
        }

        /// The consumer's settings, from the options.
        func parameters(cacheFile: URL?) throws(JobwatchError) -> FollowParameters {
            let start = try self.since.map { (text: String) throws(JobwatchError) in try FollowStart(argument: text) }
            if self.consumer != nil && cacheFile == nil {
                throw JobwatchError(
                    .invalidInput, "no cache file for --consumer: pass --cache PATH (no HOME or XDG_CACHE_HOME)")
            }
            return FollowParameters(
                consumer: self.consumer,
                stateFile: self.consumer == nil ? nil : cacheFile,
                start: start ?? .now,
                maximumAttempts: self.maxAttempts,
                retryDelay: .milliseconds(Int64((self.retryDelay * 1000).rounded(.up))),
                fleet: self.fleet
                    ? FollowFleet(holder: self.holder, lease: .seconds(self.lease ?? Self.defaultLeaseSeconds)) : nil,
                filters: try self.filters.map(Self.filter)
            )
        }

        /// Parses `COLUMN=OP.VALUE` (`eq`, `neq`, `in.(A,B)`, `is.null`) as PostgREST writes it.
        static func filter(_ argument: String) throws(JobwatchError) -> PostgRESTFilter {
            let shown = Redact.shorten(argument)
            let parts = argument.split(separator: "=", maxSplits: 1).map(String.init)
            let columnAllowed =
                parts.first.map { column in
                    !column.isEmpty
                        && column.unicodeScalars.allSatisfy {
                            $0.isASCII && ($0 == "_" || CharacterSet.alphanumerics.contains($0))
                        }
                } ?? false
            guard parts.count == 2, columnAllowed else {
                throw JobwatchError(.invalidInput, "--filter '\(shown)' is not COLUMN=OP.VALUE (e.g. tenant_id=eq.42)")
            }
            let (column, expression) = (parts[0], parts[1])
            if expression == "is.null" { return PostgRESTFilter(column, .isNull) }
            if expression.hasPrefix("eq.") { return PostgRESTFilter(column, .eq(String(expression.dropFirst(3)))) }
            if expression.hasPrefix("neq.") { return PostgRESTFilter(column, .neq(String(expression.dropFirst(4)))) }
            if expression.hasPrefix("in.("), expression.hasSuffix(")") {
                let list = expression.dropFirst(4).dropLast()
                let values = list.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard !list.isEmpty, values.count <= PostgRESTFilter.maximumInValues else {
                    throw JobwatchError(
                        .invalidInput,
                        "--filter '\(shown)': in.(…) takes 1 to \(PostgRESTFilter.maximumInValues) values")
                }
                return PostgRESTFilter(column, .in(values))
            }
            throw JobwatchError(
                .invalidInput,
                "--filter '\(shown)': the operator must be eq, neq, in or is.null (ordering operators depend on the "
                    + "column's type, which follow does not know)")
        }

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            var settings = try self.connection.resolve(environment: environment)
            settings.feed = try self.feed.resolve(allJobs: true)
            let writer = OutputWriter()
            let logger = self.output.logger(writer: writer)
            let parameters = try self.parameters(
                cacheFile: self.cache.cacheFile(environment: environment, settings: settings))
            let terminal = TerminalInfo.current()
            var mode = OutputMode.choose(json: self.output.json, quiet: self.output.quiet, terminal: terminal)
            if self.deadLetters {
                let letters = try Adapters.deadLetters(settings: settings, parameters: parameters, logger: logger)
                if mode.data == .json {
                    for letter in letters {
                        writer.line(JSONLines.deadLetterLine(letter), to: .stdout)
                    }
                } else {
                    let format = HumanFormat(colors: terminal.stdoutColors)
                    for row in format.deadLetterTable(letters, consumer: parameters.consumer ?? "") {
                        writer.line(row, to: .stdout)
                    }
                }
                return
            }
            if self.output.verbose && mode.progress == .live {
                // Log lines would tear the summary line apart.
                mode.progress = .plain
            }
            let session = try Adapters.followSession(settings: settings, parameters: parameters, logger: logger)
            let output = FollowOutput(
                writer: writer, mode: mode, format: HumanFormat(colors: terminal.stdoutColors), width: terminal.columns,
                quiet: self.output.quiet)
            let result = WatchResult()
            let runner = FollowRunner(
                session: session,
                executor: self.exec.map(FollowCommandExecutor.init(command:)),
                tickInterval: mode.progress == .live ? .seconds(1) : nil,
                clock: ContinuousClock(),
                output: output,
                result: result,
                // Exits once every acknowledgement is stored: tearing the clients down can hang (see
                // WatchCommandRunner).
                onFinish: { status in Foundation.exit(status.rawValue) }
            )
            await runUntilSignal(runner, command: "follow", shutdownLimit: .seconds(10), logger: logger, writer: writer)
            throw ExitCode(result.status?.rawValue ?? ExitStatus.unreachable.rawValue)
        }
    }
}

/// What `follow` asks of its consumer, after validation.
struct FollowParameters: Sendable, Hashable {
    /// The durable consumer's name; `nil`: an ephemeral consumer that remembers nothing.
    var consumer: String?
    /// The SQLite file holding a durable consumer's state (`nil` exactly when `consumer` is).
    var stateFile: URL?
    /// Where a new consumer starts.
    var start: FollowStart
    /// Deliveries before a dead letter.
    var maximumAttempts: Int
    /// The first redelivery delay.
    var retryDelay: Duration
    /// Fleet mode (`--fleet`): `nil` when this follow handles every outcome itself.
    var fleet: FollowFleet? = nil
    /// `--filter`: only jobs whose row matches every filter (empty: every job).
    var filters: [PostgRESTFilter] = []
}

/// `follow --fleet`'s settings: the follows sharing a consumer name claim each outcome before printing it.
struct FollowFleet: Sendable, Hashable {
    /// This follow's name in the claims (`--holder`); `nil`: the library's default (host, pid, random suffix).
    var holder: String?
    /// How long a claim lasts without renewal (`--lease`).
    var lease: Duration
}
