// CLI: `jobwatch watch <id> --json` cold start, from spawning the process to its first JSON line on stdout (the job's
// current state), against SupabaseLocal. The binary is the release `jobwatch` next to this harness.
import Dispatch
import Foundation
import SupabaseLocal

enum ColdStartBenchmark {
    /// The release `jobwatch` built next to the harness, if any.
    static var jobwatch: String? {
        let directory = URL(fileURLWithPath: ThroughputBenchmark.selfExecutable).deletingLastPathComponent()
        let path = directory.appendingPathComponent("jobwatch").path
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }

    /// Spawn → first stdout line, `repeats` times, for one unfinished job.
    static func run(repeats: Int) async throws -> [Duration] {
        guard let binary = self.jobwatch else { throw BenchError("no release jobwatch next to the harness") }
        return try await SupabaseLocal.withRunning { stack in
            let id = try await Fixtures.insertJobs(1, on: stack)[0]
            var delays: [Duration] = []
            for _ in 0..<repeats {
                let process = Process()
                process.executableURL = URL(fileURLWithPath: binary)
                process.arguments = ["watch", id, "--url", stack.baseURL.absoluteString, "--json", "--quiet"]
                process.environment = ["SUPABASE_ANON_KEY": stack.anonKey, "HOME": NSTemporaryDirectory()]
                let output = Pipe()
                process.standardOutput = output
                process.standardError = FileHandle.nullDevice
                let start = MonoInstant.now
                try process.run()
                let sawLine = await self.firstLine(of: output.fileHandleForReading)
                let elapsed = MonoInstant.now - start
                process.terminate()
                process.waitUntilExit()
                guard sawLine else { throw BenchError("jobwatch exited without a line (status \(process.terminationStatus))") }
                delays.append(elapsed)
            }
            return delays
        }
    }

    /// Reads (blocking, off the cooperative pool) until a newline; false at end of file.
    private static func firstLine(of handle: FileHandle) async -> Bool {
        await withCheckedContinuation { continuation in
            DispatchQueue.global().async {
                while true {
                    let data = handle.availableData
                    if data.isEmpty { return continuation.resume(returning: false) }
                    if data.contains(UInt8(ascii: "\n")) { return continuation.resume(returning: true) }
                }
            }
        }
    }
}
