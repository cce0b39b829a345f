public import Foundation
import JobSyncCore

/// Parsing of the HTTP `Retry-After` header (RFC 9110 §10.2.3).
public enum RetryAfter {
    /// The longest wait we accept from a server; larger values are clamped.
    public static let maximum: Duration = .seconds(3600)

    /// Parses a `Retry-After` value.
    ///
    /// - Parameters:
    ///   - value: the header value: delay-seconds (`"120"`) or an HTTP-date (`"Sun, 06 Nov 1994 08:49:37 GMT"`).
    ///   - now: the current time, used only for HTTP-dates.
    /// - Returns: the delay (zero when the date is in the past, clamped to ``maximum``), or `nil` if unparseable.
    public static func parse(_ value: String, now: Date) -> Duration? {
        let trimmed = value.trimmingCharacters(in: .whitespaces)
        if !trimmed.isEmpty, trimmed.utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }) {
            guard let seconds = Int64(trimmed) else { return self.maximum }  // overflow: absurdly large
            return min(.seconds(seconds), self.maximum)
        }
        guard let date = self.parseHTTPDate(trimmed) else { return nil }
        let delta = date.timeIntervalSince(now)
        if delta <= 0 { return .zero }
        // Compare before converting: a far-future date would overflow Int64 milliseconds.
        if delta >= 3600 { return self.maximum }
        return min(.milliseconds(Int64((delta * 1000).rounded(.up))), self.maximum)
    }

    /// Parses the three HTTP-date forms: IMF-fixdate, RFC 850 and asctime.
    static func parseHTTPDate(_ text: String) -> Date? {
        let months = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
        let tokens = text.split(whereSeparator: { $0 == " " || $0 == "," }).map(String.init)
        var day: Int?
        var month: Int?
        var year: Int?
        var time: [Int]?
        if tokens.count == 5, tokens[0].count == 3, let m = months.firstIndex(of: tokens[1].lowercased()) {
            // asctime: "Sun Nov  6 08:49:37 1994"
            month = m + 1
            day = Int(tokens[2])
            time = tokens[3].split(separator: ":").compactMap { Int($0) }
            year = Int(tokens[4])
        } else if tokens.count == 6, tokens[5].uppercased() == "GMT" {
            // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
            day = Int(tokens[1])
            month = months.firstIndex(of: tokens[2].lowercased()).map { $0 + 1 }
            year = Int(tokens[3])
            time = tokens[4].split(separator: ":").compactMap { Int($0) }
        } else if tokens.count == 4, tokens[3].uppercased() == "GMT" {
            // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
            let parts = tokens[1].split(separator: "-").map(String.init)
            guard parts.count == 3 else { return nil }
            day = Int(parts[0])
            month = months.firstIndex(of: parts[1].lowercased()).map { $0 + 1 }
            year = Int(parts[2]).map { $0 < 70 ? 2000 + $0 : ($0 < 100 ? 1900 + $0 : $0) }
            time = tokens[2].split(separator: ":").compactMap { Int($0) }
        }
        // HTTP-dates have four-digit years; anything else is hostile or broken (and would overflow the arithmetic).
        guard let day, let month, let year, let time, time.count == 3, (0...9999).contains(year),
            (1...31).contains(day), (0...23).contains(time[0]), (0...59).contains(time[1]), (0...60).contains(time[2])
        else { return nil }
        let days = CivilDate.daysSinceEpoch(year: Int64(year), month: Int64(month), day: Int64(day))
        let seconds = days * 86_400 + Int64(time[0] * 3600 + time[1] * 60 + time[2])
        return Date(timeIntervalSince1970: TimeInterval(seconds))
    }
}
