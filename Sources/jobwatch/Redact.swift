import Foundation

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
