/// A UTC instant with microsecond precision, as PostgreSQL's `timestamptz` stores it.
public struct LocalTimestamp: Sendable, Hashable, Comparable, CustomStringConvertible {
    /// Microseconds since 1970-01-01T00:00:00Z.
    public var microsecondsSinceEpoch: Int64

    /// Creates a timestamp from microseconds since the Unix epoch.
    public init(microsecondsSinceEpoch: Int64) {
        self.microsecondsSinceEpoch = microsecondsSinceEpoch
    }

    /// Creates a timestamp from a duration since the Unix epoch (truncated to microseconds).
    public init(sinceEpoch duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.microsecondsSinceEpoch = seconds * 1_000_000 + attoseconds / 1_000_000_000_000
    }

    /// The duration since the Unix epoch.
    public var sinceEpoch: Duration { .microseconds(self.microsecondsSinceEpoch) }

    /// The timestamp advanced by a duration (truncated to microseconds).
    public func advanced(by duration: Duration) -> LocalTimestamp {
        LocalTimestamp(
            microsecondsSinceEpoch: self.microsecondsSinceEpoch
                + LocalTimestamp(sinceEpoch: duration).microsecondsSinceEpoch)
    }

    public static func < (lhs: LocalTimestamp, rhs: LocalTimestamp) -> Bool {
        lhs.microsecondsSinceEpoch < rhs.microsecondsSinceEpoch
    }

    /// `to_jsonb(timestamptz)` text in a UTC session: `2026-08-21T10:15:03.401882+00:00`, fraction without
    /// trailing zeros and omitted when zero.
    public var postgresJSONText: String {
        let (date, micros) = self.civil
        var text = date
        if micros != 0 {
            var fraction = String(micros)
            fraction = String(repeating: "0", count: 6 - fraction.count) + fraction
            while fraction.hasSuffix("0") { fraction.removeLast() }
            text += "." + fraction
        }
        return text + "+00:00"
    }

    /// Realtime's `commit_timestamp` text: `2026-08-21T10:15:03.412Z` (milliseconds, truncated).
    public var commitTimestampText: String {
        let (date, micros) = self.civil
        let millis = String(micros / 1000)
        return date + "." + String(repeating: "0", count: 3 - millis.count) + millis + "Z"
    }

    /// `postgresJSONText`.
    public var description: String { self.postgresJSONText }

    /// (`YYYY-MM-DDTHH:MM:SS`, microseconds within the second).
    private var civil: (String, Int64) {
        let micros = self.microsecondsSinceEpoch
        var seconds = micros / 1_000_000
        var fraction = micros % 1_000_000
        if fraction < 0 {
            fraction += 1_000_000
            seconds -= 1
        }
        var days = seconds / 86_400
        var secondOfDay = seconds % 86_400
        if secondOfDay < 0 {
            secondOfDay += 86_400
            days -= 1
        }
        let (year, month, day) = LocalTimestamp.civilFromDays(days)
        func pad(_ value: Int64, _ width: Int) -> String {
            let text = String(value)
            return String(repeating: "0", count: max(0, width - text.count)) + text
        }
        let text =
            "\(pad(year, 4))-\(pad(month, 2))-\(pad(day, 2))T"
            + "\(pad(secondOfDay / 3600, 2)):\(pad(secondOfDay / 60 % 60, 2)):\(pad(secondOfDay % 60, 2))"
        return (text, fraction)
    }

    /// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
    static func civilFromDays(_ days: Int64) -> (Int64, Int64, Int64) {
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

    /// The inverse of ``civilFromDays(_:)``.
    static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let y = month <= 2 ? year - 1 : year
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = month > 2 ? month - 3 : month + 9
        let doy = (153 * mp + 2) / 5 + day - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    /// Parses ISO 8601 / PostgreSQL text: `YYYY-MM-DD[T| ]HH:MM[:SS[.ffffff]][Z|±HH[:MM]]`. A missing
    /// offset means UTC. Returns nil when the text is not a timestamp.
    public init?(parsing text: String) {
        let bytes = Array(text.utf8)
        var index = 0
        func number(_ count: Int) -> Int64? {
            guard index + count <= bytes.count else { return nil }
            var value: Int64 = 0
            for offset in 0..<count {
                let byte = bytes[index + offset]
                guard byte >= 48, byte <= 57 else { return nil }
                value = value * 10 + Int64(byte - 48)
            }
            index += count
            return value
        }
        func expect(_ char: Character) -> Bool {
            guard index < bytes.count, bytes[index] == char.asciiValue! else { return false }
            index += 1
            return true
        }
        guard let year = number(4), expect("-"), let month = number(2), expect("-"), let day = number(2),
            (1...12).contains(month), (1...31).contains(day)
        else { return nil }
        var hour: Int64 = 0
        var minute: Int64 = 0
        var second: Int64 = 0
        var micros: Int64 = 0
        var offsetSeconds: Int64 = 0
        if index < bytes.count {
            guard bytes[index] == UInt8(ascii: "T") || bytes[index] == UInt8(ascii: " ") else { return nil }
            index += 1
            guard let hh = number(2), expect(":"), let mm = number(2), hh < 24, mm < 60 else { return nil }
            hour = hh
            minute = mm
            if expect(":") {
                guard let ss = number(2), ss < 61 else { return nil }
                second = ss
                if expect(".") {
                    var digits = 0
                    while index < bytes.count, bytes[index] >= 48, bytes[index] <= 57 {
                        if digits < 6 { micros = micros * 10 + Int64(bytes[index] - 48) }
                        digits += 1
                        index += 1
                    }
                    guard digits > 0 else { return nil }
                    for _ in min(digits, 6)..<6 { micros *= 10 }
                }
            }
            if index < bytes.count {
                if bytes[index] == UInt8(ascii: "Z") || bytes[index] == UInt8(ascii: "z") {
                    index += 1
                } else if bytes[index] == UInt8(ascii: "+") || bytes[index] == UInt8(ascii: "-") {
                    let sign: Int64 = bytes[index] == UInt8(ascii: "+") ? 1 : -1
                    index += 1
                    guard let oh = number(2) else { return nil }
                    var om: Int64 = 0
                    if expect(":") {
                        guard let value = number(2) else { return nil }
                        om = value
                    } else if let value = number(2) {
                        om = value
                    }
                    offsetSeconds = sign * (oh * 3600 + om * 60)
                } else {
                    return nil
                }
            }
            guard index == bytes.count else { return nil }
        }
        let days = LocalTimestamp.daysFromCivil(year: year, month: month, day: day)
        let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offsetSeconds
        self.microsecondsSinceEpoch = seconds * 1_000_000 + micros
    }
}
