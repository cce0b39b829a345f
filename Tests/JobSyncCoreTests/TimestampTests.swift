import Testing

import JobSyncCore

/// The one timestamp parser (Realtime's `commit_timestamp`, the jobs table's columns) and its calendar arithmetic.
@Suite("ISO8601Timestamp and CivilDate")
struct TimestampTests {
    @Test("offsets, Z, a space or t separator, fractions to microseconds; no offset means UTC", arguments: [
        ("2026-08-21T10:15:03.401882+00:00", 1_787_307_303_401_882, true),
        ("2026-08-21 12:15:03.401882+02", 1_787_307_303_401_882, true),
        ("2026-08-21t08:15:03.401882-0200", 1_787_307_303_401_882, true),
        ("2026-08-21T10:15:03.4018829z", 1_787_307_303_401_882, true),
        ("2026-08-21T10:15:03.412Z", 1_787_307_303_412_000, true),
        ("2026-08-21T10:15:03", 1_787_307_303_000_000, false),
        ("1969-12-31T23:59:59.9995Z", -500, true),
        ("2000-02-29T00:00:00Z", 951_782_400_000_000, true),
    ] as [(String, Int64, Bool)])
    func parses(_ text: String, _ micros: Int64, _ hasOffset: Bool) throws {
        let parsed = try #require(ISO8601Timestamp(text))
        #expect(parsed.microsecondsSinceEpoch == micros && parsed.hasOffset == hasOffset)
    }

    @Test("anything else is nil", arguments: [
        "", "2026-08-21", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "1900-02-29T00:00:00Z",
        "2026-08-21T24:00:00Z", "2026-08-21T10:15:03.Z", "2026-08-21T10:15:03+0x", "2026-08-21T10:15:03+2",
        "2026-08-21T10:15:03.412Zx", "2026-08-21T10:15:03 ", "２026-08-21T10:15:03Z",
    ])
    func rejects(_ text: String) {
        #expect(ISO8601Timestamp(text) == nil)
    }

    @Test("milliseconds round down, also before 1970")
    func milliseconds() throws {
        #expect(try #require(ISO8601Timestamp("1969-12-31T23:59:59.9995Z")).millisecondsSinceEpoch == -1)
        #expect(try #require(ISO8601Timestamp("2026-08-21T10:15:03.4129Z")).millisecondsSinceEpoch == 1_787_307_303_412)
    }

    @Test("printed as UTC with six fraction digits; text and parse round-trip", arguments: [
        Int64(0), 1_787_307_303_401_882, -1, -86_400_000_001, 253_402_300_799_999_999,
    ])
    func roundTrip(_ micros: Int64) throws {
        let text = ISO8601Timestamp.text(microsecondsSinceEpoch: micros)
        #expect(try #require(ISO8601Timestamp(text)).microsecondsSinceEpoch == micros)
        if micros == 0 { #expect(text == "1970-01-01T00:00:00.000000Z") }
        if micros == -1 { #expect(text == "1969-12-31T23:59:59.999999Z") }
    }

    @Test("civil dates and day numbers are inverse over four centuries around the epoch")
    func civilDates() {
        #expect(CivilDate.daysSinceEpoch(year: 1970, month: 1, day: 1) == 0)
        #expect(CivilDate.daysSinceEpoch(year: 2000, month: 3, day: 1) == 11_017)
        for days in stride(from: Int64(-73_000), through: 73_000, by: 97) {
            let date = CivilDate.date(daysSinceEpoch: days)
            #expect(CivilDate.daysSinceEpoch(year: date.year, month: date.month, day: date.day) == days)
        }
        #expect(CivilDate.daysInMonth(year: 1900, month: 2) == 28 && CivilDate.daysInMonth(year: 2000, month: 2) == 29)
    }
}

@Suite("SplitMix64")
struct SplitMix64Tests {
    @Test("the same seed gives the same sequence; units stay in 0..<1")
    func deterministic() {
        var first = SplitMix64(seed: 42)
        var second = SplitMix64(seed: 42)
        #expect((0..<8).map { _ in first.next() } == (0..<8).map { _ in second.next() })
        var units = SplitMix64(seed: 7)
        #expect((0..<1000).allSatisfy { _ in (0..<1).contains(units.nextUnit()) })
        // The reference SplitMix64 output for seed 0.
        var reference = SplitMix64(seed: 0)
        #expect(reference.next() == 0xE220_A839_7B1D_CDAF)
    }
}
