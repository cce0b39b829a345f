import Foundation
import JobSyncCore
import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

/// Captures log records (a test double; the library never bootstraps logging).
final class CapturingLogHandler: LogHandler, Sendable {
    private let records = NIOLockedValueBox<[String]>([])
    var metadata: Logger.Metadata {
        get { [:] }
        set {}
    }
    var logLevel: Logger.Level {
        get { .trace }
        set {}
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { nil }
        set {}
    }

    func log(event: LogEvent) {
        let text = "\(event.level) \(event.message) \(event.metadata ?? [:])"
        self.records.withLockedValue { $0.append(text) }
    }

    var all: [String] { self.records.withLockedValue { $0 } }
}

@Suite("RealtimeClient configuration, redaction, logging")
struct RealtimeClientConfigurationTests {
    static let transport = FakeTransport()

    @Test("§1.1 project URL https://<ref>.supabase.co → wss://…/realtime/v1/websocket?apikey=…&vsn=2.0.0")
    func projectURLMapping() throws {
        let configuration = try RealtimeClient.Configuration(
            projectURL: URL(string: "https://abcd.supabase.co/")!, apiKey: "secret-key",
            transport: Self.transport, logger: Logger(label: "test"))
        #expect(configuration.endpoint.absoluteString == "wss://abcd.supabase.co/realtime/v1/websocket")
        let url = try configuration.connectURL().absoluteString
        #expect(url == "wss://abcd.supabase.co/realtime/v1/websocket?apikey=secret-key&vsn=2.0.0")
        let local = try RealtimeClient.Configuration(
            projectURL: URL(string: "http://127.0.0.1:54321")!, apiKey: "k", transport: Self.transport,
            logger: Logger(label: "test"))
        #expect(local.endpoint.absoluteString == "ws://127.0.0.1:54321/realtime/v1/websocket")
        var v1 = local
        v1.protocolVersion = .v1
        #expect(try v1.connectURL().query == "apikey=k&vsn=1.0.0")
    }

    @Test("bad configuration is a typed error, never a crash")
    func invalidConfiguration() throws {
        #expect(throws: RealtimeClientError.self) {
            _ = try RealtimeClient.Configuration(
                projectURL: URL(string: "ftp://abcd.supabase.co")!, apiKey: "k", transport: Self.transport,
                logger: Logger(label: "test"))
        }
        let empty = RealtimeClient.Configuration(
            endpoint: URL(string: "wss://abcd.supabase.co/realtime/v1/websocket")!, apiKey: "",
            transport: Self.transport, logger: Logger(label: "test"))
        do {
            _ = try RealtimeClient(configuration: empty)
            Issue.record("an empty API key must be refused")
        } catch {
            #expect(error.code == .invalidConfiguration)
        }
        var badBuffer = empty
        badBuffer.apiKey = "k"
        badBuffer.subscriptionBufferSize = 0
        #expect(throws: RealtimeClientError.self) { _ = try RealtimeClient(configuration: badBuffer) }
        let https = RealtimeClient.Configuration(
            endpoint: URL(string: "https://abcd.supabase.co/realtime/v1/websocket")!, apiKey: "k",
            transport: Self.transport, logger: Logger(label: "test"))
        #expect(throws: RealtimeClientError.self) { _ = try RealtimeClient(configuration: https) }
    }

    @Test("logs never contain the API key or the access token, even at trace level")
    func logsAreRedacted() async throws {
        let handler = CapturingLogHandler()
        let apiKey = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.apikeysig"
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoidXNlciJ9.usertokensig"
        try await withTestClient(configure: { configuration in
            configuration.apiKey = apiKey
            configuration.accessToken = { token }
            var logger = Logger(label: "test", factory: { _ in handler })
            logger.logLevel = .trace
            configuration.logger = logger
        }) { client, _, transport in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            let attempt = try await attempts.nextAttempt()
            #expect(attempt.request.url.query?.contains(apiKey) == true, "the key is sent, just never logged")
            var server = ScriptedServer(attempt.accept())
            let join = try await server.expect(.join)
            #expect(join.payload["access_token"] == .string(token))
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
        }
        let logs = handler.all
        #expect(!logs.isEmpty)
        #expect(logs.contains { $0.contains("apikey=<redacted>") })
        for line in logs {
            #expect(!line.contains("apikeysig") && !line.contains("usertokensig"), "leaked: \(line)")
        }
        #expect(logs.allSatisfy { $0.hasPrefix("trace") || $0.hasPrefix("debug") }, "library logs at trace/debug only")
    }
}
