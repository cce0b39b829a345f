import JobSyncCore

/// A point in time with microsecond precision, as PostgreSQL `timestamptz` stores it.
///
/// Parsed exactly from ISO-8601 / PostgreSQL text (`2026-08-21T10:15:03.401882+00:00`,
/// `2026-08-21T10:15:03.412Z`, `2026-08-21 10:15:03+02`), so ordering never suffers from floating point.
public struct JobTimestamp: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    /// Creates a timestamp from microseconds since the Unix epoch.
    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// Parses ISO-8601 / PostgreSQL timestamp text; `nil` when it is not one. A missing offset means UTC;
    /// fraction digits beyond microseconds are truncated.
    public init?(_ text: String) {
        guard let parsed = ISO8601Timestamp(text) else { return nil }
        self.microsecondsSinceEpoch = parsed.microsecondsSinceEpoch
    }

    /// ISO-8601 in UTC with six fraction digits, e.g. `2026-08-21T10:15:03.401882Z` (safe in PostgREST filters).
    public var description: String { ISO8601Timestamp.text(microsecondsSinceEpoch: self.microsecondsSinceEpoch) }

    /// This time moved by `duration` (sub-microsecond parts are truncated).
    public func advanced(by duration: Duration) -> JobTimestamp {
        let (seconds, attoseconds) = duration.components
        return JobTimestamp(
            microsecondsSinceEpoch: self.microsecondsSinceEpoch + seconds * 1_000_000 + attoseconds / 1_000_000_000_000)
    }

    public static func < (lhs: JobTimestamp, rhs: JobTimestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }
}
