/// The one public error type of `SupabaseLocal`.
///
/// The ``message`` is always safe to print: it never contains keys, JWTs or URLs with credentials.
public struct SupabaseLocalError: Error, Sendable, Equatable, CustomStringConvertible {
    /// An extensible error code.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        /// The code's stable name.
        public let name: String

        /// Creates a code with the given stable name.
        public init(_ name: String) {
            self.name = name
        }

        /// The row or value given to the backend is not valid for the table.
        public static let invalidRow = Code("invalidRow")
        /// A row with the same primary key already exists.
        public static let duplicateKey = Code("duplicateKey")
        /// JSON text could not be parsed.
        public static let invalidJSON = Code("invalidJSON")
        /// A timestamp could not be parsed.
        public static let invalidTimestamp = Code("invalidTimestamp")
        /// The server could not bind or start.
        public static let startupFailed = Code("startupFailed")
        /// The backend failed (for example the database went away).
        public static let backendFailure = Code("backendFailure")
        /// A configuration value is not valid.
        public static let invalidConfiguration = Code("invalidConfiguration")

        /// The code's name.
        public var description: String { self.name }
    }

    /// What went wrong, in general.
    public var code: Code
    /// A human-readable message that is safe to print.
    public var message: String

    /// Creates an error.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `"<code>: <message>"`.
    public var description: String { "SupabaseLocalError.\(self.code): \(self.message)" }
}
