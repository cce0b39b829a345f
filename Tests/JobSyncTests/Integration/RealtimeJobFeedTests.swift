import Foundation
import JobSync
import JobSyncCore
import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
import SupabaseLocal
import SupabaseRealtime
import Testing
import WebSocketTransport

@Suite("RealtimeJobFeed: postgres_changes → JobChange")
struct RealtimeJobFeedConversionTests {
    @Test("§5.2 an UPDATE carries the decoded record, numbers as their literal text (int8 beyond 2^53, numeric)")
    func updateConversion() throws {
        let record: JSONObject = [
            "id": .string("7f0c6f57-3a8e-4a8e-9a55-0b8f7e2d9c11"),
            "status": .string("completed"),
            "big": .number(JSONNumber(text: "9007199254740993")),
            "confidence": .number(JSONNumber(text: "0.9300")),
            "result": .object(["page_results": .array([.object(["page": .number(JSONNumber(1))])])]),
            "error": .null,
            "flag": .bool(true),
        ]
        let change = PostgresChange(
            type: .update, schema: "public", table: "jobs", commitTimestamp: "2026-08-21T10:15:03.412Z",
            record: record, oldRecord: ["id": .string("7f0c6f57-3a8e-4a8e-9a55-0b8f7e2d9c11")])
        let converted = try #require(RealtimeJobFeed.jobChange(change))
        #expect(converted.type == .update)
        #expect(converted.record?["big"] == .number(JSONNumber(text: "9007199254740993")))
        #expect(converted.record?["confidence"] == .number(JSONNumber(text: "0.9300")))
        #expect(converted.record?["error"] == .null)
        #expect(converted.record?["flag"] == .bool(true))
        #expect(converted.record == record)  // the decoded record itself, not a copy in another type
        #expect(converted.oldRecord == ["id": .string("7f0c6f57-3a8e-4a8e-9a55-0b8f7e2d9c11")])
        #expect(converted.commitTimestamp == JobTimestamp("2026-08-21T10:15:03.412Z"))
        #expect(converted.errors.isEmpty)
        #expect(!converted.isTruncated)
    }

    @Test("§5.4 a 413 row keeps its errors so the client re-fetches; DELETE has no record")
    func truncatedAndDelete() throws {
        let truncated = PostgresChange(
            type: .insert, schema: "public", table: "jobs", record: ["id": .string("a")],
            errors: [.init("Error 413: Payload Too Large")])
        let change = try #require(RealtimeJobFeed.jobChange(truncated))
        #expect(change.isTruncated)
        #expect(change.errors == ["Error 413: Payload Too Large"])
        let deletion = PostgresChange(type: .delete, schema: "public", table: "jobs", oldRecord: ["id": .string("a")])
        let converted = try #require(RealtimeJobFeed.jobChange(deletion))
        #expect(converted.type == .delete)
        #expect(converted.record == nil)
        #expect(converted.oldRecord?["id"] == .string("a"))
    }

    @Test("§5.2 a repeated key: the first member wins (as JSONObject lookup); an unknown type is not a change")
    func duplicateKeysAndUnknownType() throws {
        let record = JSONObject([.init(key: "status", value: .string("queued")), .init(key: "status", value: .null)])
        let change = PostgresChange(type: .insert, schema: "public", table: "jobs", record: record)
        #expect(try #require(RealtimeJobFeed.jobChange(change)).record?["status"] == .string("queued"))
        let odd = PostgresChange(type: .unknown("TRUNCATE"), schema: "public", table: "jobs")
        #expect(RealtimeJobFeed.jobChange(odd) == nil)
        let badTimestamp = PostgresChange(type: .insert, schema: "public", table: "jobs", commitTimestamp: "yesterday")
        #expect(try #require(RealtimeJobFeed.jobChange(badTimestamp)).commitTimestamp == nil)
    }

    @Test("JobSyncClient.supabase validates its inputs (typed errors, no secrets in messages)")
    func supabaseFactoryValidation() throws {
        let url = try #require(URL(string: "https://abcd.supabase.co"))
        #expect(throws: JobSyncError.self) { try JobSyncClient.supabase(url: url, apiKey: "") }
        // Any schema is accepted (PostgREST `Accept-Profile`), but only as a plain identifier.
        #expect(throws: JobSyncError.self) { try JobSyncClient.supabase(url: url, apiKey: "key", schema: "a b") }
        #expect(throws: JobSyncError.self) { try JobSyncClient.supabase(url: url, apiKey: "key", table: "jobs?x=1") }
        #expect(throws: JobSyncError.self) {
            try JobSyncClient.supabase(url: url, apiKey: "key", maximumResponseBytes: 0)
        }
        _ = try JobSyncClient.supabase(url: url, apiKey: "key", schema: "private")
        let ftp = try #require(URL(string: "ftp://abcd.supabase.co"))
        do {
            _ = try JobSyncClient.supabase(url: ftp, apiKey: "secret-key-value")
            Issue.record("an ftp URL was accepted")
        } catch {
            #expect(error.code == .invalidConfiguration)
            #expect(!error.description.contains("secret-key-value"))
        }
        let sync = try JobSyncClient.supabase(url: url, apiKey: "key")
        #expect(sync.client.transportMode == .polling)
    }
}

