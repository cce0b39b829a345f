import Foundation

/// A validated job id: a UUID, kept in its canonical lower-case form (the form PostgreSQL prints).
struct JobID: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The canonical lower-case UUID string.
    let rawValue: String

    /// Parses a job id; `nil` unless `text` is a UUID (any letter case, with hyphens).
    init?(_ text: String) {
        guard let uuid = UUID(uuidString: text.trimmingCharacters(in: .whitespaces)) else { return nil }
        self.rawValue = uuid.uuidString.lowercased()
    }

    /// Parses a list of job ids, failing on the first invalid one with a message that shows it (shortened).
    static func parseAll(_ texts: [String]) throws(JobwatchError) -> [JobID] {
        var ids: [JobID] = []
        var seen: Set<JobID> = []
        for text in texts {
            guard let id = JobID(text) else {
                throw JobwatchError(
                    .invalidInput,
                    "'\(Redact.shorten(text))' is not a job id: expected a UUID such as "
                        + "123e4567-e89b-12d3-a456-426614174000"
                )
            }
            // Watching the same job twice is harmless: keep the first occurrence only.
            if seen.insert(id).inserted {
                ids.append(id)
            }
        }
        return ids
    }

    var description: String { self.rawValue }

    static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// Helpers that keep secrets out of anything printed.
enum Redact {
    /// Keeps at most `limit` characters of untrusted input for an error message.
    static func shorten(_ text: String, limit: Int = 40) -> String {
        let printable = String(text.unicodeScalars.filter { !CharacterSet.controlCharacters.contains($0) })
        guard printable.count > limit else { return printable }
        return String(printable.prefix(limit)) + "…"
    }

    /// A URL reduced to scheme, host, port and path: query strings (which may hold `apikey=`), fragments and
    /// user info are dropped.
    static func url(_ url: URL) -> String {
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: false) else {
            return "<unprintable URL>"
        }
        components.query = nil
        components.fragment = nil
        components.user = nil
        components.password = nil
        return components.string ?? "<unprintable URL>"
    }

    /// Like ``url(_:)`` for text that may not even parse as a URL.
    static func url(text: String) -> String {
        guard let url = URL(string: text) else {
            let beforeQuery = text.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
            return "'\(Redact.shorten(beforeQuery))'"
        }
        return Redact.url(url)
    }
}
