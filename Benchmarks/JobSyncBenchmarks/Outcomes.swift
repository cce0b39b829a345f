// Time to outcome: commit of a terminal state → subscriber notified, for JobSync, the official Python Realtime
// client and plain polling, all watching the same jobs on one SupabaseLocal stack.
import Foundation
import JobSync
import Logging
import SupabaseLocal

/// The fault applied while jobs finish.
enum OutcomeScenario: String, CaseIterable, Sendable {
    case healthy = "healthy"
    case abruptDisconnect = "abrupt disconnect"
    case silentStall = "silent stall"
    case droppedChanges = "silently dropped changes (5 %)"

    /// The short name `--scenario` takes.
    var option: String {
        switch self {
        case .healthy: return "healthy"
        case .abruptDisconnect: return "disconnect"
        case .silentStall: return "stall"
        case .droppedChanges: return "dropped"
        }
    }
}

/// Latencies of one peer in one scenario.
struct PeerOutcome: Sendable {
    var latencies: [Duration]
    var missed: Int
    var note: String = ""
    /// REST requests the peer made from ready to stop, and over how long (JobSync only).
    var rest: (requests: Int, seconds: Double)?
}

struct OutcomeRow: Sendable {
    var scenario: OutcomeScenario
    var jobs: Int
    /// Every client of the run, in table order.
    var peers: [(name: String, outcome: PeerOutcome)]
    var faultNote: String
}

/// A client in a child process of its own: JobSync (this executable's `outcomes-client` mode) or the Python peer.
private struct ChildSpec {
    var name: String
    var executable: String
    var arguments: [String]
}

struct OutcomeSettings: Sendable {
    /// Jobs per scenario.
    var jobs: Int
    /// Terminal commits are spread uniformly over this window.
    var window: Duration
    /// After the last commit, every peer gets exactly this long to report (plain polling needs up to 30 s + request
    /// time; JobSync's audit runs every 30 s while live).
    var grace: Duration = .seconds(40)
    /// How long a silent stall lasts (longer than the official clients' 25 s heartbeat + JobSync's 10 s timeout).
    var stall: Duration = .seconds(45)
}

enum OutcomeBenchmark {
    static func run(_ scenario: OutcomeScenario, settings: OutcomeSettings, python: PythonSetup?) async throws
        -> OutcomeRow
    {
        // Hosted-like timings (`Subscribed to PostgreSQL` and the replication-ready message after their realistic
        // delays, join errors after 5 s): the same server, settings and jobs for every client.
        var configuration = SupabaseLocalConfiguration.realistic
        configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
        return try await SupabaseLocal.withRunning(configuration) { stack in
            try await self.run(scenario, settings: settings, python: python, stack: stack)
        }
    }

