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
        let b = Array(text.utf8)
        var i = 0
        func number(_ count: Int) -> Int? {
            guard i + count <= b.count else { return nil }
            var value = 0
            for _ in 0..<count {
                let byte = b[i]
                guard (48...57).contains(byte) else { return nil }
                value = value * 10 + Int(byte - 48)
                i += 1
            }
            return value
        }
        func expect(_ char: UInt8) -> Bool {
            guard i < b.count, b[i] == char else { return false }
            i += 1
            return true
        }
        guard let year = number(4), expect(UInt8(ascii: "-")), let month = number(2), expect(UInt8(ascii: "-")),
            let day = number(2), i < b.count,
            b[i] == UInt8(ascii: "T") || b[i] == UInt8(ascii: " ")
                || b[i] == UInt8(ascii: "t")
        else { return nil }
        i += 1
        guard let hour = number(2), expect(UInt8(ascii: ":")), let minute = number(2), expect(UInt8(ascii: ":")),
            let second = number(2), (1...12).contains(month), (1...31).contains(day), hour <= 23, minute <= 59,
            second <= 60
        else { return nil }
        var micros = 0
        if i < b.count, b[i] == UInt8(ascii: ".") {
            i += 1
            var digits = 0
            while i < b.count, (48...57).contains(b[i]) {
                if digits < 6 { micros = micros * 10 + Int(b[i] - 48) }
                digits += 1
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in min(digits, 6)..<6 { micros *= 10 }
        }
        var offsetSeconds = 0
        if i < b.count {
            if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
                i += 1
            } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
                let sign = b[i] == UInt8(ascii: "-") ? -1 : 1
                i += 1
                guard let offsetHours = number(2), offsetHours <= 15 else { return nil }
                var offsetMinutes = 0
                if i < b.count {
                    _ = expect(UInt8(ascii: ":"))
                    guard let minutes = number(2), minutes <= 59 else { return nil }
                    offsetMinutes = minutes
                }
                offsetSeconds = sign * (offsetHours * 3600 + offsetMinutes * 60)
            }
        }
        guard i == b.count else { return nil }
        let days = Int64(civilDays(year: year, month: month, day: day))
        let seconds = days * 86_400 + Int64(hour * 3600 + minute * 60 + second) - Int64(offsetSeconds)
        self.microsecondsSinceEpoch = seconds * 1_000_000 + Int64(micros)
    }

    /// ISO-8601 in UTC with six fraction digits, e.g. `2026-08-21T10:15:03.401882Z` (safe in PostgREST filters).
    public var description: String {
        let totalSeconds =
            self.microsecondsSinceEpoch >= 0
            ? self.microsecondsSinceEpoch / 1_000_000 : (self.microsecondsSinceEpoch - 999_999) / 1_000_000
        let micros = self.microsecondsSinceEpoch - totalSeconds * 1_000_000
        let days = totalSeconds >= 0 ? totalSeconds / 86_400 : (totalSeconds - 86_399) / 86_400
        let secondsOfDay = Int(totalSeconds - days * 86_400)
        let (year, month, day) = civilFromDays(Int(days))
        func pad(_ value: Int, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T\(pad(secondsOfDay / 3600, 2)):"
            + "\(pad(secondsOfDay / 60 % 60, 2)):\(pad(secondsOfDay % 60, 2)).\(pad(Int(micros), 6))Z"
    }

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

/// Days since 1970-01-01 (H. Hinnant's `days_from_civil`).
private func civilDays(year: Int, month: Int, day: Int) -> Int {
    let y = month <= 2 ? year - 1 : year
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
    return era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// The inverse of ``civilDays(year:month:day:)`` (H. Hinnant's `civil_from_days`).
private func civilFromDays(_ days: Int) -> (Int, Int, Int) {
    let z = days + 719_468
    let era = (z >= 0 ? z : z - 146_096) / 146_097
    let doe = z - era * 146_097
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
    let mp = (5 * doy + 2) / 153
    let day = doy - (153 * mp + 2) / 5 + 1
    let month = mp < 10 ? mp + 3 : mp - 9
    return (yoe + era * 400 + (month <= 2 ? 1 : 0), month, day)
}
