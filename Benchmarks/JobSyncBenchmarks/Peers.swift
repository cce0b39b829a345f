// The two peers JobSync is compared with: the official Python Realtime client (a child process running
// Benchmarks/python/rt_watch.py) and plain polling of the status endpoint with the vendor's backoff.
import Foundation
import JobSyncCore
import SupabaseLocal
import SupabaseREST
import Synchronization

/// Where the Python peer lives; `nil` when no interpreter with the `realtime` package is available.
struct PythonSetup: Sendable {
    var python: String
    var scriptDirectory: String

    /// `BENCH_PYTHON` / `BENCH_PY_DIR`, else `.venv-bench/bin/python` and `Benchmarks/python` in the current directory.
    static func detect() -> PythonSetup? {
        let environment = ProcessInfo.processInfo.environment
        let python = environment["BENCH_PYTHON"] ?? FileManager.default.currentDirectoryPath + "/.venv-bench/bin/python"
        let directory = environment["BENCH_PY_DIR"] ?? FileManager.default.currentDirectoryPath + "/Benchmarks/python"
        guard FileManager.default.isExecutableFile(atPath: python),
            FileManager.default.fileExists(atPath: directory + "/rt_watch.py")
        else { return nil }
        return PythonSetup(python: python, scriptDirectory: directory)
    }
}

/// A child process that signals readiness and results through files (ready, stop, out) in a scratch directory.
/// Used by one task at a time.
final class ChildPeer {
    let process = Process()
    let directory: URL
    var readyPath: String { self.directory.appendingPathComponent("ready").path }
    var stopPath: String { self.directory.appendingPathComponent("stop").path }
    var outPath: String { self.directory.appendingPathComponent("out.json").path }
    var errPath: String { self.directory.appendingPathComponent("stderr.txt").path }

    /// Starts `executable` with `arguments` plus `--ready/--stop/--out` paths.
    init(
        executable: String, arguments: [String], files: [String: String] = [:], environment: [String: String] = [:]
    ) throws {
        self.directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobsync-bench-\(UUID())")
        try FileManager.default.createDirectory(at: self.directory, withIntermediateDirectories: true)
        for (name, content) in files {
            try Data(content.utf8).write(to: self.directory.appendingPathComponent(name))
        }
        _ = FileManager.default.createFile(atPath: self.errPath, contents: nil)
        self.process.executableURL = URL(fileURLWithPath: executable)
        self.process.arguments = arguments.map { $0.replacingOccurrences(of: "{dir}", with: self.directory.path) }
            + ["--ready", self.readyPath, "--stop", self.stopPath, "--out", self.outPath]
        self.process.standardOutput = FileHandle.nullDevice
        self.process.standardError = FileHandle(forWritingAtPath: self.errPath)
        if !environment.isEmpty {
            self.process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        }
        try self.process.run()
    }

    /// Waits until the child wrote its ready file.
    func waitReady(timeout: Duration) async throws {
        let ready = await waitUntil(timeout: timeout) {
            FileManager.default.fileExists(atPath: self.readyPath) || !self.process.isRunning
        }
        guard ready, FileManager.default.fileExists(atPath: self.readyPath) else {
            throw BenchError("child \(self.process.executableURL?.lastPathComponent ?? "?") not ready: \(self.stderrTail())")
        }
    }

    /// Asks the child to stop (unless it stops by itself) and returns its result object.
    func finish(timeout: Duration, askToStop: Bool = true) async throws -> [String: Any] {
        if askToStop { _ = FileManager.default.createFile(atPath: self.stopPath, contents: nil) }
        await waitUntil(timeout: timeout) { FileManager.default.fileExists(atPath: self.outPath) }
        if !askToStop, !FileManager.default.fileExists(atPath: self.outPath) {
            _ = FileManager.default.createFile(atPath: self.stopPath, contents: nil)
            await waitUntil(timeout: .seconds(10)) { FileManager.default.fileExists(atPath: self.outPath) }
        }
        await waitUntil(timeout: .seconds(5)) { !self.process.isRunning }
        if self.process.isRunning { self.process.terminate() }
        defer { try? FileManager.default.removeItem(at: self.directory) }
        guard let data = FileManager.default.contents(atPath: self.outPath),
            let object = try JSONSerialization.jsonObject(with: data) as? [String: Any]
        else {
            throw BenchError("child wrote no result: \(self.stderrTail())")
        }
        return object
    }

