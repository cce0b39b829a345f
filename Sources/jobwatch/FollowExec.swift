import Foundation
import JobSync

/// Runs `follow --exec CMD` once per outcome: `/bin/sh -c CMD` with the outcome's JSON record (one line) on stdin,
/// jobwatch's stdout and stderr, and the environment plus `JOBWATCH_JOB_ID`, `JOBWATCH_OUTCOME` and
/// `JOBWATCH_DELIVERY`.
struct FollowCommandExecutor: Sendable {
    /// How a command ended.
    enum Termination: Sendable, Hashable {
        /// It exited with this status.
        case exited(Int32)
        /// A signal ended it.
        case signaled(Int32)
        /// It could not be started.
        case notStarted

        /// Whether the outcome counts as handled (exit status 0).
        var succeeded: Bool { self == .exited(0) }

        /// The rejection reason, as stored in dead letters: `exit status 3`, `signal 9`.
        var reason: String {
            switch self {
            case .exited(let status): "exit status \(status)"
            case .signaled(let signal): "signal \(signal)"
            case .notStarted: "the command could not be started"
            }
        }
    }

    /// The shell command line.
    let command: String

    /// Runs the command for `outcome` with `record` (a JSON line, newline included) on its stdin and waits for it.
    func run(record: String, outcome: FollowedOutcome) async -> Termination {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", self.command]
        var environment = ProcessInfo.processInfo.environment
        environment["JOBWATCH_JOB_ID"] = outcome.line.id.rawValue
        environment["JOBWATCH_OUTCOME"] = outcome.line.outcome?.name
        environment["JOBWATCH_DELIVERY"] = String(outcome.delivery)
        process.environment = environment
        let input = Pipe()
        process.standardInput = input
        return await withCheckedContinuation { (continuation: CheckedContinuation<Termination, Never>) in
            process.terminationHandler = { process in
                switch process.terminationReason {
                case .exit: continuation.resume(returning: .exited(process.terminationStatus))
                case .uncaughtSignal: continuation.resume(returning: .signaled(process.terminationStatus))
                @unknown default: continuation.resume(returning: .exited(process.terminationStatus))
                }
            }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(returning: .notStarted)
                return
            }
            // A command that does not read its stdin must not block us: write on another thread; a closed pipe
            // (EPIPE, SIGPIPE is ignored) only ends the write.
            let handle = input.fileHandleForWriting
            let bytes = Data(record.utf8)
            Thread.detachNewThread {
                try? handle.write(contentsOf: bytes)
                try? handle.close()
            }
        }
    }
}
