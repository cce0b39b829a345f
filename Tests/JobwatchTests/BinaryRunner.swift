import Foundation
import NIOConcurrencyHelpers

/// Runs the built `jobwatch` executable as a child process, for tests of the real binary: exit codes, stdout and
/// stderr exactly as a user or script sees them.
struct BinaryRunner {
    /// What a run produced.
    struct Result {
        /// The exit status (or 128 + signal).
        var status: Int32
        /// Everything written to stdout.
        var stdout: String
        /// Everything written to stderr.
        var stderr: String
        /// Whether the watchdog had to kill the process.
        var killed: Bool
        /// The signal that ended the process (`nil`: it exited).
        var uncaughtSignal: Int32? = nil

        /// Stdout split into lines.
        var stdoutLines: [String] { self.stdout.split(separator: "\n").map(String.init) }
    }

    /// The executable: `$JOBWATCH_BINARY`, else `jobwatch` next to the test bundle (SwiftPM's products folder).
    static var executable: URL? {
        if let path = ProcessInfo.processInfo.environment["JOBWATCH_BINARY"] {
            return URL(fileURLWithPath: path)
        }
        var directory = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        for _ in 0..<4 {
            directory.deleteLastPathComponent()
            let candidate = directory.appendingPathComponent("jobwatch")
            if FileManager.default.isExecutableFile(atPath: candidate.path) {
                return candidate
            }
        }
        return nil
    }

    /// Runs `executable arguments…` with exactly `environment` (plus PATH, HOME and the sanitizers' options),
    /// killing it after `limit` (a watchdog against hangs, not a timing assertion).
    static func run(
        _ arguments: [String],
        environment: [String: String] = [:],
        executable: URL? = nil,
        limit: Duration = .seconds(60),
        onStart: @escaping @Sendable (Int32) -> Void = { _ in },
        onStdoutLine: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> Result {
        guard let binary = executable ?? Self.executable else {
            throw BinaryNotFound()
        }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-test-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let stderrURL = directory.appendingPathComponent("stderr")
        _ = FileManager.default.createFile(atPath: stderrURL.path, contents: nil)
        let stderr = try FileHandle(forWritingTo: stderrURL)
        let stdoutPipe = Pipe()
        let collected = NIOLockedValueBox<[UInt8]>([])
        let reader = DispatchGroup()
        reader.enter()
        // Reads stdout as it comes, so tests can react to the first records; ends at EOF.
        Thread.detachNewThread {
            let handle = stdoutPipe.fileHandleForReading
            var pending: [UInt8] = []
            while true {
                let chunk = handle.availableData
                if chunk.isEmpty { break }
                collected.withLockedValue { $0.append(contentsOf: chunk) }
                pending.append(contentsOf: chunk)
                while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    onStdoutLine(String(decoding: pending[..<newline], as: UTF8.self))
                    pending.removeSubrange(...newline)
                }
            }
            reader.leave()
        }

        let process = Process()
        process.executableURL = binary
        process.arguments = arguments
        let inherited = ProcessInfo.processInfo.environment
        var base = ["PATH": inherited["PATH"] ?? "/usr/bin:/bin", "HOME": directory.path]
        // An instrumented binary reads its sanitizer's options (report files, suppressions) as the tests do.
        for name in ["ASAN_OPTIONS", "TSAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"] {
            base[name] = inherited[name]
        }
        base.merge(environment) { _, new in new }
        process.environment = base
        process.standardOutput = stdoutPipe
        process.standardError = stderr
        process.standardInput = FileHandle.nullDevice

        let killed = NIOLockedValueBox(false)
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            process.terminationHandler = { _ in continuation.resume() }
            do {
                try process.run()
            } catch {
                process.terminationHandler = nil
                continuation.resume(throwing: error)
                return
            }
            let pid = process.processIdentifier
            onStart(pid)
            let milliseconds = Int(
                limit.components.seconds * 1000 + limit.components.attoseconds / 1_000_000_000_000_000
            )
            DispatchQueue.global().asyncAfter(deadline: .now() + .milliseconds(milliseconds)) {
                if process.isRunning {
                    killed.withLockedValue { $0 = true }
                    _ = Foundation.kill(pid, SIGKILL)
                }
            }
        }
        try stdoutPipe.fileHandleForWriting.close()
        reader.wait()
        try stderr.close()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: collected.withLockedValue { $0 }, as: UTF8.self),
            stderr: try String(contentsOf: stderrURL, encoding: .utf8),
            killed: killed.withLockedValue { $0 },
            uncaughtSignal: process.terminationReason == .uncaughtSignal ? process.terminationStatus : nil
        )
    }
}

/// The test could not find the `jobwatch` executable.
struct BinaryNotFound: Error, CustomStringConvertible {
    var description: String { "jobwatch binary not found next to the tests; build it or set JOBWATCH_BINARY" }
}
