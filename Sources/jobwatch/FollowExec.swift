import Foundation
import JobSync

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

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
    ///
    /// The child is started with `posix_spawn`, not `Process`: jobwatch ignores SIGPIPE, and an ignored signal would
    /// stay ignored in the command (`… | head` inside it would then fail with EPIPE instead of ending quietly), so
    /// the child gets SIGPIPE's default action back and an empty signal mask.
    func run(record: String, outcome: FollowedOutcome) async -> Termination {
        var environment = ProcessInfo.processInfo.environment
        environment["JOBWATCH_JOB_ID"] = outcome.line.id.rawValue
        environment["JOBWATCH_OUTCOME"] = outcome.line.outcome?.name
        environment["JOBWATCH_DELIVERY"] = String(outcome.delivery)
        var descriptors: [Int32] = [-1, -1]
        guard pipe(&descriptors) == 0 else { return .notStarted }
        let (readEnd, writeEnd) = (descriptors[0], descriptors[1])
        // The write end must not leak into the child (it would never see end of file).
        _ = fcntl(writeEnd, F_SETFD, FD_CLOEXEC)
        guard let pid = Self.spawn(command: self.command, stdin: readEnd, environment: environment) else {
            close(readEnd)
            close(writeEnd)
            return .notStarted
        }
        close(readEnd)
        let bytes = Array(record.utf8)
        return await withCheckedContinuation { (continuation: CheckedContinuation<Termination, Never>) in
            // Blocking calls on their own thread: a command that does not read its stdin must not block us, and a
            // closed pipe (EPIPE, SIGPIPE is ignored here) only ends the write.
            Thread.detachNewThread {
                var offset = 0
                while offset < bytes.count {
                    let written = bytes[offset...].withUnsafeBytes { write(writeEnd, $0.baseAddress, $0.count) }
                    if written > 0 {
                        offset += written
                    } else if written < 0 && errno == EINTR {
                        continue
                    } else {
                        break
                    }
                }
                close(writeEnd)
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 {
                    guard errno == EINTR else {
                        continuation.resume(returning: .exited(-1))
                        return
                    }
                }
                // The wait status: low 7 bits the terminating signal (0: exited), then the exit status.
                let signal = status & 0x7F
                continuation.resume(returning: signal == 0 ? .exited((status >> 8) & 0xFF) : .signaled(signal))
            }
        }
    }

    /// Starts `/bin/sh -c command` with `stdin` as its standard input; `nil` when it cannot be started.
    private static func spawn(command: String, stdin: Int32, environment: [String: String]) -> pid_t? {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdin, 0)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        var mask = sigset_t()
        sigemptyset(&mask)
        posix_spawnattr_setsigmask(&attributes, &mask)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let words: [String] = ["/bin/sh", "-c", command]
        let arguments: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        let variables: [UnsafeMutablePointer<CChar>?] = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in arguments { free(pointer) }
            for pointer in variables { free(pointer) }
        }
        var pid: pid_t = 0
        let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, arguments, variables)
        return result == 0 ? pid : nil
    }
}
