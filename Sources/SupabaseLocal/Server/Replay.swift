import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// What ``SupabaseLocalStack/replay(_:batch:)`` did.
public struct ReplayReport: Sendable, Hashable {
    /// Sockets that took part (every socket open when the replay started).
    public var sockets: Int
    /// `postgres_changes` frames written, summed over the sockets.
    public var framesWritten: Int
}

/// A replay handed to one socket (each socket gets its own). Reports exactly once: when its frames are written, or
/// with 0 when the socket ended before it got to them (the input is then released unread).
final class FrameBurst: Sendable {
    let changes: [TableChange]
    let batch: Int
    private let report: NIOLockedValueBox<(@Sendable (Int) -> Void)?>

    init(changes: [TableChange], batch: Int, report: @escaping @Sendable (Int) -> Void) {
        self.changes = changes
        self.batch = batch
        self.report = NIOLockedValueBox(report)
    }

    func finish(framesWritten: Int) {
        let report = self.report.withLockedValue { report in
            defer { report = nil }
            return report
        }
        report?(framesWritten)
    }

    deinit { self.finish(framesWritten: 0) }
}

extension SupabaseLocalStack {
    /// A frame source that cannot be the bottleneck, for client-limited throughput benchmarks: every open socket
    /// renders the `postgres_changes` frames of `changes` for its live channels (exactly as for committed changes,
    /// filters included, in the socket's protocol version), and only then writes them, `batch` frames per write and
    /// flush, as fast as the socket takes them (NIO's back-pressure bounds the memory).
    ///
    /// The changes are not committed to the table and pass no fault (no drops, no stalls): the frames are the same
    /// for every client. Returns once every socket has written its frames or closed.
    public func replay(_ changes: [TableChange], batch: Int = 512) async -> ReplayReport {
        let (reports, continuation) = AsyncStream<Int>.makeStream()
        let sockets = self.registry.broadcast {
            .frameBurst(FrameBurst(changes: changes, batch: max(1, batch)) { continuation.yield($0) })
        }
        var written = 0
        var reported = 0
        if sockets == 0 { continuation.finish() }
        for await frames in reports {
            written += frames
            reported += 1
            if reported == sockets { break }
        }
        return ReplayReport(sockets: sockets, framesWritten: written)
    }
}

extension RealtimeConnection {
    /// Renders every frame of `request` first, then writes them in batches of `request.batch`, one flush each.
    static func write(
        _ request: FrameBurst,
        session: RealtimeSession,
        to outbound: NIOAsyncChannelOutboundWriter<WebSocketFrame>
    ) async throws {
        var frames: [WebSocketFrame] = []
        for change in request.changes {
            for case .send(let text) in session.deliver(change, maxRecordBytes: .max) {
                frames.append(WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
            }
        }
        var written = 0
        defer { request.finish(framesWritten: written) }
        while written < frames.count {
            let end = min(written + request.batch, frames.count)
            try await outbound.write(contentsOf: frames[written..<end])
            written = end
        }
    }
}
