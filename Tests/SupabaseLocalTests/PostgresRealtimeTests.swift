import HummingbirdWSClient
import NIOWebSocket
import Logging
import NIOConcurrencyHelpers
import Testing

@testable import SupabaseLocal

extension SupabaseLocalPostgresTests {
    /// PostgreSQL → wal2json → SupabaseLocal's Realtime endpoint → a raw WebSocket client.
    @Suite(
        .enabled(if: !PostgresTier.skipped, "JOBSYNC_SKIP_POSTGRES_TESTS=1"),
        .timeLimit(.minutes(1))
    )
    struct RealtimeEndToEnd {
        static let id = "0b7c3f0e-5d1a-4f7e-8a2b-9c4d6e8f1a2b"

        @Test("§5.1/§5.2 a row updated with SQL arrives as a postgres_changes frame over a real WebSocket")
        func sqlUpdateArrivesOverWebSocket() async throws {
            let backendConfiguration = try PostgresJobsBackend.Configuration(
                url: try PostgresTier.url(), table: PostgresTier.uniqueTable(.default), dropExistingTable: true
            )
            let backend = PostgresJobsBackend(configuration: backendConfiguration)
            let table = backend.table
            let qualified = PostgresJobsSQL(table: table).qualifiedTable
            var configuration = SupabaseLocalConfiguration()
            configuration.backend = backend
            let received = try await SupabaseLocal.withRunning(configuration) { stack in
                // The row exists before the subscription; only the update is expected.
                try await backend.execute(sql: "insert into \(qualified) (id) values ('\(Self.id)')")
                do {
                    let frame = try await Self.subscribeAndUpdate(stack: stack, backend: backend)
                    await PostgresTier.dropTable(of: backend)
                    return frame
                } catch {
                    await PostgresTier.dropTable(of: backend)
                    throw error
                }
            }
            let frame = try #require(received)
            #expect(frame["topic"] == .string("realtime:pg-e2e"))
            let data = try #require(frame["payload"]?["data"])
            #expect(data["type"] == .string("UPDATE"))
            #expect(data["table"] == .string(table.name))
            #expect(data["errors"] == .null)
            #expect(data["record"]?["status"] == .string("completed"))
            #expect(
                data["record"]?["result"]
                    == .object(["classification": .string("invoice"), "confidence": .number("0.97")]),
                "result must be JSON in the frame, not a string"
            )
            #expect(data["old_record"] == .object(["id": .string(Self.id)]), "default identity: PK only")
            let commit = try #require(data["commit_timestamp"]?.stringValue)
            #expect(PostgresTier.isMillisecondUTC(commit))
            let updatedAt = try #require(data["record"]?["updated_at"]?.stringValue)
            let commitStamp = try #require(LocalTimestamp(parsing: commit))
            let updatedStamp = try #require(LocalTimestamp(parsing: updatedAt))
            // Realtime truncates the commit time to milliseconds; updated_at was set inside the transaction.
            #expect(updatedStamp.microsecondsSinceEpoch / 1000 <= commitStamp.microsecondsSinceEpoch / 1000)
        }

        /// Joins a channel with an UPDATE binding on the row, waits until changes flow, updates the row with SQL and
        /// returns the first `postgres_changes` frame.
        static func subscribeAndUpdate(stack: SupabaseLocalStack, backend: PostgresJobsBackend) async throws
            -> LocalJSON?
        {
            let table = backend.table
            let qualified = PostgresJobsSQL(table: table).qualifiedTable
            return try await RawRealtimeSocket.run(port: stack.port, apiKey: stack.anonKey) { socket in
                try await socket.send(
                    """
                    {"topic":"realtime:pg-e2e","event":"phx_join","ref":"1","join_ref":"1","payload":\
                    {"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":""},"private":false,\
                    "postgres_changes":[{"event":"UPDATE","schema":"public","table":"\(table.name)",\
                    "filter":"id=eq.\(Self.id)"}]},"access_token":"\(stack.anonKey)"}}
                    """
                )
                // §4.3 join reply, then §4.5 "Subscribed to PostgreSQL": only then are changes flowing.
                _ = try await socket.receive { $0["event"] == .string("phx_reply") }
                _ = try await socket.receive { $0["event"] == .string("system") }
                try await backend.execute(
                    sql: "update \(qualified) set status = 'completed', progress = 'Done', "
                        + #"result = '{"classification": "invoice", "confidence": 0.97}' "#
                        + "where id = '\(Self.id)'"
                )
                return try await socket.receive { $0["event"] == .string("postgres_changes") }
            }
        }
    }
}

/// A minimal raw Realtime client for this test (HummingbirdWSClient, vsn 1.0.0 JSON objects); never the project's
/// own client modules.
private struct RawRealtimeSocket {
    let outbound: WebSocketOutboundWriter
    var inbound: WebSocketInboundMessageStream.AsyncIterator

    func send(_ text: String) async throws {
        try await self.outbound.write(.text(text))
    }

    /// The first text frame that satisfies `matches` (others are skipped); fails when the socket ends.
    mutating func receive(_ matches: (LocalJSON) -> Bool) async throws -> LocalJSON {
        while let message = try await self.inbound.next() {
            guard case .text(let text) = message else { continue }
            let frame = try LocalJSON(parsing: text)
            if matches(frame) { return frame }
        }
        throw SupabaseLocalError(.backendFailure, "the Realtime socket ended before the expected frame")
    }

    /// Connects to `ws://127.0.0.1:port/realtime/v1/websocket`, runs `body`, closes, returns what `body` returned.
    static func run<T: Sendable>(
        port: Int,
        apiKey: String,
        _ body: @escaping @Sendable (inout RawRealtimeSocket) async throws -> T
    ) async throws -> T? {
        let url = "ws://127.0.0.1:\(port)/realtime/v1/websocket?apikey=\(apiKey)&vsn=1.0.0"
        let box = ResultBox<T>()
        let logger = Logger(label: "pg-e2e-socket")
        _ = try await WebSocketClient.connect(url: url, logger: logger) { inbound, outbound, _ in
            var socket = RawRealtimeSocket(
                outbound: outbound, inbound: inbound.messages(maxSize: 1 << 20).makeAsyncIterator()
            )
            let value = try await body(&socket)
            box.set(value)
            try await outbound.close(.normalClosure, reason: nil)
        }
        return box.get()
    }
}

/// Carries the body's result out of the connection closure.
private final class ResultBox<T: Sendable>: Sendable {
    private let value = NIOLockedValueBox<T?>(nil)
    func set(_ value: T) { self.value.withLockedValue { $0 = value } }
    func get() -> T? { self.value.withLockedValue { $0 } }
}
