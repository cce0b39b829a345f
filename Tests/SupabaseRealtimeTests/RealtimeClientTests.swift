import Foundation
import JobSyncCore
import JobSyncTestSupport
import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

/// Runs a client on a fake transport and a manual clock for the duration of `body`, then cancels it.
func withTestClient(
    configure: (inout RealtimeClient.Configuration) -> Void = { _ in },
    _ body: (RealtimeClient, ManualClock, FakeTransport) async throws -> Void
) async throws {
    let clock = ManualClock()
    let transport = FakeTransport()
    var configuration = RealtimeClient.Configuration(
        endpoint: URL(string: "ws://127.0.0.1:9/realtime/v1/websocket")!, apiKey: "key-123",
        transport: transport, clock: clock, logger: Logger(label: "test"))
    configure(&configuration)
    let client = try RealtimeClient(configuration: configuration)
    try await withThrowingTaskGroup(of: Void.self) { group in
        group.addTask { try await client.run() }
        try await body(client, clock, transport)
        group.cancelAll()
        try await group.waitForAll()
    }
}

extension AsyncStream<FakeConnectAttempt>.Iterator {
    mutating func nextAttempt(sourceLocation: SourceLocation = #_sourceLocation) async throws -> FakeConnectAttempt {
        try #require(await self.next(), sourceLocation: sourceLocation)
    }
}

@Suite("RealtimeClient driver (fake transport, manual clock)")
struct RealtimeClientTests {
    @Test("§1.1 connects with apikey and vsn=2.0.0, joins, goes live after system ok, delivers changes")
    func joinLiveAndDeliver() async throws {
        try await withTestClient { client, _, transport in
            let subscription = client.postgresChanges(schema: "public", table: "jobs", filter: "id=in.(1,2)")
            var events = subscription.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            let attempt = try await attempts.nextAttempt()
            let query = attempt.request.url.query ?? ""
            #expect(query.contains("apikey=key-123") && query.contains("vsn=2.0.0"))
            var server = ScriptedServer(attempt.accept())
            let join = try await server.expect(.join)
            #expect(join.topic == "realtime:sync-1")
            let binding = join.payload["config"]?["postgres_changes"]?.arrayValue?.first
            #expect(binding?["filter"] == .string("id=in.(1,2)") && binding?["table"] == .string("jobs"))
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
            server.insert(topic: join.topic, ids: [100], rowID: 7)
            guard case .change(let change)? = try await events.next() else {
                Issue.record("expected a change")
                return
            }
            #expect(change.record?["id"] == .number(JSONNumber(7)))
        }
    }

    @Test("§3 heartbeat every 25 s on the manual clock; the reply gives the round-trip time")
    func heartbeatRoundTrip() async throws {
        try await withTestClient { client, clock, transport in
            var roundTrips = client.heartbeatRoundTrips.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            server.acceptJoin(try await server.expect(.join))
            #expect(try await events.next() == .live)
            clock.advance(by: .seconds(25))
            let heartbeat = try await server.expect(.heartbeat)
            #expect(heartbeat.topic == .phoenix && heartbeat.joinRef == nil)
            clock.advance(by: .milliseconds(40))
            server.send(PhoenixMessage(
                joinRef: nil, ref: heartbeat.ref, topic: .phoenix, event: .reply,
                payload: .object(["response": .object([:]), "status": .string("ok")])))
            #expect(await roundTrips.next() == .milliseconds(40))
            #expect(client.latestHeartbeatRoundTrip == .milliseconds(40))
        }
    }

