import Foundation
import Logging
import Testing

@testable import WebSocketTransport

/// A swift-log handler that keeps every record (message plus metadata) as text.
struct CollectingLogHandler: LogHandler {
    final class Store: Sendable {
        let records = Locked<[String]>([])
    }

    let store: Store
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { $1 }
        self.store.records.withLock { $0.append("\(event.level) \(event.message) \(merged)") }
    }
}

@Suite("Transport logging")
struct LoggingTests {
    @Test("connect failures are logged at debug with metadata and without the URL query")
    func failureLogged() async throws {
        let store = CollectingLogHandler.Store()
        let logger = Logger(label: "test") { _ in CollectingLogHandler(store: store) }
        let transport = LWSWebSocketTransport(logger: logger)
        try await TestServer.runPlainHTTP { port in
            let url = URL(string: "ws://127.0.0.1:\(port)/reject/401?apikey=SECRET-KEY")!
            let error = try #require(await connectError(transport, WebSocketRequest(url: url)))
            #expect(error.httpStatus == 401)
        }
        let records = store.records.withLock { $0 }
        #expect(records.contains { $0.hasPrefix("debug websocket connect failed") && $0.contains("401") })
        #expect(!records.contains { $0.contains("SECRET-KEY") })
        #expect(!records.contains { $0.hasPrefix("error") || $0.hasPrefix("warning") || $0.hasPrefix("info") })
    }
}
