public import SupabaseREST

/// The one error type of `JobSync`.
///
/// `description` is safe to print: it never contains API keys, tokens or URLs with credentials.
/// Match on ``code``.
public struct JobSyncError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { self.name }

        /// A job id that is not a UUID. Raised before any request.
        public static let invalidJobID = Code("invalidJobID")
        /// A row without a usable `id`.
        public static let invalidRow = Code("invalidRow")
        /// The job finished as `failed`; ``JobSyncError/jobError`` has the job's error text.
        public static let jobFailed = Code("jobFailed")
        /// The job was deleted on the server (or vanished from it) while being watched.
        public static let jobDeleted = Code("jobDeleted")
        /// A wait timed out.
        public static let timeout = Code("timeout")
        /// A subscriber fell so far behind that its bounded buffer overflowed; the sequence ended.
        public static let subscriberTooSlow = Code("subscriberTooSlow")
        /// The persistence file could not be opened, read or written.
        public static let persistence = Code("persistence")
        /// A REST request failed; ``JobSyncError/restError`` has the details.
        public static let rest = Code("rest")
        /// The configuration is not usable (bad URL, missing key, ...).
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// The operation was cancelled, or the client stopped.
        public static let cancelled = Code("cancelled")
    }

    /// The kind of failure.
    public var code: Code
    /// A message safe to print.
    public var message: String
    /// The job concerned, if any.
    public var jobID: JobID?
    /// The job's own `error` text, for ``Code/jobFailed``.
    public var jobError: String?
    /// The underlying REST error, for ``Code/rest``.
    public var restError: RESTError?

    /// Creates an error.
    public init(
        code: Code,
        message: String,
        jobID: JobID? = nil,
        jobError: String? = nil,
        restError: RESTError? = nil
    ) {
        self.code = code
        self.message = message
        self.jobID = jobID
        self.jobError = jobError
        self.restError = restError
    }

    /// Wraps a REST error.
    public init(_ restError: RESTError, jobID: JobID? = nil) {
        self.init(code: .rest, message: restError.description, jobID: jobID, restError: restError)
    }

    public var description: String {
        var text = "JobSyncError.\(self.code)"
        if let jobID = self.jobID { text += " [job \(jobID)]" }
        text += ": \(self.message)"
        if let jobError = self.jobError { text += " (job error: \(jobError))" }
        return text
    }
}
