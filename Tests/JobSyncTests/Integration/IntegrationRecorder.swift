import Foundation
import JobSync
import JobSyncCore
import SupabaseLocal
import NIOConcurrencyHelpers
import Testing

/// What one subscriber saw of one job, in order.
enum SeenEvent: Sendable, Hashable, CustomStringConvertible {
    /// A state: its `updated_at` (the version), status, error and raw result.
    case updated(JobTimestamp?, JobStatus, error: String?, result: JSONValue?)
    /// A deletion.
    case deleted

    init(_ event: JobEvent) {
        switch event {
        case .updated(let job): self = .updated(job.updatedAt, job.status, error: job.error, result: job.result?.raw)
        case .deleted: self = .deleted
        }
    }

    var isTerminal: Bool {
        if case .updated(_, let status, _, _) = self { return status.isTerminal }
        return false
    }

    var description: String {
        switch self {
        case .updated(let version, let status, _, let result):
            "\(status)@\(version.map(\.description) ?? "-")\(result == nil ? "" : "+result")"
        case .deleted: "deleted"
        }
    }
}

/// How `waitForCompletion` ended for one job.
enum WaitOutcome: Sendable, Hashable {
    case completed(JobTimestamp?, result: JSONValue?)
    case failed(String?)
    case deleted
    case other(String)
}

/// Thread-safe record of everything every subscriber saw.
final class IntegrationRecorder: Sendable {
    private struct State {
        /// subscriber name → job → events in order.
        var events: [String: [JobID: [SeenEvent]]] = [:]
        var finished: [String: Set<JobID>] = [:]
        var waits: [JobID: WaitOutcome] = [:]
        var subscriberErrors: [String] = []
    }

    private let state = NIOLockedValueBox(State())

    func record(_ subscriber: String, _ event: JobEvent) {
        self.state.withLockedValue { $0.events[subscriber, default: [:]][event.jobID, default: []].append(SeenEvent(event)) }
    }

    func finished(_ subscriber: String, _ id: JobID) {
        self.state.withLockedValue { _ = $0.finished[subscriber, default: []].insert(id) }
    }

    func recordWait(_ id: JobID, _ outcome: WaitOutcome) {
        self.state.withLockedValue { $0.waits[id] = outcome }
    }

    func recordError(_ subscriber: String, _ error: any Error) {
        self.state.withLockedValue { $0.subscriberErrors.append("\(subscriber): \(error)") }
    }

    func events(_ subscriber: String) -> [JobID: [SeenEvent]] {
        self.state.withLockedValue { $0.events[subscriber] ?? [:] }
    }

    var waits: [JobID: WaitOutcome] { self.state.withLockedValue { $0.waits } }
    var subscriberErrors: [String] { self.state.withLockedValue { $0.subscriberErrors } }

    /// Whether every wait answered, every per-job sequence ended, and every stream saw a final event per job.
    func isComplete(ids: Set<JobID>, subscribers: [String]) -> Bool {
        self.state.withLockedValue { state in
            state.waits.count >= ids.count && (state.finished[IntegrationRun.perJob]?.count ?? 0) >= ids.count
        } && subscribers.allSatisfy { self.finalCount($0, among: ids) == ids.count }
    }

    /// A one-line summary of how far the subscribers got.
    func progress(ids: Set<JobID>, subscribers: [String]) -> String {
        let counts = self.state.withLockedValue { state in
            (state.waits.count, state.finished[IntegrationRun.perJob]?.count ?? 0)
        }
        let finals = subscribers.map { "\($0) finals \(self.finalCount($0, among: ids))" }
        return "waits \(counts.0)/\(ids.count), per-job ended \(counts.1)/\(ids.count), "
            + finals.joined(separator: ", ")
    }

    /// Jobs for which `subscriber` has seen a final event (terminal state or deletion).
    func finalCount(_ subscriber: String, among ids: Set<JobID>) -> Int {
        self.state.withLockedValue { state in
            let seen = state.events[subscriber] ?? [:]
            return ids.count { id in seen[id]?.contains { $0.isTerminal || $0 == .deleted } ?? false }
        }
    }
}

/// The server's final truth for one job.
struct ServerOutcome: Sendable {
    /// The row at the end (nil: deleted).
    var job: Job?
    /// Whether the job reached a terminal state before any deletion (retention deletes keep this true).
    var reachedTerminal: Bool
}

