import NIOConcurrencyHelpers
import Testing

@testable import jobwatch

/// Collects everything an ``OutputWriter`` writes, per stream, in order.
final class CapturedOutput: Sendable {
    private let writes = NIOLockedValueBox<[(OutputWriter.Stream, String)]>([])

    /// A writer into this capture.
    var writer: OutputWriter {
        OutputWriter { stream, text in self.writes.withLockedValue { $0.append((stream, text)) } }
    }

    /// Everything written to `stream`, concatenated.
    func text(_ stream: OutputWriter.Stream) -> String {
        self.writes.withLockedValue { $0.filter { $0.0 == stream }.map(\.1).joined() }
    }

    /// The lines written to `stream`.
    func lines(_ stream: OutputWriter.Stream) -> [String] {
        self.text(stream).split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
    }
}

/// A virtual clock for driver tests: time moves only when a test calls ``advance(by:)``.
final class ManualClock: Clock, Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: self.offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - self.offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        let deadline: Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var nextID = 0
        var sleepers: [Int: Sleeper] = [:]
        var waiters: [(count: Int, continuation: CheckedContinuation<Void, Never>)] = []
    }

    private let state = NIOLockedValueBox(State())

    var now: Instant { self.state.withLockedValue { $0.now } }
    var minimumResolution: Duration { .zero }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = self.state.withLockedValue { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (immediate, ready) = self.state.withLockedValue {
                    state -> (Result<Void, any Error>?, [CheckedContinuation<Void, Never>]) in
                    if Task.isCancelled { return (.failure(CancellationError()), []) }
                    if deadline <= state.now { return (.success(()), []) }
                    state.sleepers[id] = Sleeper(deadline: deadline, continuation: continuation)
                    let count = state.sleepers.count
                    let ready = state.waiters.filter { $0.count <= count }.map(\.continuation)
                    state.waiters.removeAll { $0.count <= count }
                    return (nil, ready)
                }
                if let immediate { continuation.resume(with: immediate) }
                ready.forEach { $0.resume() }
            }
        } onCancel: {
            let sleeper = self.state.withLockedValue { $0.sleepers.removeValue(forKey: id) }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper whose deadline has come.
    func advance(by duration: Duration) {
        let due = self.state.withLockedValue { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let due = state.sleepers.filter { $0.value.deadline <= state.now }
            for key in due.keys { state.sleepers[key] = nil }
            return Array(due.values)
        }
        due.forEach { $0.continuation.resume() }
    }

    /// Returns once at least `count` sleepers are waiting.
    func waitForSleepers(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLockedValue { state -> Bool in
                if state.sleepers.count >= count { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }
}

/// A session that reports a script of events, then either fails or waits until cancelled.
struct ScriptedSession: WatchSession {
    var events: [WatchEvent]
    var failure: JobwatchError?

    func watch(_ ids: [JobID], report: @escaping @Sendable (WatchEvent) async -> Void) async throws {
        for event in self.events {
            await report(event)
        }
        if let failure = self.failure {
            throw failure
        }
        let (stream, continuation) = AsyncStream<Void>.makeStream()
        for await _ in stream {}
        withExtendedLifetime(continuation) {}
    }
}

/// Fixtures.
enum Fixture {
    static let a = JobID("3f1c2a9b-0000-4000-8000-000000000001")!
    static let b = JobID("8a2b7c6d-0000-4000-8000-000000000002")!
    static let c = JobID("c0ffee00-0000-4000-8000-000000000003")!

    static func snapshot(
        _ id: JobID,
        _ phase: JobPhase,
        progress: String? = nil,
        error: String? = nil,
        result: ClassificationSummary? = nil
    ) -> JobSnapshot {
        JobSnapshot(id: id, phase: phase, progress: progress, error: error, result: result, updatedAt: nil)
    }

    static let invoice = ClassificationSummary(
        classification: "invoice",
        confidence: 0.97,
        pageCount: 10,
        failedPages: [3, 7]
    )
}
