// JobSyncBenchmarks: JobSync vs the official Python Realtime client vs plain polling, against SupabaseLocal on
// loopback (in-memory backend). Prints markdown tables; every figure comes from the run.
//
//   JobSyncBenchmarks [--quick] [--jobs N] [--no-python]
//       [--only outcomes,cost,specific,throughput,memory,persistence,consumers,longrun,cli]
//       [--scenario healthy,disconnect,stall,dropped]   (outcome scenarios; default all)
//       [--persistence-jobs N] [--longrun-jobs N] [--longrun-delete-fraction F] [--longrun-no-cache]
//       [--retention SECONDS]
//
// Run through scripts/bench.sh (release build + Python venv). Child modes used by the harness itself:
// `throughput-client`, `outcomes-client`, `memory-client`, `persistence-client` and `longrun-client`.
import Foundation

@main
enum JobSyncBenchmarks {
    static func main() async {
        let arguments = CommandLine.arguments.dropFirst()
        do {
            switch arguments.first {
            case "throughput-client":
                try await ThroughputBenchmark.client(ChildOptions(arguments.dropFirst()))
            case "outcomes-client":
                try await OutcomeBenchmark.client(ChildOptions(arguments.dropFirst()))
            case "memory-client":
                try await ThroughputBenchmark.memoryClient(ChildOptions(arguments.dropFirst()))
            case "persistence-client":
                try await PersistenceBenchmark.client(ChildOptions(arguments.dropFirst()))
            case "longrun-client":
                try await LongRunBenchmark.client(ChildOptions(arguments.dropFirst()))
            default:
                try await Report(arguments: Array(arguments)).run()
            }
        } catch {
            FileHandle.standardError.write(Data("JobSyncBenchmarks: \(error)\n".utf8))
            exit(1)
        }
    }
}

/// The parent run: sections in order, each printed as soon as it is measured.
struct Report {
    var quick = false
    var jobs: Int?
    var sections: Set<String> = [
        "outcomes", "cost", "specific", "throughput", "memory", "persistence", "consumers", "longrun", "cli",
    ]
    var python: PythonSetup?
    /// Jobs per persistence run (3 merges each); default 100,000 (quick: 20,000).
    var persistenceJobs: Int?
    /// Long-run settings (jobs, deleted fraction, cache file, retention).
    var longRun = LongRunSettings()
    /// The outcome scenarios to run (`--scenario`; default all).
    var scenarios = OutcomeScenario.allCases
    /// Where and how this run happens (printed first, stored with the raw data).
    var provenance: Provenance

    init(arguments: [String]) throws {
        var usePython = true
        var iterator = arguments.makeIterator()
        while let argument = iterator.next() {
            switch argument {
            case "--quick": self.quick = true
            case "--jobs": self.jobs = iterator.next().flatMap { Int($0) }
            case "--only": self.sections = Set((iterator.next() ?? "").split(separator: ",").map(String.init))
            case "--no-python": usePython = false
            case "--scenario":
                let names = (iterator.next() ?? "").split(separator: ",").map(String.init)
                self.scenarios = OutcomeScenario.allCases.filter { names.contains($0.option) }
                guard self.scenarios.count == names.count else {
                    throw BenchError("--scenario takes \(OutcomeScenario.allCases.map(\.option).joined(separator: ","))")
                }
            case "--persistence-jobs": self.persistenceJobs = try Self.value(iterator.next(), for: argument)
            case "--longrun-jobs": self.longRun.jobs = try Self.value(iterator.next(), for: argument)
            case "--longrun-delete-fraction": self.longRun.deleteFraction = try Self.value(iterator.next(), for: argument)
            case "--longrun-no-cache": self.longRun.cache = false
            case "--retention": self.longRun.retentionSeconds = try Self.value(iterator.next(), for: argument)
            default: throw BenchError("unknown argument \(argument)")
            }
        }
        self.python = usePython ? PythonSetup.detect() : nil
        if self.quick, self.longRun.jobs == LongRunSettings().jobs { self.longRun.jobs = 50_000 }
        self.provenance = Provenance.collect(quick: self.quick, python: self.python, arguments: arguments)
    }

    private static func value<Value: LosslessStringConvertible>(_ text: String?, for option: String) throws -> Value {
        guard let text, let value = Value(text) else { throw BenchError("\(option) needs a value") }
        return value
    }

