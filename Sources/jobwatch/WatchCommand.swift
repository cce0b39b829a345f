import ArgumentParser
import UnixSignals
import Foundation
import JobSync
import Logging
import ServiceLifecycle

/// Options shared by `watch` and `status` for the local result cache.
struct CacheOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Result cache (SQLite) used to answer final jobs without a request "
                + "(default: one file per project under $XDG_CACHE_HOME/jobwatch or ~/.cache/jobwatch).",
            valueName: "path"
        )
    )
    var cache: String?

    @Flag(name: .customLong("no-cache"), help: "Do not read or write the result cache.")
    var noCache = false

    /// The cache file to use, or `nil` when caching is off or no home directory is known.
    ///
    /// The default file is per job source (`jobs-<hash of the source's URL and table>.sqlite`): the same job id in
    /// two projects must never be answered from the other project's cache.
    func cacheFile(environment: [String: String], settings: ConnectionSettings) -> URL? {
        guard !self.noCache else { return nil }
        if let cache = self.cache { return URL(fileURLWithPath: cache) }
        let name = "jobs-\(Self.sourceHash(settings.source)).sqlite"
        if let base = environment.nonEmpty("XDG_CACHE_HOME") {
            return URL(fileURLWithPath: base).appendingPathComponent("jobwatch").appendingPathComponent(name)
        }
        if let home = environment.nonEmpty("HOME") {
            return URL(fileURLWithPath: home).appendingPathComponent(".cache/jobwatch").appendingPathComponent(name)
        }
        return nil
    }

    /// A stable 64-bit FNV-1a hash (hex) of what identifies a job source.
    static func sourceHash(_ source: ConnectionSettings.Source) -> String {
        let identity: String
        switch source {
        case .supabase(let url, let table, let schema):
            identity = "supabase|\(Redact.url(url))|\(schema)|\(table)"
        case .statusEndpoint(let baseURL):
            identity = "status-endpoint|\(Redact.url(baseURL))"
        }
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in identity.utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01b3
        }
        let hex = String(hash, radix: 16)
        return String(repeating: "0", count: 16 - hex.count) + hex
    }
}

/// Output options shared by `watch` and `status`.
struct OutputOptions: ParsableArguments {
    @Flag(
        inversion: .prefixedNo,
        help: "JSON Lines on stdout, one object per change (default: on when stdout is not a terminal)."
    )
    var json: Bool?

    @Flag(name: .shortAndLong, help: "No progress on stderr (data and errors only).")
    var quiet = false

    @Flag(name: .shortAndLong, help: "Debug logs on stderr (never includes keys).")
    var verbose = false

    /// A logger writing through `writer`: debug with `--verbose`, else warnings only.
    func logger(writer: OutputWriter) -> Logger {
        Self.logger(verbose: self.verbose, writer: writer)
    }

    /// A logger writing through `writer`: debug when `verbose`, else warnings only.
    static func logger(verbose: Bool, writer: OutputWriter) -> Logger {
        let level: Logger.Level = verbose ? .debug : .warning
        return Logger(label: "jobwatch") { label in
            WriterLogHandler(writer: writer, label: label, logLevel: level)
        }
    }
}

extension Jobwatch {
    /// `jobwatch watch <job-id>…`
    struct Watch: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Follow jobs until each one completes, fails or disappears.",
            discussion: """
                On a terminal, shows one live line per job (status, elapsed time, realtime or polling, \
                progress) on stderr, then a summary per job on stdout: classification, confidence, pages and \
                failed pages, or the error. With --json, or when stdout is not a terminal, writes JSON Lines \
                instead (one object per change; schema in docs/jobwatch-json.md). Ctrl-C stops cleanly.

                \(ExitStatus.helpText)
                """
        )

        @OptionGroup var connection: ConnectionOptions
        @OptionGroup var feed: FeedOptions
        @OptionGroup var output: OutputOptions
        @OptionGroup var cache: CacheOptions

        @Option(help: ArgumentHelp("Give up after this many seconds (exit 3).", valueName: "seconds"))
        var timeout: Double?

        @Argument(help: ArgumentHelp("The job ids (UUIDs) to watch.", valueName: "job-id"))
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
            try self.feed.validate(source: self.connection.source, allJobs: false)
            try self.connection.validateSettings()
            if let timeout = self.timeout {
                guard timeout.isFinite, timeout > 0, timeout <= 365 * 86_400 else {
                    throw ValidationError("--timeout must be a number of seconds greater than 0")
                }
            }
        }

        func run() async throws {
            let environment = ProcessInfo.processInfo.environment
            var settings = try self.connection.resolve(environment: environment)
            settings.feed = try self.feed.resolve()
            let ids = try JobID.parseAll(self.jobIDs)
            let writer = OutputWriter()
            let logger = self.output.logger(writer: writer)
            let session = try Adapters.watchSession(
                settings: settings,
                cacheFile: self.cache.cacheFile(environment: environment, settings: settings),
                logger: logger
            )
            let status = await WatchCommandRunner.run(
                session: session,
                ids: ids,
                timeout: self.timeout.map { Duration.milliseconds(Int64(($0 * 1000).rounded(.up))) },
                options: self.output,
                writer: writer,
                logger: logger,
                onFinish: { status in Foundation.exit(status.rawValue) }
            )
            throw ExitCode(status.rawValue)
        }
    }
}

/// Runs a watch in a `ServiceGroup` that turns SIGINT/SIGTERM into a graceful shutdown; shared by `watch` and
/// `demo`.
///
/// - Important: The CLI passes an `onFinish` that exits the process once the last output is written. Tearing the
///   session down can hang on Linux: cancelling a task awaiting `URLSession.data(for:)` while its response
///   arrives deadlocks in FoundationNetworking (swift-corelibs-foundation issue 5412, fixed upstream, still in
///   this toolchain). Nothing is lost by exiting: all output is written synchronously before `onFinish`.
enum WatchCommandRunner {
    /// Watches `ids` on `session` with the terminal's output mode and returns the exit status.
    static func run(
        session: any WatchSession,
        ids: [JobID],
        timeout: Duration?,
        options: OutputOptions,
        writer: OutputWriter,
        logger: Logger,
        onFinish: (@Sendable (ExitStatus) -> Void)? = nil
    ) async -> ExitStatus {
        let terminal = TerminalInfo.current()
        var mode = OutputMode.choose(json: options.json, quiet: options.quiet, terminal: terminal)
        if options.verbose && mode.progress == .live {
            // Log lines would tear the in-place view apart.
            mode.progress = .plain
        }
        let output = WatchOutput(
            writer: writer,
            mode: mode,
            format: HumanFormat(colors: terminal.stderrColors),
            summaryFormat: HumanFormat(colors: terminal.stdoutColors),
            width: terminal.columns
        )
        let result = WatchResult()
        let runner = WatchRunner(
            session: session,
            ids: ids,
            timeout: timeout,
            tickInterval: mode.progress == .live ? .seconds(1) : nil,
            clock: ContinuousClock(),
            output: output,
            result: result,
            onFinish: onFinish
        )
        await runUntilSignal(runner, command: "watch", shutdownLimit: .seconds(5), logger: logger, writer: writer)
        return result.status ?? .interrupted
    }
}
