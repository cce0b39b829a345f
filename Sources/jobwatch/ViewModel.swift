import Foundation
import JobSync

/// The CLI's own, small view of a job. The JobSync adapter translates library types into these, so the
/// rendering, JSON Lines and exit-code logic stay independent of the library and are tested with fakes.

/// The status of a job as the service reports it (case-insensitive; unknown values are kept, not rejected).
enum JobPhase: Sendable, Hashable {
    /// Accepted, not started.
    case queued
    /// Being analysed.
    case processing
    /// Finished with a result.
    case completed
    /// Finished with an error.
    case failed
    /// A status this version does not know, kept as sent (lower-cased).
    case unknown(String)

    /// Parses a status as sent by the table or the status endpoint (`queued`, `PROCESSING`, …).
    init(raw: String) {
        switch raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() {
        case "queued": self = .queued
        case "processing": self = .processing
        case "completed": self = .completed
        case "failed": self = .failed
        case let other: self = .unknown(other)
        }
    }

    /// The lower-case status name used in output.
    var name: String {
        switch self {
        case .queued: "queued"
        case .processing: "processing"
        case .completed: "completed"
        case .failed: "failed"
        case .unknown(let raw): raw
        }
    }

    /// Whether the job can no longer change (short of a retry).
    var isFinal: Bool { self == .completed || self == .failed }
}

/// The part of a classification result that the CLI shows.
struct ClassificationSummary: Sendable, Hashable {
    /// The overall classification, if the result had one.
    var classification: String?
    /// The overall confidence (0–1), if the result had one.
    var confidence: Double?
    /// Number of pages in `page_results`.
    var pageCount: Int
    /// Page numbers whose `success` was false, ascending.
    var failedPages: [Int]
}

/// One observed state of a job.
struct JobSnapshot: Sendable, Hashable {
    /// The job.
    var id: JobID
    /// Its status.
    var phase: JobPhase
    /// The human progress message ("Processing page 3 of 10"), if any.
    var progress: String?
    /// The error message of a failed job, if any.
    var error: String?
    /// The result summary of a completed job, if any.
    var result: ClassificationSummary?
    /// The row's `updated_at` as the server wrote it, if known.
    var updatedAt: String?
}

extension TransportMode {
    /// The name the CLI shows for how the session currently learns about changes (live view, JSON Lines):
    /// `realtime` (live over the Realtime WebSocket), `polling` (the socket is down or not live yet: REST polling)
    /// or `offline` (neither works right now: connecting, or the service is unreachable).
    var cliName: String {
        switch self {
        case .live: "realtime"
        case .polling: "polling"
        case .offline: "offline"
        }
    }
}

/// Why a watched job was reported missing.
enum MissingReason: String, Sendable, Hashable {
    /// The job does not exist (or is not visible with this key).
    case notFound = "not_found"
    /// The job existed and was deleted.
    case deleted
}

/// Something a ``WatchSession`` observed.
enum WatchEvent: Sendable, Hashable {
    /// A new state of a watched job.
    case job(JobSnapshot)
    /// A watched job does not exist or was deleted.
    case missing(JobID, MissingReason)
    /// The session switched transport.
    case transport(TransportMode)
}

/// How a job's watch ended.
enum JobOutcome: Sendable, Hashable {
    /// The job completed.
    case completed
    /// The job failed.
    case failed
    /// The job does not exist.
    case notFound
    /// The job was deleted.
    case deleted
    /// `--timeout` elapsed first.
    case timedOut
    /// The user interrupted the watch first.
    case interrupted
    /// The service could not be used; the message is safe to print.
    case unavailable(String)

    /// The exit status this outcome asks for.
    var exitStatus: ExitStatus {
        switch self {
        case .completed: .completed
        case .failed: .failed
        case .notFound, .deleted: .notFound
        case .timedOut: .timeout
        case .interrupted: .interrupted
        case .unavailable: .unreachable
        }
    }

    /// The outcome name used in output.
    var name: String {
        switch self {
        case .completed: "completed"
        case .failed: "failed"
        case .notFound: "not_found"
        case .deleted: "deleted"
        case .timedOut: "timeout"
        case .interrupted: "interrupted"
        case .unavailable: "unavailable"
        }
    }
}

/// What the CLI shows for one job: a line of the live view, a JSON Lines record, a summary entry.
struct JobLine: Sendable, Hashable {
    /// The job.
    var id: JobID
    /// The latest state, `nil` until the first observation.
    var snapshot: JobSnapshot?
    /// Time since the watch started; frozen once the job has an outcome.
    var elapsed: Duration = .zero
    /// The transport current when this line last changed (or now, while the job is not final).
    var transport: TransportMode = .offline
    /// How the watch of this job ended, once it has.
    var outcome: JobOutcome?

    /// The status name to show: the outcome for missing jobs, else the job's status, else "waiting".
    var statusName: String {
        switch self.outcome {
        case .notFound?, .deleted?: return self.outcome?.name ?? ""
        default: return self.snapshot?.phase.name ?? "waiting"
        }
    }
}
