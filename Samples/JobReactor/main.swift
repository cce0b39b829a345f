// A long-running backend service that reacts to job outcomes, as one replica of a fleet.
//
// It keeps every job of the `jobs` table in sync (Realtime when live, REST otherwise) and hands each outcome
// (completed, failed, deleted) to a handler. Run it as several copies: the copies share one consumer name, and each
// outcome is handled by exactly one of them; when a copy dies, another takes over the outcomes it had claimed and
// not acknowledged once their lease runs out. SIGINT/SIGTERM shut it down gracefully (swift-service-lifecycle).
// See README.md next to this file for the steps.
//
//   SUPABASE_URL=https://<ref>.supabase.co SUPABASE_SERVICE_ROLE_KEY=… swift run JobReactor
//
// The claims need the fleet migration (supabase/migrations/20261202000000_jobsync_claims.sql) and a key whose role
// may call it: a service key, or the anon key plus a user's token in SUPABASE_ACCESS_TOKEN (not the anon key alone).
//
// Keys: SUPABASE_SERVICE_ROLE_KEY, SUPABASE_SERVICE_KEY (as `jobwatch serve` prints it), SUPABASE_KEY or
// SUPABASE_ANON_KEY (the first set), plus SUPABASE_ACCESS_TOKEN if given.
// Settings (environment): JOBREACTOR_CONSUMER (default job-reactor), JOBREACTOR_HOLDER (this copy's name; default
// host, pid and a random suffix), JOBREACTOR_LEASE (seconds, default 30), JOBREACTOR_STATE (this copy's SQLite
// state file; default in memory), JOBREACTOR_START=beginning (a new consumer starts with every outcome of the
// table instead of now), JOBREACTOR_EXIT_AFTER=N (stop after N outcomes; used by the project's tests).
import Foundation
import JobSync
import Logging
import ServiceLifecycle
import UnixSignals

/// Reacts to outcomes. Replace the bodies with your own work (notify a user, bill, archive…); make them idempotent:
/// an outcome is handled at least once (twice when a copy dies between its work and its acknowledgement).
struct OutcomeHandler {
    let holder: String

    /// Writes one line on stdout at once (print buffers when stdout is a pipe).
    private func say(_ line: String) {
        FileHandle.standardOutput.write(Data((line + "\n").utf8))
    }

    func completed(_ job: Job) {
        let label = job.result?.view?.classification ?? "unreadable result"
        self.say("completed \(job.id) \(label) [\(self.holder)]")
    }

    func failed(_ job: Job) {
        self.say("failed \(job.id) \(job.error ?? "no error text") [\(self.holder)]")
    }

    func deleted(_ id: JobID) {
        self.say("deleted \(id) [\(self.holder)]")
    }
}

/// Takes the outcomes this copy won the claim of, hands them to the handler, and acknowledges each one.
struct OutcomeService: Service {
    let consumer: OutcomeConsumer
    let handler: OutcomeHandler
    let exitAfter: Int?

    func run() async throws {
        var handled = 0
        // Ends on graceful shutdown: the sequence finishes when the task is cancelled.
        for await outcome in self.consumer.outcomes().cancelOnGracefulShutdown() {
            switch (outcome.kind, outcome.job) {
            case (.completed, let job?): self.handler.completed(job)
            case (.failed, let job?): self.handler.failed(job)
            default: self.handler.deleted(outcome.jobID)
            }
            // Handled: never delivered again, to this copy or another one.
            self.consumer.acknowledge(outcome)
            handled += 1
            if let exitAfter, handled >= exitAfter {
                await self.consumer.flush()
                return
            }
        }
    }
}

/// Runs the consumer until the graceful shutdown (its `run()` ends when cancelled, after sending the
/// acknowledgements made so far).
struct ConsumerService: Service {
    let consumer: OutcomeConsumer

    func run() async throws {
        try await cancelWhenGracefulShutdown { try await self.consumer.run() }
    }
}

@main
enum JobReactor {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        let value = { (name: String) in environment[name].flatMap { $0.isEmpty ? nil : $0 } }
        guard let urlText = value("SUPABASE_URL"), let url = URL(string: urlText),
            let key = value("SUPABASE_SERVICE_ROLE_KEY") ?? value("SUPABASE_SERVICE_KEY") ?? value("SUPABASE_KEY")
                ?? value("SUPABASE_ANON_KEY")
        else {
            FileHandle.standardError.write(
                Data("set SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY (or a key and SUPABASE_ACCESS_TOKEN)\n".utf8))
            exit(2)
        }
        let token = value("SUPABASE_ACCESS_TOKEN")
        let logger = Logger(label: "JobReactor")
        let sync = try JobSyncClient.supabase(
            url: url, apiKey: key, accessToken: token.map { token in { @Sendable in token } }, mode: .allJobs,
            logger: logger)
        let fleet = OutcomeConsumer.Fleet(
            holder: value("JOBREACTOR_HOLDER"), lease: .seconds(value("JOBREACTOR_LEASE").flatMap(Int.init) ?? 30))
        var configuration = OutcomeConsumer.Configuration(
            name: value("JOBREACTOR_CONSUMER") ?? "job-reactor",
            start: value("JOBREACTOR_START") == "beginning" ? .beginning : .now, fleet: fleet)
        configuration.logger = logger
        let consumer = try OutcomeConsumer(
            client: sync.client, persistence: try SQLiteJobPersistence(path: value("JOBREACTOR_STATE") ?? ":memory:"),
            configuration: configuration)
        let outcomes = OutcomeService(
            consumer: consumer, handler: OutcomeHandler(holder: fleet.holder),
            exitAfter: value("JOBREACTOR_EXIT_AFTER").flatMap(Int.init))
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: sync),
                    .init(service: ConsumerService(consumer: consumer)),
                    // When the handler finishes (exit-after), the whole group shuts down.
                    .init(service: outcomes, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
