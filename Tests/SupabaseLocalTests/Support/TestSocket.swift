import Foundation
import NIOWebSocket
import HummingbirdWSClient
import Logging
import NIOCore
import NIOConcurrencyHelpers
import Testing

@testable import SupabaseLocal

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Received text frames of a test socket, read one at a time with a safety timeout (a guard against hangs,
/// not a timing assertion).
struct Inbox: Sendable {
    let stream: AsyncStream<String>

    init(_ stream: AsyncStream<String>) {
        self.stream = stream
    }

    /// Reads are sequential (one consumer), so a fresh iterator per read is fine for an AsyncStream.
    func next() async -> String? {
        var iterator = self.stream.makeAsyncIterator()
        return await iterator.next()
    }
}

/// A raw WebSocket client session for tests (HummingbirdWSClient, never our client modules).
struct TestSocket: Sendable {
    let inbox: Inbox
    let outgoing: AsyncStream<String?>.Continuation

    /// Binary frames appear in the inbox as this marker followed by their bytes in lowercase hex.
    static let binaryMarker = "binary:"

    /// The bytes of a binary frame read from the inbox, nil for a text frame.
    static func binaryBytes(_ frame: String) -> [UInt8]? {
        guard frame.hasPrefix(Self.binaryMarker) else { return nil }
        let hex = Array(frame.utf8.dropFirst(Self.binaryMarker.utf8.count))
        return stride(from: 0, to: hex.count - 1, by: 2).compactMap {
            UInt8(String(decoding: hex[$0...$0 + 1], as: UTF8.self), radix: 16)
        }
    }

    /// Sends a text frame.
    func send(_ text: String) {
        self.outgoing.yield(text)
    }

    /// Sends a close frame and ends the session.
    func close() {
        self.outgoing.yield(nil)
    }

    /// The next text frame, or nil if the socket ended (or nothing came within `timeout`).
    func receive(timeout: Duration = .seconds(10)) async -> String? {
        await withTaskGroup(of: String?.self) { group in
            group.addTask { await self.inbox.next() }
            group.addTask {
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
    }

    /// Sends a heartbeat with `ref` and returns every frame received before its reply (a barrier: anything the
    /// server had queued before the heartbeat arrives first).
    func framesBeforeHeartbeatReply(ref: String, version: RealtimeVersion = .v2) async -> [String]? {
        self.send(
            version == .v2
                ? "[null,\"\(ref)\",\"phoenix\",\"heartbeat\",{}]"
                : "{\"topic\":\"phoenix\",\"event\":\"heartbeat\",\"payload\":{},\"ref\":\"\(ref)\"}")
        var frames: [String] = []
        while let frame = await self.receive() {
            if frame.contains("\"phoenix\"") && frame.contains("\"\(ref)\"") { return frames }
            frames.append(frame)
        }
        return nil
    }
}

/// Opens a Realtime socket to `stack`, runs `body`, closes, and returns the server's close frame (nil if the
/// connection ended without one).
@discardableResult
func withTestSocket(
    _ stack: SupabaseLocalStack,
    query: String? = nil,
    _ body: @escaping @Sendable (TestSocket) async throws -> Void
) async throws -> WebSocketCloseFrame? {
    let url = "ws://127.0.0.1:\(stack.port)/realtime/v1/websocket?" + (query ?? "apikey=\(stack.anonKey)&vsn=2.0.0")
    let (incoming, incomingContinuation) = AsyncStream<String>.makeStream()
    let (outgoing, outgoingContinuation) = AsyncStream<String?>.makeStream()
    let socket = TestSocket(inbox: Inbox(incoming), outgoing: outgoingContinuation)
    return try await withThrowingTaskGroup(of: WebSocketCloseFrame?.self) { group in
        group.addTask {
            defer { incomingContinuation.finish() }
            var configuration = WebSocketClientConfiguration()
            configuration.maxFrameSize = 8 << 20
            return try await WebSocketClient.connect(
                url: url, configuration: configuration, logger: Logger(label: "test-socket")
            ) { inbound, outbound, _ in
                try await withThrowingTaskGroup(of: Void.self) { inner in
                    inner.addTask {
                        for try await message in inbound.messages(maxSize: 8 << 20) {
                            switch message {
                            case .text(let text): incomingContinuation.yield(text)
                            case .binary(let buffer):
                                incomingContinuation.yield(TestSocket.binaryMarker + hexString(Array(buffer: buffer)))
                            }
                        }
                        incomingContinuation.finish()
                    }
                    inner.addTask {
                        for await text in outgoing {
                            guard let text else {
                                try await outbound.close(.normalClosure, reason: nil)
                                return
                            }
                            try await outbound.write(.text(text))
                        }
                    }
                    try await inner.next()
                    inner.cancelAll()
                }
            }
        }
        group.addTask {
            try await body(socket)
            outgoingContinuation.yield(nil)
            outgoingContinuation.finish()
            return nil
        }
        var closeFrame: WebSocketCloseFrame?
        for try await result in group {
            if let result { closeFrame = result }
        }
        return closeFrame
    }
}

/// An HTTP request to the stack with URLSession; returns status, headers and body text.
func httpRequest(
    _ stack: SupabaseLocalStack,
    _ method: String,
    _ pathAndQuery: String,
    headers: [String: String] = [:],
    body: String? = nil
) async throws -> (status: Int, headers: [String: String], body: String) {
    var request = URLRequest(url: URL(string: "http://127.0.0.1:\(stack.port)" + pathAndQuery)!)
    request.httpMethod = method
    for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
    if let body { request.httpBody = Data(body.utf8) }
    let (data, response) = try await URLSession.shared.data(for: request)
    let http = try #require(response as? HTTPURLResponse)
    var fields: [String: String] = [:]
    for (key, value) in http.allHeaderFields {
        if let key = key as? String, let value = value as? String { fields[key.lowercased()] = value }
    }
    return (http.statusCode, fields, String(decoding: data, as: UTF8.self))
}

/// Headers for a REST call with the anon key.
func anonHeaders(_ stack: SupabaseLocalStack) -> [String: String] {
    ["apikey": stack.anonKey, "Authorization": "Bearer \(stack.anonKey)"]
}

/// A fixed wall clock for deterministic timestamps.
func fixedWallClock(_ text: String) -> WallClock {
    let instant = LocalTimestamp(parsing: text)!
    let counter = NIOLockedValueBox(Int64(0))
    return WallClock {
        LocalTimestamp(microsecondsSinceEpoch: instant.microsecondsSinceEpoch + counter.withLockedValue { $0 })
    }
}

/// Lowercase hex of `bytes`.
func hexString(_ bytes: [UInt8]) -> String {
    bytes.map { byte in
        let text = String(byte, radix: 16)
        return text.count == 1 ? "0" + text : text
    }.joined()
}
