/// A timestamp as Supabase writes it: ISO 8601 / PostgreSQL text with up to microsecond precision, parsed exactly
/// (integers only, so ordering never suffers from floating point). The one parser for Realtime's
/// `commit_timestamp` and the jobs table's timestamp columns.
///
/// Accepted: `YYYY-MM-DD(T|t| )HH:MM:SS[.fraction][Z|z|±HH|±HHMM|±HH:MM]`, e.g. `2026-08-21T10:15:03.412Z`,
/// `2026-08-21T10:15:03.401882+00:00`, `2026-08-21 12:15:03+02`. Fraction digits beyond microseconds are
/// truncated; a leap second (`:60`) is accepted. Without an offset (PostgreSQL's `timestamp without time zone`) the
/// time is read as UTC and ``hasOffset`` is `false`.
package struct ISO8601Timestamp: Sendable, Hashable {
    /// Microseconds since 1970-01-01T00:00:00Z.
    package var microsecondsSinceEpoch: Int64
    /// Whether the text named its offset from UTC.
    package var hasOffset: Bool

    /// Parses timestamp text; `nil` for any other shape or an out-of-range field (month 13, February 30, …).
    package init?(_ text: String) {
        var reader = DigitReader(Array(text.utf8))
        guard let year = reader.number(digits: 4), reader.skip(UInt8(ascii: "-")),
            let month = reader.number(digits: 2), reader.skip(UInt8(ascii: "-")),
            let day = reader.number(digits: 2),
            reader.skip(UInt8(ascii: "T")) || reader.skip(UInt8(ascii: "t")) || reader.skip(UInt8(ascii: " ")),
            let hour = reader.number(digits: 2), reader.skip(UInt8(ascii: ":")),
            let minute = reader.number(digits: 2), reader.skip(UInt8(ascii: ":")),
            let second = reader.number(digits: 2),
            (1...12).contains(month), day >= 1, day <= CivilDate.daysInMonth(year: year, month: month),
            hour <= 23, minute <= 59, second <= 60
        else { return nil }
        var micros: Int64 = 0
        if reader.skip(UInt8(ascii: ".")) {
            guard let fraction = reader.fraction(keeping: 6) else { return nil }
            micros = fraction
        }
        var offsetSeconds: Int64 = 0
        self.hasOffset = !reader.isAtEnd
        if reader.skip(UInt8(ascii: "Z")) || reader.skip(UInt8(ascii: "z")) {
            offsetSeconds = 0
        } else if let sign = reader.sign() {
            guard let offsetHours = reader.number(digits: 2), offsetHours <= 23 else { return nil }
            var offsetMinutes: Int64 = 0
            if !reader.isAtEnd {
                _ = reader.skip(UInt8(ascii: ":"))
                guard let minutes = reader.number(digits: 2), minutes <= 59 else { return nil }
                offsetMinutes = minutes
            }
            offsetSeconds = sign * (offsetHours * 3600 + offsetMinutes * 60)
        }
        guard reader.isAtEnd else { return nil }
        let days = CivilDate.daysSinceEpoch(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        self.microsecondsSinceEpoch = seconds * 1_000_000 + micros
    }

    /// Milliseconds since the epoch, rounded down (as Realtime shows commit timestamps).
    package var millisecondsSinceEpoch: Int64 {
        let (quotient, remainder) = self.microsecondsSinceEpoch.quotientAndRemainder(dividingBy: 1000)
        return remainder < 0 ? quotient - 1 : quotient
    }

    /// ISO 8601 in UTC with six fraction digits, e.g. `2026-08-21T10:15:03.401882Z` (safe in PostgREST filters).
    package static func text(microsecondsSinceEpoch: Int64) -> String {
        let (seconds, micros) = floorDivision(microsecondsSinceEpoch, 1_000_000)
        let (days, secondOfDay) = floorDivision(seconds, 86_400)
        let (year, month, day) = CivilDate.date(daysSinceEpoch: days)
        func padded(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        return "\(padded(year, 4))-\(padded(month, 2))-\(padded(day, 2))T\(padded(secondOfDay / 3600, 2)):"
            + "\(padded(secondOfDay / 60 % 60, 2)):\(padded(secondOfDay % 60, 2)).\(padded(micros, 6))Z"
    }

    private static func floorDivision(_ value: Int64, _ divisor: Int64) -> (quotient: Int64, remainder: Int64) {
        let (quotient, remainder) = value.quotientAndRemainder(dividingBy: divisor)
        return remainder < 0 ? (quotient - 1, remainder + divisor) : (quotient, remainder)
    }
}

/// Reads ASCII digits and punctuation from the front of a byte array.
private struct DigitReader {
    private let bytes: [UInt8]
    private var index = 0

    init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    var isAtEnd: Bool { self.index == self.bytes.count }

    /// Consumes `byte` if it comes next.
    mutating func skip(_ byte: UInt8) -> Bool {
        guard self.index < self.bytes.count, self.bytes[self.index] == byte else { return false }
        self.index += 1
        return true
    }

    /// Consumes exactly `digits` decimal digits.
    mutating func number(digits: Int) -> Int64? {
        guard self.index + digits <= self.bytes.count else { return nil }
        var value: Int64 = 0
        for byte in self.bytes[self.index..<self.index + digits] {
            guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) else { return nil }
            value = value * 10 + Int64(byte - UInt8(ascii: "0"))
        }
        self.index += digits
        return value
    }

    /// Consumes one or more digits of a fraction, returning the first `keeping` of them scaled to that many places.
    mutating func fraction(keeping places: Int) -> Int64? {
        var value: Int64 = 0
        var count = 0
        while self.index < self.bytes.count, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(self.bytes[self.index]) {
            if count < places { value = value * 10 + Int64(self.bytes[self.index] - UInt8(ascii: "0")) }
            count += 1
            self.index += 1
        }
        guard count > 0 else { return nil }
        for _ in min(count, places)..<places { value *= 10 }
        return value
    }

    /// Consumes `+` (1) or `-` (−1).
    mutating func sign() -> Int64? {
        if self.skip(UInt8(ascii: "+")) { return 1 }
        if self.skip(UInt8(ascii: "-")) { return -1 }
        return nil
    }
}
