import Foundation
import JobSync
import JobSyncCore

/// ``WatchSession`` over `JobSyncClient`: a first REST read (to fail fast and clearly when the service cannot be
/// used, and to tell missing jobs), then the client's live updates, Realtime or polling.
struct JobSyncWatchSession: WatchSession, CustomStringConvertible {
    var description: String { "JobSyncWatchSession(\(self.connection))" }

    let connection: Connection

    func watch(_ ids: [JobID], report: @escaping @Sendable (WatchEvent) async -> Void) async throws {
        var libraryIDs: [JobSync.JobID] = []
        for id in ids {
            libraryIDs.append(try id.library)
        }
        let rows: [JSONObject]
        do {
            rows = try await self.connection.source.fetch(ids: libraryIDs)
        } catch {
            throw self.connection.error(error)
        }
        let found = Set(rows.compactMap { ($0["id"] ?? $0["job_id"])?.stringValue.flatMap(JobID.init) })
        for id in ids where !found.contains(id) {
            await report(.missing(id, .notFound))
        }
        let watched = libraryIDs.filter { JobID($0.rawValue).map(found.contains) ?? false }
        guard !watched.isEmpty else {
            try await self.waitForCancellation()
            return
        }
        let store = self.connection.makeStore()
        defer { store.close() }  // writes what is pending to the cache
        let client: JobSyncClient
        do {
            client = try JobSyncClient(
                configuration: .init(
                    source: self.connection.source,
                    feed: self.connection.feed,
                    // Polling only (no feed, or the status endpoint): a person is watching, so back off to 5 s
                    // at most instead of the library's 30 s.
                    maximumPollDelay: self.connection.feed == nil ? .seconds(5) : .seconds(30),
                    logger: self.connection.logger
                ),
                store: store
            )
        } catch {
            throw self.connection.error(error)
        }
        let updates = client.updates(forJobs: Set(watched))
        // The mode before any job record, so every record carries a real transport.
        let initialMode = client.transportMode.cliMode
        await report(.transport(initialMode))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            if let realtime = self.connection.realtime {
                group.addTask { try await realtime.client.run() }
            }
            group.addTask {
                // Every mode change, as it happens (the sequence ends when the client's run() does).
                var last = initialMode
                for await mode in client.transportModes() where mode.cliMode != last {
                    last = mode.cliMode
                    await report(.transport(last))
                }
            }
            // Jobs the first read found existed: if they vanish now, they were deleted.
            var seen = found
            for try await event in updates {
                switch event {
                case .updated(let job):
                    if let snapshot = JobSnapshot(job) {
                        seen.insert(snapshot.id)
                        await report(.job(snapshot))
                    }
                case .deleted(let libraryID):
                    if let id = JobID(libraryID.rawValue) {
                        await report(.missing(id, seen.contains(id) ? .deleted : .notFound))
                    }
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
        var missing: [JobSync.JobID] = []
        for id in ids {
            let libraryID = try id.library
            if let job = store.job(libraryID), job.status.isTerminal, let snapshot = JobSnapshot(job) {
                answers[id] = snapshot
            } else {
                missing.append(libraryID)
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
            if let job = store.job(observation.jobID), let snapshot = JobSnapshot(job) {
                answers[snapshot.id] = snapshot
            }
        }
        return answers
    }
}
