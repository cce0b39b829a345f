public import JobSyncCore

/// A job's outcome (its terminal state, or its deletion), delivered to a named ``OutcomeConsumer`` until the
/// consumer acknowledges it.
public struct Outcome: Sendable, Hashable {
    /// What happened to the job.
    public enum Kind: String, Sendable, Hashable {
        /// The job completed; ``Outcome/job`` holds its result.
        case completed
        /// The job failed; ``Outcome/job`` holds its error.
        case failed
        /// The job was deleted.
        case deleted
    }

    /// The consumer's name.
    public var consumer: String
    /// The job.
    public var jobID: JobID
    /// What happened.
    public var kind: Kind
    /// The job's final state. For a deletion: the last state this consumer saw, or `nil`.
    public var job: Job?
    /// How many times this process delivered the outcome: 1 the first time, 2 after one rejection, and so on.
    public var delivery: Int

    /// Creates an outcome.
    public init(consumer: String, jobID: JobID, kind: Kind, job: Job?, delivery: Int) {
        self.consumer = consumer
        self.jobID = jobID
        self.kind = kind
        self.job = job
        self.delivery = delivery
    }
}

/// An outcome that a consumer's handler rejected ``OutcomeConsumer/Configuration/maximumAttempts`` times: it is
/// not delivered again, and stays listed by ``OutcomeConsumer/deadLetters()``.
public struct DeadLetter: Sendable, Hashable {
    /// The job.
    public var jobID: JobID
    /// What happened to the job.
    public var kind: Outcome.Kind
    /// How many times the outcome was rejected.
    public var attempts: Int
    /// The last rejection's reason.
    public var reason: String
    /// When the outcome was dead-lettered (wall clock).
    public var at: JobTimestamp
    /// The job's final state, when known.
    public var job: Job?

    /// Creates a dead letter.
    public init(jobID: JobID, kind: Outcome.Kind, attempts: Int, reason: String, at: JobTimestamp, job: Job?) {
        self.jobID = jobID
        self.kind = kind
        self.attempts = attempts
        self.reason = reason
        self.at = at
        self.job = job
    }
}