    func run() async throws {
        self.printHeader()
        if self.sections.contains("outcomes") { try await self.outcomes() }
        if self.sections.contains("cost") { try await self.cost() }
        if self.sections.contains("specific") { try await self.specific() }
        if self.sections.contains("memory") { try await self.memory() }
        if self.sections.contains("throughput") { try await self.throughput() }
        if self.sections.contains("persistence") { try await self.persistence() }
        if self.sections.contains("consumers") { try await self.consumers() }
        if self.sections.contains("longrun") { try await self.longRunMemory() }
        if self.sections.contains("cli") { await self.cli() }
    }

    private func cli() async {
        print("\n### CLI\n")
        do {
            let repeats = self.quick ? 5 : 20
            let starts = LatencyPercentiles(try await ColdStartBenchmark.run(repeats: repeats))
            print("| Measure | median | p90 | max | how |")
            print("|---|---:|---:|---:|---|")
            print("| `jobwatch watch <id> --json` cold start → first status line | \(starts.text(0.5)) "
                + "| \(starts.text(0.9)) | \(starts.text(1)) | release binary, \(repeats) runs, "
                + "process spawn → first JSON line on stdout; SupabaseLocal on loopback |")
        } catch {
            print("`jobwatch watch` cold start: not measured: \(error)")
        }
    }

    private func printHeader() {
        print("## JobSync benchmarks\n")
        for line in self.provenance.lines { print(line) }
    }