/// The invariant checks shared by the fault matrix and the soak test (DESIGN.md invariants 1 and 2).
enum InvariantChecks {
    /// Every terminal outcome reached every subscriber exactly once, nothing regressed or repeated, and the final
    /// events match the server. Returns the problems found (empty when all hold), at most `limit` lines.
    static func problems(
        recorder: IntegrationRecorder,
        expected: [JobID: ServerOutcome],
        subscribers: [String],
        endingAtFinal: Set<String>,
        limit: Int = 20
    ) -> [String] {
        var problems: [String] = []
        func report(_ text: String) { if problems.count < limit { problems.append(text) } }
        for subscriber in subscribers {
            let seen = recorder.events(subscriber)
            for (id, outcome) in expected {
                let events = seen[id] ?? []
                let endsAtFinal = endingAtFinal.contains(subscriber)
                // No regression, no duplicate: versions strictly increase; nothing after a deletion.
                var last: JobTimestamp?
                for (index, event) in events.enumerated() {
                    switch event {
                    case .updated(let version, _, _, _):
                        if let version, let previous = last, version <= previous {
                            report("\(subscriber) \(id): version went \(previous) → \(version) in \(events)")
                        }
                        if version == nil { report("\(subscriber) \(id): a state without updated_at") }
                        last = version ?? last
                    case .deleted:
                        if index != events.count - 1 { report("\(subscriber) \(id): events after deletion: \(events)") }
                    }
                }
                let terminals = events.filter(\.isTerminal)
                let deletions = events.count { $0 == .deleted }
                let wantTerminal = outcome.reachedTerminal
                let wantDeleted = outcome.job == nil
                if wantTerminal {
                    if terminals.count != 1 {
                        report("\(subscriber) \(id): \(terminals.count) terminal events, expected 1: \(events)")
                    }
                    if let final = outcome.job, let terminal = terminals.first,
                        terminal
                            != .updated(final.updatedAt, final.status, error: final.error, result: final.result?.raw)
                    {
                        report(
                            "\(subscriber) \(id): terminal \(terminal) ≠ server \(final.status)@\(final.updatedAt!)"
                                + "\(final.result == nil ? "" : "+result")")
                    }
                } else if !terminals.isEmpty {
                    report("\(subscriber) \(id): terminal events for a job deleted before finishing: \(events)")
                }
                // A per-job or job-set sequence ends after final events, so it sees a deletion only when it came
                // before the job finished.
                let deletionVisible = wantDeleted && !(endsAtFinal && wantTerminal)
                if deletions != (deletionVisible ? 1 : 0) {
                    report(
                        "\(subscriber) \(id): \(deletions) deletions, expected \(deletionVisible ? 1 : 0): \(events)")
                }
            }
        }
        let waits = recorder.waits
        for (id, outcome) in expected {
            let wait = waits[id]
            switch (outcome.reachedTerminal, outcome.job) {
            case (true, let job?):
                let want: WaitOutcome =
                    job.status == .failed ? .failed(job.error) : .completed(job.updatedAt, result: job.result?.raw)
                if wait != want { report("waitForCompletion \(id): \(String(describing: wait)), expected \(want)") }
            case (true, nil):
                // Deleted after finishing: the wait answered before the deletion.
                if case .completed? = wait {} else if case .failed? = wait {} else {
                    report("waitForCompletion \(id): \(String(describing: wait)), expected a terminal outcome")
                }
            case (false, _):
                if wait != .deleted { report("waitForCompletion \(id): \(String(describing: wait)), expected deleted") }
            }
        }
        return problems
    }

    /// Differences between the store and the server's table, for the watched ids.
    static func storeDifferences(store: JobStore, server: [JobID: Job], ids: Set<JobID>, limit: Int = 20) -> [String] {
        var differences: [String] = []
        for id in ids.sorted() {
            guard differences.count < limit else { break }
            let local = store.job(id)
            switch (local, server[id]) {
            case (nil, nil):
                continue
            case (let local?, nil):
                differences.append("\(id): store has \(Self.describe(local)), server none")
            case (nil, let remote?):
                differences.append("\(id): store has nothing, server \(remote.status)")
            case (let local?, let remote?):
                if local.status != remote.status || local.progress != remote.progress || local.error != remote.error
                    || local.result?.raw != remote.result?.raw || local.updatedAt != remote.updatedAt
                {
                    differences.append("\(id): store \(Self.describe(local)) ≠ server \(Self.describe(remote))")
                }
            }
        }
        return differences
    }

    private static func describe(_ job: Job) -> String {
        "\(job.status)@\(job.updatedAt?.description ?? "-") \(job.progress ?? "-")"
            + (job.result == nil ? "" : " +result") + (job.error.map { " error: \($0)" } ?? "")
    }

    /// The server's rows as ``Job`` values (through the same JSON the REST side would send).
    static func serverJobs(_ backend: any JobsBackend) async throws -> [JobID: Job] {
        var jobs: [JobID: Job] = [:]
        for row in try await backend.rows() {
            let text = LocalJSON.object(row).encoded()
            let json = try #require((try? JSONValue.parse(text))?.objectValue, "the backend row is not a JSON object")
            let job = try Job(row: json)
            jobs[job.id] = job
        }
        return jobs
    }
}
