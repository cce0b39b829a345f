import Foundation
import JobSync
import JobSyncCore

/// ``WatchSession`` over `JobSyncClient`: a first REST read (to fail fast and clearly when the service cannot be
/// used, and to tell missing jobs), then the client's live updates, Realtime or polling.
struct JobSyncWatchSession: WatchSession, CustomStringConvertible {
    var description: String { "JobSyncWatchSession(\(self.connection))" }

    let connection: Connection

    func watch(_ ids: [JobID], report: @escaping @Sendable (WatchEvent) async -> Void) async throws {
        let rows: [JSONObject]
        do {
            rows = try await self.connection.source.fetch(ids: ids)
        } catch {
            throw self.connection.error(error)
        }
        let found = Set(rows.compactMap { ($0["id"] ?? $0["job_id"])?.stringValue.flatMap { try? JobID($0) } })
        for id in ids where !found.contains(id) {
            await report(.missing(id, .notFound))
        }
        let watched = ids.filter(found.contains)
        guard !watched.isEmpty else {
            try await self.waitForCancellation()
            return
        }
        let store = self.connection.makeStore()
        defer { store.close() }  // writes what is pending to the cache
        let (client, runClient) = try self.connection.makeClient(store: store)
        let updates = client.updates(forJobs: Set(watched))
        // The mode before any job record, so every record carries a real transport.
        let initialMode = client.transportMode
        await report(.transport(initialMode))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await runClient() }
            group.addTask {
                // Every mode change, as it happens (the sequence ends when the client's run() does).
                var last = initialMode
                for await mode in client.transportModes() where mode != last {
                    last = mode
                    await report(.transport(last))
                }
            }
            // Jobs the first read found existed: if they vanish now, they were deleted.
            var seen = found
            for try await event in updates {
                switch event {
                case .updated(let job):
                    seen.insert(job.id)
                    await report(.job(JobSnapshot(job)))
                case .deleted(let id):
                    await report(.missing(id, seen.contains(id) ? .deleted : .notFound))
                }
            }
            // Every job is final: the driver stops the watch; wait for it.
            try await self.waitForCancellation()
            group.cancelAll()
        }
    }

    private func waitForCancellation() async throws {
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        for await _ in stream {}
        withExtendedLifetime(continuation) {}
        throw CancellationError()
    }
}

/// ``StatusReader`` that answers final jobs from the result cache and reads the others once over REST (final
/// ones are then cached).
struct JobSyncStatusReader: StatusReader {
    let connection: Connection

    func read(_ ids: [JobID]) async throws -> [JobID: JobSnapshot] {
        let store = self.connection.makeStore()
        defer { store.close() }
        var answers: [JobID: JobSnapshot] = [:]
        var missing: [JobID] = []
        for id in ids {
            if let job = store.job(id), job.status.isTerminal {
                answers[id] = JobSnapshot(job)
            } else {
                missing.append(id)
            }
        }
        guard !missing.isEmpty else { return answers }
        let rows: [JSONObject]
        do {
            rows = try await self.connection.source.fetch(ids: missing)
        } catch {
            throw self.connection.error(error)
        }
        for row in rows {
            guard let observation = try? JobObservation.row(row, source: .poll) else { continue }
            // Merging persists final states to the cache file.
            _ = store.merge(observation)
            if let job = store.job(observation.jobID) {
                answers[job.id] = JobSnapshot(job)
            }
        }
        return answers
    }
}
