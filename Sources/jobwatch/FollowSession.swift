import JobSync

/// One outcome as `follow` shows it: the job's final state (a ``JobLine`` whose outcome is `completed`, `failed`
/// or `deleted`), the consumer that received it and its delivery count.
struct FollowedOutcome: Sendable, Hashable {
    /// The job, its last state, and the outcome; `elapsed` and `transport` are filled in when it is written.
    var line: JobLine
    /// The consumer name given with `--consumer`, `nil` for an ephemeral follow.
    var consumer: String?
    /// With `--fleet`: this follow's name in the claims (it holds the outcome's claim); `nil` otherwise.
    var holder: String? = nil
    /// 1 for the first delivery in this process, 2 for the first redelivery (after a rejection), …
    var delivery: Int
}

/// An outcome handed to `follow`, with the two ways to settle it. Exactly one of them must be called, at most
/// once; an outcome settled by neither is delivered again by the next run (at least once).
struct FollowDelivery: Sendable {
    /// The outcome.
    var outcome: FollowedOutcome
    /// Marks the outcome handled: it is never delivered to this consumer again (once written to the file).
    var acknowledge: @Sendable () -> Void
    /// Gives the outcome back with a reason: delivered again after a backoff, a dead letter after the last attempt.
    var reject: @Sendable (_ reason: String) -> Void
}

/// A dead letter of a consumer, as `follow` shows it.
struct DeadLetterView: Sendable, Hashable {
    /// The consumer that gave up.
    var consumer: String
    /// The job.
    var id: JobID
    /// What happened to it: `completed`, `failed` or `deleted`.
    var outcome: JobOutcome
    /// How many deliveries were rejected.
    var attempts: Int
    /// The last rejection's reason (`exit status 3`).
    var reason: String
    /// When the outcome became a dead letter (ISO 8601).
    var at: String
    /// The job's final state, if known.
    var snapshot: JobSnapshot?
}

/// Something a ``FollowSession`` observed.
enum FollowEvent: Sendable {
    /// An outcome to handle.
    case outcome(FollowDelivery)
    /// The session switched transport.
    case transport(TransportMode)
    /// An outcome became a dead letter.
    case deadLetter(DeadLetterView)
}

/// What `follow` needs from an outcome consumer. The JobSync adapter implements it over `OutcomeConsumer`;
/// tests use fakes. Implementations map every failure to a ``JobwatchError`` whose message is safe to print.
protocol FollowSession: Sendable {
    /// Runs until the calling task is cancelled, reporting outcomes (one at a time, each until it is settled),
    /// transport switches and new dead letters.
    ///
    /// - Throws: ``JobwatchError`` (`unreachable`, `unauthorized`, `invalidInput`) when the service or the state
    ///   file cannot be used at all; `CancellationError` or nothing when cancelled.
    func run(report: @escaping @Sendable (FollowEvent) async -> Void) async throws

    /// Waits until every acknowledgement made so far is stored.
    func flush() async

    /// Outcomes delivered or waiting that are not acknowledged yet.
    var pending: Int { get }
}
