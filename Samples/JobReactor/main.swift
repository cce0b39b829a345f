// A long-running backend service that reacts to job outcomes.
//
// It keeps every job of the `jobs` table in sync (Realtime when live, REST otherwise), and for each job that
// completes or fails it runs a handler. SIGINT/SIGTERM shut it down gracefully through swift-service-lifecycle.
//
//   SUPABASE_URL=https://<ref>.supabase.co SUPABASE_ANON_KEY=… swift run JobReactor
//
// `JOBREACTOR_EXIT_AFTER=N` stops it after N outcomes (used by the project's tests).
import Foundation
import JobSync
import Logging
import ServiceLifecycle
import UnixSignals

/// Reacts to terminal job states. Replace the bodies with your own work (notify a user, bill, archive…).
struct OutcomeHandler {
    func completed(_ job: Job) {
        let label = job.result?.view?.classification ?? "unreadable result"
        print("completed \(job.id) \(label)")
    }

    func failed(_ job: Job) {
        print("failed \(job.id) \(job.error ?? "no error text")")
    }

    func deleted(_ id: JobID) {
        print("deleted \(id)")
    }
}

/// Consumes every change of the store and hands terminal states to the handler.
struct OutcomeService: Service {
    let client: JobSyncClient
    let handler: OutcomeHandler
    let exitAfter: Int?

    func run() async throws {
        var outcomes = 0
        // Ends on graceful shutdown: the sequence finishes when the task is cancelled.
        for try await event in self.client.store.allUpdates().cancelOnGracefulShutdown() {
            switch event {
            case .updated(let job) where job.status == .completed: self.handler.completed(job)
            case .updated(let job) where job.status == .failed: self.handler.failed(job)
            case .deleted(let id): self.handler.deleted(id)
            case .updated: continue
            }
            outcomes += 1
            if let exitAfter, outcomes >= exitAfter { return }
        }
    }
}

@main
enum JobReactor {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let urlText = environment["SUPABASE_URL"], let url = URL(string: urlText),
            let key = environment["SUPABASE_ANON_KEY"] ?? environment["SUPABASE_KEY"]
        else {
            FileHandle.standardError.write(Data("set SUPABASE_URL and SUPABASE_ANON_KEY\n".utf8))
            exit(2)
        }
        let logger = Logger(label: "JobReactor")
        let sync = try JobSyncClient.supabase(url: url, apiKey: key, mode: .allJobs, logger: logger)
        let outcomes = OutcomeService(
            client: sync.client, handler: OutcomeHandler(),
            exitAfter: environment["JOBREACTOR_EXIT_AFTER"].flatMap(Int.init))
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: sync),
                    // When the outcome consumer finishes (exit-after), the whole group shuts down.
                    .init(service: outcomes, successTerminationBehavior: .gracefullyShutdownGroup),
                ],
                gracefulShutdownSignals: [.sigterm, .sigint],
                logger: logger))
        try await group.run()
    }
}