extension JobSyncIntegration {
    @Suite("RealtimeJobFeed over SupabaseLocal")
    struct RealtimeJobFeedLiveTests {
        /// Subscribes with `feed` and returns the first events until `stop` says enough (or 20 s pass).
        private func events(
            stack: SupabaseLocalStack, table: String, binding: JobFeedBinding,
            during: @escaping @Sendable () async throws -> Void = {},
            stop: @escaping @Sendable ([JobFeedEvent]) -> Bool
        ) async throws -> [JobFeedEvent] {
            let logger = Logger(label: "test", factory: { _ in SwiftLogNoOpLogHandler() })
            var configuration = RealtimeClient.Configuration(
                endpoint: stack.realtimeURL, apiKey: stack.anonKey, transport: LWSWebSocketTransport(logger: logger),
                logger: logger)
            configuration.heartbeatInterval = .seconds(1)
            let realtime = try RealtimeClient(configuration: configuration)
            let feed = RealtimeJobFeed(client: realtime, table: table)
            let seen = FeedEventLog()
            let (done, doneContinuation) = AsyncStream<Void>.makeStream()
            await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await realtime.run() }
                group.addTask {
                    try await feed.subscribe(binding) { event in
                        let all = seen.events.withLockedValue { seen in
                            seen.append(event)
                            return seen
                        }
                        if stop(all) { doneContinuation.finish() }
                    }
                }
                group.addTask {
                    try await during()
                }
                group.addTask {
                    try await Task.sleep(for: .seconds(20))
                    doneContinuation.finish()
                }
                for await _ in done {}
                group.cancelAll()
            }
            return seen.events.withLockedValue { $0 }
        }

        @Test("§4.5 live after the system ok, then §5.2 changes of the filtered ids only")
        func liveThenChanges() async throws {
            var configuration = SupabaseLocalConfiguration()
            configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
            try await SupabaseLocal.withRunning(configuration) { stack in
                let watched = try await stack.backend.insert(["status": .string("queued")])
                let other = try await stack.backend.insert(["status": .string("queued")])
                let watchedID = try #require(watched["id"]?.stringValue)
                let otherID = try #require(other["id"]?.stringValue)
                let events = try await self.events(
                    stack: stack, table: "jobs", binding: JobFeedBinding(ids: [try JobID(watchedID)]),
                    during: {
                        // Wait for the subscription, then change both rows.
                        while stack.openSocketCount == 0 { try await Task.sleep(for: .milliseconds(20)) }
                        try await Task.sleep(for: .milliseconds(500))
                        _ = try await stack.backend.update(
                            primaryKey: .string(otherID), set: ["status": .string("failed")])
                        _ = try await stack.backend.update(
                            primaryKey: .string(watchedID), set: ["status": .string("completed")])
                    },
                    stop: { events in events.contains { if case .change = $0 { true } else { false } } })
                #expect(events.first == .live)
                let changes = events.compactMap { event -> JobChange? in
                    if case .change(let change) = event { return change }
                    return nil
                }
                #expect(changes.count == 1)
                #expect(changes.first?.record?["id"] == .string(watchedID))
                #expect(changes.first?.record?["status"] == .string("completed"))
                #expect(changes.first?.commitTimestamp != nil)
            }
        }

        @Test("§4.5 a refused subscription (unknown table) reports not live with the server's reason")
        func systemErrorIsNotLive() async throws {
            var configuration = SupabaseLocalConfiguration()
            configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
            try await SupabaseLocal.withRunning(configuration) { stack in
                let events = try await self.events(
                    stack: stack, table: "no_such_table", binding: JobFeedBinding(ids: nil),
                    stop: { events in events.contains { if case .notLive = $0 { true } else { false } } })
                #expect(!events.contains(.live))
                let reasons = events.compactMap { event -> String? in
                    if case .notLive(let reason) = event { return reason }
                    return nil
                }
                #expect(reasons.contains { $0.contains("Unable to subscribe") }, "reasons: \(reasons)")
            }
        }
    }
}

/// The events a feed reported, in order.
final class FeedEventLog: Sendable {
    let events = NIOLockedValueBox<[JobFeedEvent]>([])
}
