import Foundation
import Testing

/// The ThreadSanitizer tier's canary: a deliberate data race in a test-only helper of ours. `scripts/test.sh` runs it
/// alone with `JOBSYNC_TSAN_CANARY=1`, under ThreadSanitizer and the tier's own suppressions, and fails the tier
/// unless TSan reports it: proof that `scripts/tsan-suppressions.txt` hides no race in our code. Elsewhere it is
/// skipped (and shows as skipped): the race is the point, so it must not run where nothing watches it.
@Suite("ThreadSanitizer canary")
struct SanitizerCanaryTests {
    @Test(
        "a deliberate race in our code is reported despite the suppressions",
        .enabled(if: ProcessInfo.processInfo.environment["JOBSYNC_TSAN_CANARY"] == "1"))
    func deliberateRace() async {
        let box = SanitizerCanaryBox()
        // One writer on a plain thread, one on the cooperative pool (where our drivers run), no synchronisation.
        let thread = Thread { SanitizerCanaryBox.race(box) }
        thread.start()
        await Task.detached { SanitizerCanaryBox.race(box) }.value
        while !thread.isFinished { try? await Task.sleep(for: .milliseconds(10)) }
        #expect(box.value > 0)
    }
}

/// Racy on purpose: `@unchecked Sendable` with nothing making it safe (the canary above).
final class SanitizerCanaryBox: @unchecked Sendable {
    var value = 0

    static func race(_ box: SanitizerCanaryBox) {
        for _ in 0..<10_000 { box.value += 1 }
    }
}
