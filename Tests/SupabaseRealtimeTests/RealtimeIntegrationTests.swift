import Foundation
import JobSyncCore
import Logging
import RealtimeProtocol
import SupabaseLocal
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

/// Fails the test (instead of hanging the run) if `body` takes longer than `limit` of real time.
/// A safety net for tests over real sockets only; nothing asserts on timing.
func withDeadline<T: Sendable>(
    // A watchdog against hangs, not a timing assertion.
    _ limit: Duration = .seconds(90),
    _ body: @escaping @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: limit)
            return nil
        }
        defer { group.cancelAll() }
        guard let result = try await group.next(), let value = result else {
            throw RealtimeClientError(.connectionFailed, "integration test exceeded its deadline")
        }
        return value
    }
}

/// A local Supabase stack and a client over real sockets (libwebsockets), with short timers so recovery is quick.
func withLocalStack(
    configure: @escaping @Sendable (SupabaseLocalStack, inout RealtimeClient.Configuration) -> Void = { _, _ in },
    _ body: @escaping @Sendable (SupabaseLocalStack, RealtimeClient) async throws -> Void
) async throws {
    try await withDeadline {
        try await SupabaseLocal.withRunning { stack in
            var configuration = try RealtimeClient.Configuration(
                projectURL: stack.baseURL, apiKey: stack.anonKey,
                transport: LWSWebSocketTransport(logger: Logger(label: "test.lws")), logger: Logger(label: "test"))
            configuration.heartbeatInterval = .milliseconds(300)
            configuration.heartbeatTimeout = .milliseconds(300)
            configuration.reconnect = BackoffSchedule(steps: [.milliseconds(50), .milliseconds(100)])
            configuration.rateLimitedReconnectDelay = .milliseconds(300)
            configuration.rejoin = BackoffSchedule(steps: [.milliseconds(50), .milliseconds(100)])
            configure(stack, &configuration)
            let client = try RealtimeClient(configuration: configuration)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await client.run() }
                try await body(stack, client)
                group.cancelAll()
                try await group.waitForAll()
            }
        }
    }
}

extension PostgresChangeSubscription.Iterator {
    /// Skips events until `.live`.
    mutating func waitUntilLive(sourceLocation: SourceLocation = #_sourceLocation) async throws {
        while let event = try await self.next() {
            if event == .live { return }
        }
        Issue.record("the subscription ended before it was live", sourceLocation: sourceLocation)
    }

    /// The next change, skipping status events.
    mutating func nextChange(sourceLocation: SourceLocation = #_sourceLocation) async throws -> PostgresChange? {
        while let event = try await self.next() {
            if case .change(let change) = event { return change }
        }
        Issue.record("the subscription ended before a change", sourceLocation: sourceLocation)
        return nil
    }

    /// Skips events until a `.notLive`, returning its reason.
    mutating func waitUntilNotLive() async throws -> NotLiveReason? {
        while let event = try await self.next() {
            if case .notLive(let reason) = event { return reason }
        }
        return nil
    }
}

@Suite("RealtimeClient over real sockets against SupabaseLocal", .serialized)
struct RealtimeIntegrationTests {
    @Test("connect, join, live after system ok, receive INSERT and UPDATE")
    func receiveChanges() async throws {
        try await withLocalStack { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            let row = try await stack.backend.insert(["status": .string("queued")])
            let inserted = try #require(try await events.nextChange())
            #expect(inserted.type == .insert)
            let id = try #require(row["id"])
            #expect(inserted.record?["id"] == .string(id.stringValue ?? ""))
            _ = try await stack.backend.update(primaryKey: id, set: ["status": .string("processing")])
            let updated = try #require(try await events.nextChange())
            #expect(updated.type == .update && updated.record?["status"] == .string("processing"))
        }
    }

