import JobSync

/// What the CLI needs from a job source. The JobSync adapter implements these over `JobSyncClient`; tests use
/// fakes. Implementations map every failure to a ``JobwatchError`` whose message is safe to print.
protocol WatchSession: Sendable {
    /// Watches `ids` until the calling task is cancelled, reporting every observation in order.
    ///
    /// - Parameters:
    ///   - ids: The jobs to watch (non-empty, distinct).
    ///   - report: Called for every change, transport switch and missing job, one call at a time.
    /// - Throws: ``JobwatchError`` (`unreachable`, `unauthorized`) when the service cannot be used at all;
    ///   `CancellationError` or nothing when cancelled.
    func watch(_ ids: [JobID], report: @escaping @Sendable (WatchEvent) async -> Void) async throws
}

/// A one-shot reader of job states, for `status`.
protocol StatusReader: Sendable {
    /// Reads the current state of each job.
    ///
    /// - Returns: The state of every job that exists; ids without an entry were not found.
    /// - Throws: ``JobwatchError`` (`unreachable`, `unauthorized`).
    func read(_ ids: [JobID]) async throws -> [JobID: JobSnapshot]
}

/// How `watch` and `status` write their output.
struct OutputMode: Sendable, Hashable {
    /// Data format on stdout.
    enum Data: Sendable, Hashable {
        /// A human summary at the end (or human status lines).
        case human
        /// JSON Lines, one object per change.
        case json
    }

    /// Progress on stderr.
    enum Progress: Sendable, Hashable {
        /// The live view, redrawn in place (stderr is a terminal).
        case live
        /// One plain line per change (stderr is not a terminal, human data).
        case plain
        /// Nothing (`--quiet`, or JSON data with stderr not a terminal).
        case none
    }

    /// Data format on stdout.
    var data: Data
    /// Progress on stderr.
    var progress: Progress

    /// Chooses the mode: JSON when asked, or by default when stdout is not a terminal; the live view when stderr
    /// is a terminal.
    static func choose(json: Bool?, quiet: Bool, terminal: TerminalInfo) -> OutputMode {
        let data: Data = (json ?? !terminal.stdoutIsTTY) ? .json : .human
        let progress: Progress
        if quiet {
            progress = .none
        } else if terminal.stderrIsTTY {
            progress = .live
        } else {
            progress = data == .human ? .plain : .none
        }
        return OutputMode(data: data, progress: progress)
    }
}
