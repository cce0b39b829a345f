// What a run records besides its tables: where and how it ran (printed first, and stored with the data), and the
// raw data of the outcome and cost sections as JSON for scripts/bench-charts.py.
import Foundation

/// Where, when and how the run happened.
struct Provenance: Encodable, Sendable {
    var date: String
    var commit: String
    var uncommittedChanges: Bool
    var cores: Int
    var cpu: String
    var memoryGiB: Double
    var loadAverageAtStart: String
    var toolchain: String
    var python: String
    var os: String
    /// Counts the persistence section's fsyncs when installed.
    var strace: String
    var command: String
    var mode: String

    static func collect(quick: Bool, python: PythonSetup?, arguments: [String]) -> Provenance {
        let info = ProcessInfo.processInfo
        let cpu = ((try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? "")
            .split(separator: "\n").first { $0.hasPrefix("model name") }
            .map { String($0.split(separator: ":", maxSplits: 1).last ?? "").trimmingCharacters(in: .whitespaces) }
        let commit = run("git", ["rev-parse", "--short", "HEAD"]) ?? "unknown"
        // Uncommitted changes to tracked files (generated results do not count).
        let dirty = run("git", ["status", "--porcelain", "--untracked-files=no"]).map { !$0.isEmpty } ?? false
        var pythonText = "not available (rows omitted)"
        if let python {
            let script = """
                import importlib.metadata as m, platform
                def version(name):
                    try: return name + " " + m.version(name)
                    except m.PackageNotFoundError: return None
                names = ("realtime", "websockets", "matplotlib")
                print(", ".join(["Python " + platform.python_version()] + [v for v in map(version, names) if v]))
                """
            let versions = run(python.python, ["-c", script])
            pythonText = versions ?? python.python
        }
        return Provenance(
            date: ISO8601DateFormatter().string(from: Date()), commit: commit, uncommittedChanges: dirty,
            cores: info.activeProcessorCount, cpu: cpu ?? "unknown CPU",
            memoryGiB: (Double(info.physicalMemory) / 1_073_741_824 * 10).rounded() / 10,
            loadAverageAtStart: Report.loadAverage(),
            toolchain: run("swift", ["--version"])?.split(separator: "\n").first.map(String.init) ?? "unknown",
            python: pythonText, os: "Linux " + (run("uname", ["-r"]) ?? "?"),
            strace: run("strace", ["-V"])?.split(separator: "\n").first.map(String.init) ?? "not installed",
            command: info.environment["BENCH_COMMAND"] ?? ("JobSyncBenchmarks " + arguments.joined(separator: " ")),
            mode: quick ? "quick" : "full")
    }

    /// The block printed at the top of the output.
    var lines: [String] {
        [
            "- Date: \(self.date)",
            "- Commit: \(self.commit)\(self.uncommittedChanges ? " + uncommitted changes" : "")",
            "- Machine: \(self.cores) cores (\(self.cpu)), \(self.memoryGiB) GiB memory, load average at start "
                + self.loadAverageAtStart,
            "- OS: \(self.os)",
            "- Toolchain: \(self.toolchain)",
            "- Python peer: \(self.python)",
            "- strace (fsync counts of the persistence section): \(self.strace)",
            "- Command: \(self.command)",
            "- Mode: \(self.mode); server: SupabaseLocal (in-memory backend) on 127.0.0.1, in the harness process",
            "- Clock: CLOCK_MONOTONIC in every process (Swift `clock_gettime`, Python `time.monotonic()`)",
        ]
    }

    /// The first line a command prints, trimmed; `nil` when it cannot run or fails.
    private static func run(_ command: String, _ arguments: [String]) -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: command.hasPrefix("/") ? command : "/usr/bin/env")
        process.arguments = command.hasPrefix("/") ? arguments : [command] + arguments
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else { return nil }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}

/// Raw data files next to RESULTS.md (`BENCH_RESULTS_DIR` overrides the folder).
enum ResultsFile {
    static var directory: URL {
        let environment = ProcessInfo.processInfo.environment
        return URL(fileURLWithPath: environment["BENCH_RESULTS_DIR"]
            ?? FileManager.default.currentDirectoryPath + "/Benchmarks/JobSyncBenchmarks/results")
    }

    /// Writes `value` as `<name>.json`; prints where, or why not (the tables do not depend on it).
    static func write(_ name: String, _ value: some Encodable) {
        let url = self.directory.appendingPathComponent(name + ".json")
        do {
            try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(value).write(to: url, options: .atomic)
            print("\nRaw data: `\(url.path)`")
        } catch {
            print("\nRaw data not written to \(url.path): \(error)")
        }
    }
}

/// `outcomes.json`: every latency of every client in every scenario.
struct OutcomesData: Encodable {
    struct Client: Encodable {
        var name: String
        /// Latency of every job reported in time, in milliseconds, ascending.
        var latenciesMs: [Double]
        var missed: Int
        var jobs: Int
        var restRequests: Int?
        var restSeconds: Double?
    }

    struct Scenario: Encodable {
        var scenario: String
        var option: String
        var fault: String
        var clients: [Client]
    }

    var provenance: Provenance
    var jobs: Int
    var windowSeconds: Double
    var graceSeconds: Double
    var scenarios: [Scenario] = []
}
