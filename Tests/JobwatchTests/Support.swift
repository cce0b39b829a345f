import JobSync
import JobSyncTestSupport
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
    static let a = Self.id("3f1c2a9b-0000-4000-8000-000000000001")
    static let b = Self.id("8a2b7c6d-0000-4000-8000-000000000002")
    static let c = Self.id("c0ffee00-0000-4000-8000-000000000003")

    /// A fixture id (the texts above are valid UUIDs).
    private static func id(_ text: String) -> JobID {
        guard let id = try? JobID(text) else { preconditionFailure("fixture id \(text) is not a UUID") }
        return id
    }

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