    private static func run(
        _ scenario: OutcomeScenario, settings: OutcomeSettings, python: PythonSetup?, stack: SupabaseLocalStack
    ) async throws -> OutcomeRow {
        let ids = try await Fixtures.insertJobs(settings.jobs, on: stack)
        let url = stack.baseURL.absoluteString
        // Private broadcast channels are authorized per topic with a user's JWT (§B2); the shipped policy lets the
        // `authenticated` role read `jobs`. Both broadcast clients join the table-wide topic (1,000 watched jobs
        // are beyond JobSync's 90 per-job topics).
        let userToken = stack.mintUserToken(lifetime: .seconds(7_200))
        var specs = [
            ChildSpec(
                name: "JobSync, postgres_changes", executable: ThroughputBenchmark.selfExecutable,
                arguments: ["outcomes-client", "--url", url, "--key", stack.anonKey, "--ids", "{dir}/ids.txt"]),
            ChildSpec(
                name: "JobSync, broadcast (private `jobs`)", executable: ThroughputBenchmark.selfExecutable,
                arguments: ["outcomes-client", "--url", url, "--key", stack.anonKey, "--ids", "{dir}/ids.txt",
                            "--feed", "broadcast", "--token", userToken]),
        ]
        if let python {
            let script = python.scriptDirectory + "/rt_watch.py"
            let common = ["--url", url, "--key", stack.anonKey, "--mode", "outcomes", "--ids", "{dir}/ids.txt"]
            specs += [
                ChildSpec(
                    name: "Python realtime 2.34.1, postgres_changes (defaults: 25 s heartbeat)",
                    executable: python.python, arguments: [script] + common),
                ChildSpec(
                    name: "Python realtime 2.34.1, postgres_changes, 5 s heartbeat",
                    executable: python.python, arguments: [script] + common + ["--heartbeat", "5"]),
                ChildSpec(
                    name: "Python realtime 2.34.1, broadcast (private `jobs`)", executable: python.python,
                    arguments: [script] + common + ["--feed", "broadcast", "--access-token", userToken]),
            ]
        }
        let pollArrivals = Arrivals()
        let pollTransport = CountingTransport()
        let poller = PlainPoller(
            baseURL: url, apiKey: stack.configuration.classifyAPIKey, transport: pollTransport)
        let watermarkPollers = [Duration.seconds(1), .seconds(5)].map {
            (poller: WatermarkPoller(baseURL: url, apiKey: stack.anonKey, interval: $0, transport: CountingTransport()),
             arrivals: Arrivals())
        }
        return try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            // Every client but the pollers runs in a process of its own (ready once live), so that none shares the
            // harness's CPU scheduling with the server or the others.
            var children: [ChildPeer] = []
            defer { for child in children { child.kill() } }
            for spec in specs {
                let child = try ChildPeer(
                    executable: spec.executable, arguments: spec.arguments,
                    files: ["ids.txt": ids.joined(separator: "\n")])
                children.append(child)
                try await child.waitReady(timeout: .seconds(60))
            }

            // The pollers start watching now (the jobs were just submitted, from their point of view).
            let pollStart = MonoInstant.now
            for id in ids {
                group.addTask {
                    if let instant = await poller.poll(id) { pollArrivals.record(id, at: instant) }
                }
            }
            let watched = Set(ids)
            let since = WallClock.system.now()
            for (watermarkPoller, arrivals) in watermarkPollers {
                group.addTask { await watermarkPoller.run(watched: watched, since: since, arrivals: arrivals) }
            }

            // Terminal commits spread uniformly over the window, with the scenario's fault.
            var generator = SystemRandomNumberGenerator()
            let windowMs = Int64(settings.window.millisecondsValue)
            let offsets = ids.indices.map { _ in Duration.milliseconds(Int64.random(in: 0...windowMs, using: &generator)) }
                .sorted()
            var faults: [(Duration, String)] = []
            switch scenario {
            case .healthy: break
            case .abruptDisconnect:
                faults = [(settings.window / 3, "drop"), (settings.window * 2 / 3, "drop")]
            case .silentStall:
                faults = [(settings.window / 4, "stall")]
            case .droppedChanges:
                stack.faults.dropChanges(fraction: 0.05)
                stack.faults.dropBroadcasts(fraction: 0.05)
            }
            let start = ContinuousClock.now
            var commits: [String: MonoInstant] = [:]
            var faultIndex = 0
            for (index, id) in ids.enumerated() {
                while faultIndex < faults.count, faults[faultIndex].0 <= offsets[index] {
                    try await ContinuousClock().sleep(until: start + faults[faultIndex].0, tolerance: nil)
                    if faults[faultIndex].1 == "drop" {
                        stack.faults.dropAllConnections(code: nil)
                    } else {
                        stack.faults.stall(for: settings.stall)
                    }
                    faultIndex += 1
                }
                try await ContinuousClock().sleep(until: start + offsets[index], tolerance: nil)
                commits[id] = try await Fixtures.finish(id, index: index, on: stack)
            }
            let faultStatistics = stack.faults.statistics
            // Every client gets the same, stated time after the last commit, whoever has finished before it: the
            // wait does not end when one client (say plain polling) has every outcome. What arrives later counts as
            // missed, for every client alike.
            let deadline = (commits.values.max() ?? .now) + settings.grace
            try await Task.sleep(for: deadline - .now)
            let pollSeconds = (MonoInstant.now - pollStart).secondsValue
            var peers: [(name: String, outcome: PeerOutcome)] = []
            for (spec, child) in zip(specs, children) {
                let result = try await child.finish(timeout: .seconds(20))
                var outcome = self.outcome(commits: commits, arrivals: Self.arrivals(in: result), deadline: deadline)
                if let rest = result["rest"] as? [String: Any], let requests = rest["requests"] as? Int,
                    let seconds = rest["seconds"] as? Double
                {
                    outcome.rest = (requests, seconds)
                }
                peers.append((spec.name, outcome))
            }
            var plain = self.outcome(commits: commits, arrivals: pollArrivals.all, deadline: deadline)
            plain.rest = (pollTransport.snapshot.requests, pollSeconds)
            peers.append(("plain polling, one GET per job (1 s doubling to 30 s)", plain))
            for (watermarkPoller, arrivals) in watermarkPollers {
                var outcome = self.outcome(commits: commits, arrivals: arrivals.all, deadline: deadline)
                outcome.rest = (watermarkPoller.transport.snapshot.requests, pollSeconds)
                peers.append(("watermark poller, one request every \(format(watermarkPoller.interval))", outcome))
            }
            let faultNote: String
            switch scenario {
            case .healthy: faultNote = "none"
            case .abruptDisconnect: faultNote = "TCP closed without close frame at window/3 and 2·window/3"
            case .silentStall: faultNote = "all sockets stall (no reads/writes, TCP open) for \(format(settings.stall))"
            case .droppedChanges:
                faultNote = "\(faultStatistics.changesDropped) postgres_changes and "
                    + "\(faultStatistics.broadcastsDropped) broadcasts dropped before fan-out (of \(ids.count) "
                    + "terminal commits; dropped broadcasts stay replayable)"
            }
            return OutcomeRow(scenario: scenario, jobs: ids.count, peers: peers, faultNote: faultNote)
        }
    }

    /// The `received` map of a child peer's result.
    private static func arrivals(in result: [String: Any]) -> [String: MonoInstant] {
        let received = (result["received"] as? [String: Any]) ?? [:]
        var arrivals: [String: MonoInstant] = [:]
        for (id, value) in received {
            if let seconds = value as? Double { arrivals[id] = MonoInstant(pythonSeconds: seconds) }
        }
        return arrivals
    }

    /// Child mode `outcomes-client`: JobSync watching the ids of `--ids`; ready once live; on stop writes when each
    /// job's first terminal state reached the `updates(forJobs:)` subscriber.
    static func client(_ options: ChildOptions) async throws {
        guard let url = URL(string: try options.require("url")) else { throw BenchError("bad --url") }
        let text = try String(contentsOfFile: try options.require("ids"), encoding: .utf8)
        let ids = try text.split(separator: "\n").map { try JobID(String($0)) }
        let feed: JobSyncClient.Feed = options.values["feed"] == "broadcast" ? .broadcast(BroadcastTopics()) : .postgresChanges
        let sync = try JobSyncUnderTest.make(
            baseURL: url, apiKey: try options.require("key"), feed: feed, accessToken: options.values["token"])
        sync.client.watch(ids)
        let arrivals = Arrivals()
        try await withThrowingTaskGroup(of: Void.self) { group in
            defer { group.cancelAll() }
            group.addTask { try await sync.run() }
            let updates = sync.client.updates(forJobs: Set(ids))
            group.addTask {
                for try await event in updates {
                    if case .updated(let job) = event, job.status.isTerminal {
                        arrivals.record(job.id.rawValue, at: MonoInstant.now)
                    }
                }
            }
            guard await waitUntil(timeout: .seconds(60), { sync.client.transportMode == .live }) else {
                throw BenchError("JobSync did not become live")
            }
            let restBefore = sync.rest.snapshot.requests
            let readyAt = MonoInstant.now
            _ = FileManager.default.createFile(atPath: try options.require("ready"), contents: Data("ready\n".utf8))
            let stopPath = try options.require("stop")
            await waitUntil(timeout: .seconds(3_600)) { FileManager.default.fileExists(atPath: stopPath) }
            let requests = sync.rest.snapshot.requests - restBefore
            let seconds = (MonoInstant.now - readyAt).secondsValue
            let received = arrivals.all.map { "\"\($0.key)\":\(Double($0.value.nanoseconds) / 1e9)" }
            let outPath = try options.require("out")
            try Data(
                ("{\"received\":{\(received.joined(separator: ","))},"
                    + "\"rest\":{\"requests\":\(requests),\"seconds\":\(seconds)}}").utf8)
                .write(to: URL(fileURLWithPath: outPath + ".tmp"))
            try FileManager.default.moveItem(atPath: outPath + ".tmp", toPath: outPath)
        }
    }

    /// Latencies of the arrivals up to `deadline`; a job that arrived later, or never, is missed.
    static func outcome(commits: [String: MonoInstant], arrivals: [String: MonoInstant], deadline: MonoInstant)
        -> PeerOutcome
    {
        var latencies: [Duration] = []
        var missed = 0
        for (id, commit) in commits {
            if let arrival = arrivals[id], arrival <= deadline {
                // Clamp: a poll answered between the commit and the harness reading its clock counts as 0.
                latencies.append(max(arrival - commit, .zero))
            } else {
                missed += 1
            }
        }
        return PeerOutcome(latencies: latencies, missed: missed)
    }
}