    @Test("§3 heartbeat timeout: close 1000 \"heartbeat timeout\", not live, reconnect, rejoin, live again")
    func heartbeatTimeoutRecovery() async throws {
        try await withTestClient { client, clock, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let first = try await attempts.nextAttempt().accept()
            var server = ScriptedServer(first)
            server.acceptJoin(try await server.expect(.join))
            #expect(try await events.next() == .live)
            clock.advance(by: .seconds(25))
            _ = try await server.expect(.heartbeat)
            clock.advance(by: .seconds(10))  // the server stays silent
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .socketLost)
            #expect(try await server.next() == nil, "the client closed the connection")
            #expect(first.clientClose?.code == 1000 && first.clientClose?.reason == "heartbeat timeout")
            clock.advance(by: .milliseconds(1_200))  // the first reconnect step is 1 s ± 20 %
            var second = ScriptedServer(try await attempts.nextAttempt().accept())
            second.acceptJoin(try await second.expect(.join))
            #expect(try await events.next() == .live)
        }
    }

    @Test("§9.2 abrupt drop (no close frame): not live, reconnect after the schedule, rejoin")
    func abruptDropRecovery() async throws {
        try await withTestClient { client, clock, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let first = try await attempts.nextAttempt().accept()
            var server = ScriptedServer(first)
            server.acceptJoin(try await server.expect(.join))
            #expect(try await events.next() == .live)
            first.serverClose(code: nil)
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .socketLost)
            clock.advance(by: .milliseconds(1_200))
            var second = ScriptedServer(try await attempts.nextAttempt().accept())
            let rejoin = try await second.expect(.join)
            second.acceptJoin(rejoin)
            #expect(try await events.next() == .live)
            second.insert(topic: rejoin.topic, ids: [100], rowID: 1)
            guard case .change? = try await events.next() else {
                Issue.record("expected a change after the rejoin")
                return
            }
        }
    }

    @Test("§1.3 handshake 429: typed status with the HTTP code, reconnect backs off to ≥ 8 s (10 s − 20 %)")
    func handshakeRateLimited() async throws {
        try await withTestClient { client, clock, transport in
            var statuses = client.statusUpdates.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            try await attempts.nextAttempt().reject(
                WebSocketTransportError(code: .handshakeRejected, message: "upgrade refused", httpStatus: 429))
            var seenRejection = false
            var delay: Duration?
            while delay == nil, let status = await statuses.next() {
                if status == .disconnected(.handshakeRejected(status: 429)) { seenRejection = true }
                if case .reconnecting(_, let after) = status { delay = after }
            }
            #expect(seenRejection)
            let wait = try #require(delay)
            #expect(wait >= .seconds(8) && wait <= .seconds(12))
            clock.advance(by: wait)
            _ = try await attempts.nextAttempt().accept()
            while let status = await statuses.next(), status != .connected {}
            #expect(client.status == .connected)
        }
    }

    @Test("§8.1 the access token goes in the join payload; a new token is pushed on the next heartbeat")
    func accessTokenRefresh() async throws {
        let token = NIOLockedValueBox("token-1")
        try await withTestClient(configure: { configuration in
            configuration.accessToken = { token.withLockedValue { $0 } }
        }) { client, clock, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            #expect(join.payload["access_token"] == .string("token-1"))
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
            token.withLockedValue { $0 = "token-2" }
            clock.advance(by: .seconds(25))
            _ = try await server.expect(.heartbeat)
            let push = try await server.expect(.accessToken)
            #expect(push.payload == .object(["access_token": .string("token-2")]))
            #expect(push.joinRef == join.joinRef && push.topic == join.topic)
        }
    }

    @Test("§8.2 token expiry close: the client refreshes the token and rejoins with it")
    func tokenExpiryRejoin() async throws {
        let token = NIOLockedValueBox("token-old")
        try await withTestClient(configure: { configuration in
            configuration.accessToken = { token.withLockedValue { $0 } }
        }) { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
            token.withLockedValue { $0 = "token-new" }
            server.send(PhoenixMessage(
                joinRef: join.joinRef, ref: nil, topic: join.topic, event: .system,
                payload: .object([
                    "channel": .string("sync-1"), "extension": .string("system"),
                    "message": .string("Token has expired 0 seconds ago"), "status": .string("error"),
                ])))
            server.send(PhoenixMessage(
                joinRef: join.joinRef, ref: join.joinRef, topic: join.topic, event: .close, payload: .object([:])))
            #expect(try await events.next() == .systemError("Token has expired 0 seconds ago"))
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .channelErrored)
            let rejoin = try await server.expect(.join)
            #expect(rejoin.payload["access_token"] == .string("token-new"))
            #expect(rejoin.joinRef != join.joinRef)
            server.acceptJoin(rejoin)
            #expect(try await events.next() == .live)
        }
    }

    @Test("§9.3 phx_close from the server ends the subscription with channelClosed (no blind rejoin)")
    func serverCloseEndsSubscription() async throws {
        try await withTestClient { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
            server.send(PhoenixMessage(
                joinRef: join.joinRef, ref: join.joinRef, topic: join.topic, event: .close, payload: .object([:])))
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .channelClosed)
            await #expect(throws: RealtimeClientError.self) { _ = try await events.next() }
        }
    }

    @Test("cancelling run() sends phx_leave, closes with 1000 and ends subscriptions normally")
    func cancellationLeavesAndCloses() async throws {
        let clock = ManualClock()
        let transport = FakeTransport()
        let client = try RealtimeClient(configuration: .init(
            endpoint: URL(string: "wss://abcd.supabase.co/realtime/v1/websocket")!, apiKey: "k",
            transport: transport, clock: clock, logger: Logger(label: "test")))
        let subscription = client.postgresChanges(schema: "public", table: "jobs")
        var events = subscription.makeAsyncIterator()
        let run = Task { try await client.run() }
        var attempts = transport.attempts.makeAsyncIterator()
        let connection = try await attempts.nextAttempt().accept()
        var server = ScriptedServer(connection)
        let join = try await server.expect(.join)
        server.acceptJoin(join)
        #expect(try await events.next() == .live)
        run.cancel()
        let leave = try await server.expect(.leave)
        #expect(leave.joinRef == join.joinRef && leave.topic == join.topic)
        #expect(try await server.next() == nil)
        #expect(connection.clientClose?.code == 1000)
        try await run.value
        #expect(try await events.next() == nil, "the subscription ends normally")
        #expect(client.status == .closed)
        await #expect(throws: RealtimeClientError.self) {
            var late = client.postgresChanges(schema: "public", table: "x").makeAsyncIterator()
            _ = try await late.next()
        }
    }

    @Test("ending a subscription's iteration leaves its channel")
    func consumerTerminationLeaves() async throws {
        try await withTestClient { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let kept = client.postgresChanges(schema: "public", table: "kept")
            var keptEvents = kept.makeAsyncIterator()
            let joins = [try await server.expect(.join)]
            server.acceptJoin(joins[0])
            #expect(try await keptEvents.next() == .live)
            do {
                let dropped = client.postgresChanges(schema: "public", table: "jobs")
                var droppedEvents = dropped.makeAsyncIterator()
                let join = try await server.expect(.join)
                server.acceptJoin(join)
                #expect(try await droppedEvents.next() == .live)
            }
            let leave = try await server.expect(.leave)
            #expect(leave.topic == "realtime:sync-2")
        }
    }

    @Test("§4.3 bindings sharing a channel are joined together and routed by id (§5.5)")
    func sharedChannelRouting() async throws {
        try await withTestClient { client, _, transport in
            let first = client.postgresChanges(schema: "public", table: "jobs", filter: "id=in.(1)", channel: "jobs")
            let second = client.postgresChanges(schema: "public", table: "jobs", filter: "id=in.(2)", channel: "jobs")
            var firstEvents = first.makeAsyncIterator()
            var secondEvents = second.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            #expect(join.topic == "realtime:jobs")
            #expect(join.payload["config"]?["postgres_changes"]?.arrayValue?.count == 2)
            server.acceptJoin(join, firstID: 100)
            #expect(try await firstEvents.next() == .live)
            #expect(try await secondEvents.next() == .live)
            server.insert(topic: join.topic, ids: [101], rowID: 2)
            server.insert(topic: join.topic, ids: [100], rowID: 1)
            guard case .change(let toSecond)? = try await secondEvents.next(),
                case .change(let toFirst)? = try await firstEvents.next()
            else {
                Issue.record("expected one change each")
                return
            }
            #expect(toSecond.record?["id"] == .number(JSONNumber(2)))
            #expect(toFirst.record?["id"] == .number(JSONNumber(1)))
        }
    }

    @Test("§2 a malformed frame is skipped; the connection keeps working")
    func malformedFrameSkipped() async throws {
        try await withTestClient { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let connection = try await attempts.nextAttempt().accept()
            var server = ScriptedServer(connection)
            let join = try await server.expect(.join)
            connection.serverSend("{not json")
            connection.serverSend("[1,2]")
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
        }
    }
}
