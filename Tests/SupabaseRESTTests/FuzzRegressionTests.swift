import Foundation
import Testing

@testable import SupabaseREST

/// Inputs that crashed `Fuzz/run.sh rest` (libFuzzer harness Fuzz/FuzzREST.swift). `Retry-After` is server input
/// (§11.2 rate limits): a hostile or broken gateway must not be able to trap the client. Each case runs in an exit
/// test (a child process), so a trap fails that one test instead of taking the whole test run down.
///
/// All three trapped before the fix (integer overflow in `daysFromCivil`/`parseHTTPDate`, and a `Double` → `Int64`
/// conversion out of range in `RetryAfter.parse`). Expected: `nil` (unusable date) or a delay clamped to
/// `0...RetryAfter.maximum`.
@Suite("Fuzz regressions: SupabaseREST response decoding")
struct FuzzRegressionTests {
    @Test("Retry-After IMF-fixdate with a 15-digit year does not trap (overflow in parseHTTPDate)")
    func imfFixdateHugeYear() async {
        await #expect(processExitsWith: .success) {
            let delay = RetryAfter.parse(
                "Sun, 06 Nov 999999999999999 08:49:37 GMT", now: Date(timeIntervalSince1970: 1_764_000_000))
            precondition(delay.map { $0 >= .zero && $0 <= RetryAfter.maximum } ?? true)
        }
    }

    @Test("Retry-After IMF-fixdate in year 300000000 does not trap (Double → Int64 milliseconds overflow)")
    func imfFixdateFarFuture() async {
        await #expect(processExitsWith: .success) {
            let delay = RetryAfter.parse(
                "Sun, 06 Nov 300000000 08:49:37 GMT", now: Date(timeIntervalSince1970: 1_764_000_000))
            precondition(delay.map { $0 >= .zero && $0 <= RetryAfter.maximum } ?? true)
        }
    }

    @Test("Retry-After asctime with a huge negative year does not trap (overflow in daysFromCivil)")
    func asctimeHugeNegativeYear() async {
        await #expect(processExitsWith: .success) {
            let delay = RetryAfter.parse(
                "Sun Nov  6 08:49:37 -999999999999999999", now: Date(timeIntervalSince1970: 1_764_000_000))
            precondition(delay.map { $0 >= .zero && $0 <= RetryAfter.maximum } ?? true)
        }
    }

    @Test("A four-digit far-future year is clamped to the maximum; a longer year is not an HTTP-date")
    func farFutureYears() {
        let now = Date(timeIntervalSince1970: 1_764_000_000)
        #expect(RetryAfter.parse("Fri, 31 Dec 9999 23:59:59 GMT", now: now) == RetryAfter.maximum)
        #expect(RetryAfter.parse("Sun, 06 Nov 1000000 08:49:37 GMT", now: now) == nil)
    }
}