    @Test("SupabaseLocalStack.replay writes its frames to every open socket and reports once per socket")
    func replayReachesEverySocket() async throws {
        try await withLocalStack { stack, client in
            var configuration = try RealtimeClient.Configuration(
                projectURL: stack.baseURL, apiKey: stack.anonKey,
                transport: LWSWebSocketTransport(logger: Logger(label: "test.lws")), logger: Logger(label: "test"))
            configuration.heartbeatInterval = .seconds(5)
            let second = try RealtimeClient(configuration: configuration)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await second.run() }
                var first = client.postgresChanges(schema: "public", table: "jobs").makeAsyncIterator()
                var other = second.postgresChanges(schema: "public", table: "jobs").makeAsyncIterator()
                try await first.waitUntilLive()
                try await other.waitUntilLive()
                let changes = (1...3).map { step in
                    TableChange(
                        kind: .update, schema: "public", table: "jobs",
                        commitTimestamp: LocalTimestamp(microsecondsSinceEpoch: 1_000_000 * Int64(step)),
                        record: ["id": .string("job-\(step)"), "status": .string("processing")],
                        oldRecord: ["id": .string("job-\(step)")])
                }
                let report = await stack.replay(changes, batch: 2)
                #expect(report.sockets == 2 && report.framesWritten == 6)
                for step in 1...3 {
                    #expect(try await first.nextChange()?.record?["id"] == .string("job-\(step)"))
                    #expect(try await other.nextChange()?.record?["id"] == .string("job-\(step)"))
                }
                group.cancelAll()
                try await group.waitForAll()
            }
        }
    }

    @Test("§5.5 an id=in.(…) filter only delivers matching rows")
    func filteredSubscription() async throws {
        try await withLocalStack { stack, client in
            let wanted = "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"
            let subscription = client.postgresChanges(
                schema: "public", table: "jobs", event: .insert, filter: "id=in.(\(wanted))")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            _ = try await stack.backend.insert(["status": .string("queued")])
            _ = try await stack.backend.insert(["id": .string(wanted), "status": .string("queued")])
            let change = try #require(try await events.nextChange())
            #expect(change.record?["id"] == .string(wanted))
        }
    }

    @Test("§9.2 server close (1012): not live, reconnect, rejoin, live, changes flow again")
    func recoverAfterServerClose() async throws {
        try await withLocalStack { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            stack.faults.dropAllConnections(code: 1012, reason: "restart")
            let reason = try #require(try await events.waitUntilNotLive())
            #expect(reason.kind == .socketLost)
            try await events.waitUntilLive()
            _ = try await stack.backend.insert(["status": .string("queued")])
            #expect(try await events.nextChange()?.type == .insert)
            #expect(stack.acceptedSocketCount >= 2)
        }
    }

    @Test("abrupt drop (no close frame): recovers")
    func recoverAfterAbruptDrop() async throws {
        try await withLocalStack { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            stack.faults.dropAllConnections(code: nil)
            #expect(try await events.waitUntilNotLive()?.kind == .socketLost)
            try await events.waitUntilLive()
            _ = try await stack.backend.insert(["status": .string("queued")])
            #expect(try await events.nextChange()?.type == .insert)
        }
    }

    @Test("§3 silent stall: the heartbeat times out, the client reconnects on a new socket")
    func recoverAfterSilentStall() async throws {
        try await withLocalStack { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var statuses = client.statusUpdates.makeAsyncIterator()
            try await events.waitUntilLive()
            stack.faults.stall(for: .seconds(5))
            var sawTimeout = false
            while let status = await statuses.next() {
                if status == .disconnected(.heartbeatTimeout) {
                    sawTimeout = true
                    break
                }
            }
            #expect(sawTimeout)
            try await events.waitUntilLive()
            _ = try await stack.backend.insert(["status": .string("queued")])
            #expect(try await events.nextChange()?.type == .insert)
        }
    }

    @Test("§13.1 a stall shorter than the heartbeat timeout: unresponsive, then live again on the same socket")
    func unresponsiveThenLiveAgain() async throws {
        try await withLocalStack(configure: { _, configuration in
            configuration.heartbeatTimeout = .seconds(20)
            configuration.unresponsiveAfter = .milliseconds(150)
        }) { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let statuses = Recorder<RealtimeClient.Status>()
            let watcher = Task {
                for await status in client.statusUpdates { statuses.append(status) }
            }
            defer { watcher.cancel() }
            try await events.waitUntilLive()
            stack.faults.stall(for: .milliseconds(1_500))
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive first")
                return
            }
            #expect(reason.kind == .socketUnresponsive)
            _ = try await stack.backend.insert(["status": .string("queued")])
            var sawLive = false
            var sawInsert = false
            while !(sawLive && sawInsert), let event = try await events.next() {
                switch event {
                case .live: sawLive = true
                case .change(let change): sawInsert = sawInsert || change.type == .insert
                case .notLive(let other): Issue.record("unexpected notLive \(other)")
                case .systemError(let message): Issue.record("unexpected system error \(message)")
                }
            }
            #expect(sawLive && sawInsert, "live again, and the change held up by the stall arrives")
            #expect(!statuses.values.contains { if case .disconnected = $0 { true } else { false } },
                "the socket was kept: \(statuses.values)")
        }
    }

    @Test("§1.3 handshake refusal: typed status with the HTTP code, backoff, then connects", arguments: [429, 401])
    func handshakeRefusal(status: Int) async throws {
        try await withLocalStack { stack, client in
            var statuses = client.statusUpdates.makeAsyncIterator()
            stack.faults.refuseConnections(ConnectionRefusal(status: status))
            stack.faults.dropAllConnections(code: 1012)
            var seen: [RealtimeClient.Status] = []
            var delay: Duration?
            while let update = await statuses.next() {
                seen.append(update)
                if seen.contains(.disconnected(.handshakeRejected(status: status))),
                    case .reconnecting(_, let after) = update
                {
                    delay = after
                    break
                }
                if seen.count > 40 { break }
            }
            let after = try #require(delay, "statuses seen: \(seen)")
            if status == 429 {
                #expect(after >= .milliseconds(240), "429 backs off to the rate-limited delay")
            }
            stack.faults.acceptConnections()
            while let update = await statuses.next(), update != .connected {}
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
        }
    }

    @Test("§8.2 token expiry on the server: refresh, rejoin, live again")
    func tokenExpiryRecovery() async throws {
        try await withLocalStack(configure: { stack, configuration in
            configuration.accessToken = { stack.mintUserToken() }
        }) { stack, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            stack.faults.expireTokens()
            var sawNotLive = false
            while let event = try await events.next() {
                if case .notLive = event { sawNotLive = true }
                if event == .live, sawNotLive { break }
            }
            #expect(sawNotLive)
        }
    }

    /// `nil` tokens (the API key's role) have no `exp`: they are asked for again every accessTokenRefreshInterval.
    /// A JWT with `exp` an hour ahead is asked for on connect only, whatever the interval.
    @Test(
        "§3 heartbeats ask for a token without exp every accessTokenRefreshInterval, one with exp only when due",
        arguments: ["nil, 60 s", "nil, 0 s", "1 h JWT, 0 s"])
    func tokenAskedWhenDue(variant: String) async throws {
        let calls = Recorder<Int>()
        try await withLocalStack(configure: { stack, configuration in
            configuration.accessTokenRefreshInterval = variant.hasSuffix("60 s") ? .seconds(60) : .zero
            configuration.accessToken = {
                calls.append(1)
                return variant.hasPrefix("nil") ? nil : stack.mintUserToken()
            }
        }) { _, client in
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            try await events.waitUntilLive()
            try await Task.sleep(for: .seconds(2))  // about six heartbeats (every 300 ms)
        }
        switch variant {
        case "nil, 0 s": #expect(calls.values.count >= 4, "every heartbeat asks, got \(calls.values.count)")
        // On connect only (a reconnect over the tight 300 ms heartbeat timeout would ask once more).
        default: #expect(calls.values.count <= 2, "connect only, got \(calls.values.count)")
        }
    }

    @Test("cancelling run() right after a heartbeat timeout returns within 1 s (the stalled socket is killed)")
    func cancelAfterHeartbeatTimeout() async throws {
        try await withDeadline {
            try await SupabaseLocal.withRunning { stack in
                var configuration = try RealtimeClient.Configuration(
                    projectURL: stack.baseURL, apiKey: stack.anonKey, transport: LWSWebSocketTransport(),
                    logger: Logger(label: "test"))
                configuration.heartbeatInterval = .milliseconds(300)
                configuration.heartbeatTimeout = .milliseconds(300)
                configuration.reconnect = BackoffSchedule(steps: [.seconds(30)])  // stay on the dead socket's close
                let client = try RealtimeClient(configuration: configuration)
                let subscription = client.postgresChanges(schema: "public", table: "jobs")
                var events = subscription.makeAsyncIterator()
                var statuses = client.statusUpdates.makeAsyncIterator()
                let run = Task { try await client.run() }
                try await events.waitUntilLive()
                stack.faults.stall(for: .seconds(60))  // the peer never answers again, not even the close frame
                while let status = await statuses.next(), status != .disconnected(.heartbeatTimeout) {}
                let clock = ContinuousClock()
                let cancelled = clock.now
                run.cancel()
                try await run.value
                let took = cancelled.duration(to: clock.now)
                print("run() returned \(took) after cancellation following a heartbeat timeout")
                #expect(took < .seconds(1), "run() took \(took) to return")
            }
        }
    }

    @Test("cancelling run() leaves channels and closes the socket")
    func shutdownLeaves() async throws {
        try await withDeadline {
            try await SupabaseLocal.withRunning { stack in
                let client = try RealtimeClient(configuration: .init(
                    projectURL: stack.baseURL, apiKey: stack.anonKey, transport: LWSWebSocketTransport(),
                    logger: Logger(label: "test")))
                let subscription = client.postgresChanges(schema: "public", table: "jobs")
                var events = subscription.makeAsyncIterator()
                let run = Task { try await client.run() }
                try await events.waitUntilLive()
                #expect(stack.openSocketCount == 1)
                run.cancel()
                try await run.value
                #expect(try await events.next() == nil)
                #expect(client.status == .closed)
            }
        }
    }
}

/// Values appended from another task, read at the end.
final class Recorder<Value: Sendable>: @unchecked Sendable {
    // @unchecked: `storage` is only touched under `lock`.
    private let lock = NSLock()
    private var storage: [Value] = []

    func append(_ value: Value) {
        self.lock.withLock { self.storage.append(value) }
    }

    var values: [Value] { self.lock.withLock { self.storage } }
}