    /// Stops the child without reading a result.
    func kill() {
        if self.process.isRunning { self.process.terminate() }
        try? FileManager.default.removeItem(at: self.directory)
    }

    func stderrTail() -> String {
        let text = (try? String(contentsOfFile: self.errPath, encoding: .utf8)) ?? ""
        return String(text.suffix(600))
    }
}

/// Plain polling of `GET /classify/{id}` per job: first poll after 1 s, then the delay doubles up to 30 s.
struct PlainPoller: Sendable {
    let baseURL: String
    let apiKey: String
    let transport: CountingTransport
    let firstDelay: Duration = .seconds(1)
    let maximumDelay: Duration = .seconds(30)

    /// Polls one job until it reports a terminal status (returns the receive instant) or the task is cancelled.
    func poll(_ id: String) async -> MonoInstant? {
        var delay = self.firstDelay
        let request = HTTPRequest(
            url: self.baseURL + "/classify/" + id, headers: ["api-key": self.apiKey, "Accept": "application/json"],
            timeout: .seconds(10))
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: delay)
            } catch {
                return nil
            }
            if let response = try? await self.transport.send(request), response.status == 200,
                let status = (try? JSONValue.parse(response.body))?["status"]?.stringValue?.lowercased(),
                status == "completed" || status == "failed"
            {
                return MonoInstant.now
            }
            delay = min(delay * 2, self.maximumDelay)
        }
        return nil
    }
}

/// Receive instants per job id, filled concurrently.
final class Arrivals: Sendable {
    private let instants = Mutex([String: MonoInstant]())

    func record(_ id: String, at instant: MonoInstant) {
        self.instants.withLock { if $0[id] == nil { $0[id] = instant } }
    }

    var count: Int { self.instants.withLock { $0.count } }
    var all: [String: MonoInstant] { self.instants.withLock { $0 } }
}

/// The careful poller a team would write instead of one GET per job: one PostgREST request per cycle for every row
/// changed since its watermark (`updated_at >= watermark − 1 s`, oldest first, keyset-paged by 1,000), every
/// `interval`. It sees every change of every job, watched or not, one cycle late at most.
struct WatermarkPoller: Sendable {
    let baseURL: String
    let apiKey: String
    let interval: Duration
    let transport: CountingTransport
    /// Rows committed up to this long before a row already read may still be missing (late commits): re-read.
    let margin: Duration = .seconds(1)

    /// Polls until cancelled; reports the first instant each id of `watched` was seen terminal.
    func run(watched: Set<String>, since start: LocalTimestamp, arrivals: Arrivals) async {
        var watermark = start
        while !Task.isCancelled {
            do {
                try await Task.sleep(for: self.interval)
            } catch {
                return
            }
            var page = watermark.advanced(by: .zero - self.margin)
            while !Task.isCancelled {
                let since = page.postgresJSONText.replacingOccurrences(of: "+", with: "%2B")
                let request = HTTPRequest(
                    url: self.baseURL + "/rest/v1/jobs?select=id,status,updated_at&updated_at=gte." + since
                        + "&order=updated_at.asc,id.asc&limit=1000",
                    headers: ["apikey": self.apiKey, "Authorization": "Bearer " + self.apiKey,
                              "Accept": "application/json"],
                    timeout: .seconds(10))
                guard let response = try? await self.transport.send(request), response.status == 200,
                    case .array(let rows)? = try? JSONValue.parse(response.body)
                else { break }
                let now = MonoInstant.now
                var newest: LocalTimestamp?
                for row in rows {
                    guard let id = row["id"]?.stringValue else { continue }
                    if let status = row["status"]?.stringValue?.lowercased(), status == "completed" || status == "failed",
                        watched.contains(id)
                    {
                        arrivals.record(id, at: now)
                    }
                    if let text = row["updated_at"]?.stringValue, let stamp = LocalTimestamp(parsing: text) {
                        newest = max(newest ?? stamp, stamp)
                    }
                }
                if let newest { watermark = max(watermark, newest) }
                // A full page: read on from its newest row at once (keyset paging).
                guard rows.count == 1000, let newest, newest > page else { break }
                page = newest
            }
        }
    }
}
