import ArgumentParser

/// The process exit codes of `jobwatch`, documented in `--help` (see ``ExitStatus/helpText``).
///
/// With several jobs, the most important applicable code wins, in this order:
/// 5 (unreachable), 4 (not found), 3 (timeout), 1 (failed), 0 (completed).
enum ExitStatus: Int32, Sendable, CaseIterable, Comparable {
    /// Every watched job completed (for `status`: every job was found and none failed).
    case completed = 0
    /// At least one job failed.
    case failed = 1
    /// Usage error or invalid input (bad job id, URL, missing key, unknown option).
    case usage = 2
    /// `--timeout` elapsed before every job reached a final state.
    case timeout = 3
    /// At least one job does not exist or was deleted.
    case notFound = 4
    /// The service could not be reached, or it rejected the credentials.
    case unreachable = 5
    /// Interrupted by SIGINT (Ctrl-C) or SIGTERM before every job was final.
    case interrupted = 130

    /// The argument-parser exit code for this status.
    var exitCode: ExitCode { ExitCode(self.rawValue) }

    /// How strongly this status overrides others when several jobs end differently.
    private var precedence: Int {
        switch self {
        case .completed: 0
        case .failed: 1
        case .timeout: 2
        case .notFound: 3
        case .usage: 4
        case .unreachable: 5
        case .interrupted: 6
        }
    }

    static func < (lhs: ExitStatus, rhs: ExitStatus) -> Bool { lhs.precedence < rhs.precedence }

    /// One line per exit code, for command discussions (`--help`).
    static let helpText: String = """
        EXIT STATUS:
          0    every job completed (status: every job found, none failed)
          1    at least one job failed
          2    usage error or invalid input (job id, URL, missing key)
          3    --timeout elapsed before every job was final
          4    a job was not found or was deleted
          5    cannot reach the service, or authentication failed
          130  interrupted (Ctrl-C or SIGTERM)
        With several jobs the most severe code wins: 5, 4, 3, 1, then 0.
        """
}

/// The one error type of the `jobwatch` executable: a code that decides the exit status and a message that is
/// safe to print (it never contains keys, tokens or URL query strings).
struct JobwatchError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What went wrong, extensible without breaking callers.
    struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A stable, printable name of the code.
        let name: String
        /// The exit status a failure with this code leads to.
        let exitStatus: ExitStatus

        /// Invalid command-line input: a job id, a URL, a missing or unreadable key.
        static let invalidInput = Code(name: "invalidInput", exitStatus: .usage)
        /// The service could not be reached (connection refused, DNS, TLS, timeout while connecting).
        static let unreachable = Code(name: "unreachable", exitStatus: .unreachable)
        /// The service rejected the key or access token (HTTP 401/403, a rejected socket join).
        static let unauthorized = Code(name: "unauthorized", exitStatus: .unreachable)
        /// A job does not exist or was deleted.
        static let notFound = Code(name: "notFound", exitStatus: .notFound)
        /// The service answered something unexpected (bad status code or body).
        static let badResponse = Code(name: "badResponse", exitStatus: .unreachable)
        /// The local stack (`serve`, `demo`) could not start.
        static let localStack = Code(name: "localStack", exitStatus: .unreachable)

        var description: String { self.name }
    }

    /// What went wrong.
    let code: Code
    /// A human message, safe to print.
    let message: String

    /// Creates an error; `message` must not contain secrets.
    init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    var description: String { self.message }
}