    static func loadAverage() -> String {
        ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "?")
            .split(separator: " ").prefix(3).joined(separator: " ")
    }

    // MARK: Sections

    private func outcomes() async throws {
        let settings = OutcomeSettings(
            jobs: self.jobs ?? (self.quick ? 200 : 1_000), window: self.quick ? .seconds(15) : .seconds(60))
        print("\n### Time to outcome (terminal commit → subscriber notified)\n")
        print("\(settings.jobs) jobs per scenario; terminal commits spread uniformly over \(format(settings.window)); "
            + "each client watches all of them (JobSync and the Python clients each in a process of its own; the "
            + "pollers in the harness). Server: SupabaseLocal with its realistic timings (`Subscribed to PostgreSQL` "
            + "after 1 s). After the last commit every client gets exactly \(format(settings.grace)), "
            + "whoever finished first. Percentiles (HdrHistogram, 3 significant digits) are over all jobs: a missed "
            + "job (not reported by then) counts as never.\n")
        print("| Scenario | Client | p50 | p99 | max | missed | fault |")
        print("|---|---|---:|---:|---:|---:|---|")
        var data = OutcomesData(
            provenance: self.provenance, jobs: settings.jobs, windowSeconds: settings.window.secondsValue,
            graceSeconds: settings.grace.secondsValue)
        // Last, after the REST notes: the raw data of the scenarios measured (all of them unless one failed).
        defer { ResultsFile.write("outcomes", data) }
        var restNotes: [String] = []
        defer {
            if !restNotes.isEmpty {
                print("\nREST requests from ready to stop (\(settings.jobs) watched): " + restNotes.joined(separator: "; ") + ".")
            }
        }
        for scenario in self.scenarios {
            let row = try await OutcomeBenchmark.run(scenario, settings: settings, python: self.python)
            var clients: [OutcomesData.Client] = []
            for (name, outcome) in row.peers {
                if let rest = outcome.rest {
                    restNotes.append("\(scenario.rawValue), \(name): \(rest.requests) in "
                        + "\(String(format: "%.0f", rest.seconds)) s "
                        + "(\(String(format: "%.1f", Double(rest.requests) * 60 / max(rest.seconds, 1))) / min)")
                }
                // Over all jobs: a missed job counts as never notified.
                let percentiles = LatencyPercentiles(outcome.latencies, missing: outcome.missed)
                print("| \(scenario.rawValue) | \(name) | \(percentiles.text(0.5)) | \(percentiles.text(0.99)) | "
                    + "\(percentiles.text(1)) | \(outcome.missed) / \(row.jobs) | \(row.faultNote) |")
                clients.append(
                    OutcomesData.Client(
                        name: name, latenciesMs: outcome.latencies.map(\.millisecondsValue).sorted(),
                        missed: outcome.missed, jobs: row.jobs, restRequests: outcome.rest?.requests,
                        restSeconds: outcome.rest?.seconds))
            }
            data.scenarios.append(
                OutcomesData.Scenario(
                    scenario: scenario.rawValue, option: scenario.option, fault: row.faultNote, clients: clients))
        }
    }

    private func cost() async throws {
        var settings = CostSettings()
        if self.quick { settings.window = .seconds(30) }
        let result = try await CostBenchmark.run(settings, python: self.python)
        print("\n### Cost of watching \(result.watched) jobs, 1 % changing per minute\n")
        print("Every client watches the same \(result.watched) jobs, each against a SupabaseLocal stack of its own "
            + "holding the same rows; one change stream (a progress update of a random watched job every "
            + "\(format(Duration.seconds(60) / max(1, settings.watched / 100))), nothing finishes) is committed to "
            + "every stack at once: \(result.changes) changes in the window. Measured over "
            + "\(format(settings.window)) after a \(format(settings.warmUp)) warm-up (JobSync live and the Python "
            + "client subscribed before it starts), scaled to one minute; nothing extrapolated. Requests and bytes "
            + "are counted by each stack's server per TCP connection: REST = requests and responses as on the wire "
            + "(request line, headers, body, both directions); WebSocket = frames both ways with their headers "
            + "(changes, heartbeats and replies, joins) on the client's sockets. JobSync's own transport counted "
            + "\(result.jobSyncClientRequests) REST requests in the window.\n")
        print("| Client | requests / min | REST bytes / min | WebSocket bytes / min | total bytes / min | notes |")
        print("|---|---:|---:|---:|---:|---|")
        for row in result.rows {
            print("| \(row.client) | \(format(count: row.requestsPerMinute)) | "
                + "\(format(bytes: row.restBytesPerMinute)) | \(format(bytes: row.webSocketBytesPerMinute)) | "
                + "\(format(bytes: row.totalBytesPerMinute)) | \(row.notes) |")
        }
        if let jobSync = result.rows.first {
            print("\nJobSync's REST requests for \(result.watched) watched, 1 % changing per minute: "
                + "\(format(count: jobSync.requestsPerMinute)) / min (target ≤ 12; its audit runs every 5 s while "
                + "any watched job is open).")
        }
        struct CostData: Encodable {
            var provenance: Provenance
            var cost: CostResult
        }
        ResultsFile.write("cost", CostData(provenance: self.provenance, cost: result))
    }

    private func specific() async throws {
        print("\n### JobSync-specific\n")
        print("| Measure | Result | how |")
        print("|---|---|---|")
        do {
            let cycle = try await JobSyncSpecificBenchmark.pollCycle(watched: 10_000)
            self.printCycle(cycle)
        } catch {
            print("| REST requests per poll cycle, 10,000 watched | not measured: \(error) | realtime off |")
        }
        try await self.specificRealtime()
    }

    private func printCycle(_ cycle: PollCycleResult) {
        print("| REST requests per poll cycle, 10,000 watched, no changes, by ids | \(cycle.byIDsRequests) "
            + "(\(format(bytes: Double(cycle.byIDsBytes)))) | realtime off, source without `updated_at`; "
            + "between the 2nd and 3rd poll |")
        print("| … same, watermark mode | \(cycle.watermarkRequests) (\(format(bytes: Double(cycle.watermarkBytes)))) "
            + "| `updated_at=gte.(watermark − 5 s)`; rows' `updated_at` spread over the past hour |")
    }

    private func specificRealtime() async throws {
        let repeats = self.quick ? 3 : 5
        let loss = try await JobSyncSpecificBenchmark.lossToFirstPoll(jobs: 1_000, repeats: repeats)
        let lossPercentiles = LatencyPercentiles(loss.delays)
        let reconnect = LatencyPercentiles(loss.reconnectDelays)
        print("| Abrupt socket loss → first REST request | median \(lossPercentiles.text(0.5)), "
            + "max \(lossPercentiles.text(1)) (\(loss.delays.count)/\(repeats)) | TCP closed without close "
            + "frame, 1,000 watched; \(loss.pollsDuringOutages) polls in total during the outages |")
        print("| Abrupt socket loss → live again (reconnected + reconciled) | median \(reconnect.text(0.5)), "
            + "max \(reconnect.text(1)) | same runs |")
        let stall = try await JobSyncSpecificBenchmark.stallToOutcome(jobs: 100, stall: .seconds(60))
        print("| Silent stall → outcome of a job completed 1 s into it | \(format(stall.stallToOutcome)) after the "
            + "stall began (\(format(stall.commitToOutcome)) after the commit) | 60 s stall, 100 watched; during it: "
            + "\(stall.audits) audits, \(stall.polls) polls |")
    }

    private func memory() async throws {
        print("\n### Memory per watched job\n")
        print("| Watched jobs | resident memory delta | per job | how |")
        print("|---:|---:|---:|---|")
        for jobs in [10_000, 100_000] {
            let result = try await ThroughputBenchmark.memory(jobs: jobs)
            print("| \(jobs) | \(format(bytes: Double(result.rssDelta))) | "
                + "\(format(bytes: Double(result.rssDelta) / Double(jobs))) | child process: `watch` + rows "
                + "(7 columns) merged into the store; no socket |")
        }
    }

    private func throughput() async throws {
        let jobs = self.quick ? 5_000 : 10_000
        let updates = 10
        print("\n### Throughput and CPU, client-limited (\(jobs * updates) `postgres_changes` UPDATEs: \(updates) per job, "
            + "\(jobs) jobs)\n")
        print("Each client alone in its own process with one table-wide subscription (JobSync in all-jobs mode). The "
            + "server renders every frame for the client's socket first, then writes them 512 per write and flush "
            + "(`SupabaseLocalStack.replay`), so it is not the limit. The same frames for every client, in its "
            + "protocol version (the Python client speaks only vsn 1.0.0). JobSync counts the changes it received "
            + "and merged and ends when a store subscriber has seen every job completed; Python counts callbacks. "
            + "Rate = events / (first event → last event), both timed by the client; CPU = the client process's "
            + "user + system from ready to its last event; allocations = `malloc` calls in that span (ordo-one's "
            + "malloc-interposer, preloaded).\n")
        print("| Client | events received | events / s | CPU per event | events per client CPU-second | "
            + "allocations per event | server write time |")
        print("|---|---:|---:|---:|---:|---:|---|")
        var perCPUSecond: [String: Double] = [:]
        var seenNotes: [String] = []
        defer {
            if !seenNotes.isEmpty {
                print("\nEvents the JobSync store subscriber saw (it reads each job's latest state; versions it had not "
                    + "read yet are coalesced): " + seenNotes.joined(separator: "; ") + ".")
            }
        }
        for client in ThroughputClient.allCases {
            guard let result = try await ThroughputBenchmark.run(
                client, python: self.python, jobs: jobs, updates: updates)
            else { continue }
            let rate = result.elapsed.map { Double(result.events) / $0.secondsValue }
            let perEvent: Duration? = result.events > 0 ? result.cpu / result.events : nil
            let efficiency = result.cpu > .zero ? Double(result.events) / result.cpu.secondsValue : nil
            perCPUSecond[result.client] = efficiency
            if let seen = result.seen { seenNotes.append("\(result.client.prefix { $0 != "(" }): \(seen)") }
            if result.connections != 1 {
                print("| ↳ \(result.connections) WebSocket connections: the client reconnected, the frames written to "
                    + "the first are lost | | | | | | |")
            }
            let allocations = result.allocations.map { String(format: "%.1f", Double($0) / Double(max(result.events, 1))) }
            print("| \(result.client) | \(result.events) / \(result.expected) | "
                + "\(rate.map { String(format: "%.0f", $0) } ?? "—") | "
                + "\(perEvent.map { String(format: "%.2f µs", $0.millisecondsValue * 1000) } ?? "—") | "
                + "\(efficiency.map { String(format: "%.0f", $0) } ?? "—") | \(allocations ?? "not counted") | "
                + "\(format(result.writeTime)) |")
        }
        if let python = perCPUSecond[ThroughputClient.python.name], python > 0 {
            let ratios = ThroughputClient.allCases.compactMap { client -> String? in
                guard case .jobSync(let version) = client, let value = perCPUSecond[client.name] else { return nil }
                return "vsn \(version.rawValue) \(String(format: "%.1f", value / python))×"
            }
            print("\nJobSync per client CPU-second against the Python client: " + ratios.joined(separator: ", ") + ".")
        }
    }

    private func consumers() async throws {
        let count = self.quick ? 20_000 : 100_000
        print("\n### Durable consumers\n")
        print("One `OutcomeConsumer` (state in a fresh SQLite file: WAL, `synchronous=NORMAL`, one transaction per "
            + "batch of acknowledgements) acknowledging \(count) completed jobs as fast as they are delivered, in the "
            + "harness process: read by its start-up catch-up from an in-memory table (the REST path without a "
            + "server), or merged one by one into the client's store (the live path). Goal: ≥ 20,000 acknowledged "
            + "outcomes per second. Time and CPU run from the consumer's start to the last acknowledgement written.\n")
        print("| path | acknowledged / s | CPU per outcome | outcomes | state file (db + wal) | acks remembered |")
        print("|---|---:|---:|---:|---:|---:|")
        for live in [false, true] {
            let result = try await ConsumerBenchmark.throughput(count: count, live: live)
            print("| \(result.path) | \(String(format: "%.0f", result.perSecond)) | "
                + "\(micros(result.cpu / max(result.outcomes, 1))) | \(result.outcomes) | "
                + "\(format(bytes: Double(result.fileBytes))) | \(result.remembered) |")
        }
        let fleetJobs = self.quick ? 200 : 1_000
        print("\nFleet mode: N replicas (one process, each with its own client, REST polling and in-memory state) "
            + "share one consumer name against SupabaseLocal's `jobsync_claim` / `jobsync_ack` (in-memory backend, "
            + "service key, 5 s lease) and handle \(fleetJobs) finished jobs, until every replica has settled every "
            + "outcome (a replica that lost a claim claims again when the lease ends, and learns the outcome was "
            + "acknowledged). Requests = claims granted + refused + acknowledgements, counted by the server; the "
            + "claim round trip is 200 sequential claims through `PostgRESTClient.rpc` afterwards.\n")
        print("| replicas | requests per outcome | claims granted / refused | acks | all settled in | "
            + "claim round trip p50 / p99 |")
        print("|---:|---:|---:|---:|---:|---|")
        for replicas in [1, 3] {
            let cost = try await ConsumerBenchmark.fleet(count: fleetJobs, replicas: replicas)
            print("| \(replicas) | \(String(format: "%.2f", cost.requestsPerOutcome)) | "
                + "\(cost.grantedAndRefused) | \(cost.acknowledgements) | "
                + "\(format(cost.elapsed)) | \(cost.claimRoundTrip.text(0.5)) / "
                + "\(cost.claimRoundTrip.text(0.99)) |")
        }
        let took = try await ConsumerBenchmark.takeover(lease: .seconds(30))
        print("\nTakeover at the default 30 s lease: replica B claims an outcome and dies without acknowledging it; "
            + "replica A, started at once, delivers it \(format(took)) after B's death (the lease, plus up to one "
            + "claim retry).")
    }

    private func persistence() async throws {
        let jobs = self.persistenceJobs ?? (self.quick ? 20_000 : 100_000)
        print("\n### Persistence: merges per second to disk\n")
        print("`JobStore` + `SQLiteJobPersistence` (WAL, `synchronous=NORMAL`, leader/follower group commit) in a child "
            + "process, fresh file each run. \(jobs) jobs × 3 states (queued → processing → completed, each a newer "
            + "`updated_at`; the completed row carries a result) = \(3 * jobs) merges, split over N OS threads calling "
            + "`merge` concurrently. Transactions = `JobStorePersistence.write` calls (one SQLite transaction each), "
            + "counted by a wrapper; syncs = `fsync` + `fdatasync` calls counted by `strace -f --seccomp-bpf` inside "
            + "the timed window (in brackets: the whole process, with file creation, the check and the checkpoint "
            + "at close). The file is reopened afterwards: every job must read back completed.\n")
        print("| mergers | merges / s | transactions / s | merges per transaction | syncs / s (syncs) | "
            + "merge p50 / p99 / max | CPU per merge | file (db + wal) | read back | write failures |")
        print("|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")
        for mergers in [1, 4, 16] {
            let result = try await PersistenceBenchmark.run(mergers: mergers, jobs: jobs)
            let syncs = result.syncCalls.map { calls in
                String(format: "%.1f", Double(calls) / result.elapsed.secondsValue)
                    + " (\(calls); \(result.syncCallsTotal ?? calls))"
            } ?? "not counted (no strace)"
            let perTransaction = Double(result.merges) / Double(max(result.transactions, 1))
            let cells: [String] = [
                "\(mergers)", String(format: "%.0f", result.mergesPerSecond),
                String(format: "%.0f", result.transactionsPerSecond), String(format: "%.1f", perTransaction), syncs,
                "\(micros(result.mergeLatencyP50)) / \(micros(result.mergeLatencyP99)) / \(micros(result.mergeLatencyMax))",
                micros(result.cpu / max(result.merges, 1)),
                "\(format(bytes: Double(result.databaseBytes))) + \(format(bytes: Double(result.walBytes)))",
                "\(result.reloadedJobs) / \(result.expectedJobs)", "\(result.failures)",
            ]
            print("| " + cells.joined(separator: " | ") + " |")
        }
    }

    /// Microseconds below 10 ms (merge latencies and CPU per merge are mostly below 1 ms).
    private func micros(_ duration: Duration) -> String {
        let value = duration.millisecondsValue * 1000
        return value < 10_000 ? String(format: "%.0f µs", value) : format(duration)
    }

    private func longRunMemory() async throws {
        let settings = self.longRun
        print("\n### Long run: memory while \(settings.jobs) jobs flow through all-jobs mode\n")
        do {
            let result = try await LongRunBenchmark.run(settings)
            print(result.description(settings))
        } catch {
            print("Not measured: \(error)")
        }
    }
}
