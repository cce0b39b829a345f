import Foundation
import JobSyncCore
import JobSyncTestSupport
import NIOConcurrencyHelpers
import RealtimeProtocol
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

/// `RealtimeClient.broadcast(…)` over the fake transport (broadcast-from-database.md §B).
@Suite("RealtimeClient: Broadcast from Database (fake transport, manual clock)")
struct RealtimeClientBroadcastTests {
    static func broadcastPush(
        _ join: PhoenixMessage, event: String, id: String, replayed: Bool, payload: JSONValue = .object([:])
    ) -> PhoenixMessage {
        var meta: JSONObject = ["id": .string(id)]
        if replayed { meta["replayed"] = .bool(true) }
        return PhoenixMessage(
            joinRef: replayed ? join.joinRef : nil, ref: nil, topic: join.topic, event: .broadcast,
            payload: .object([
                "event": .string(event), "meta": .object(meta), "payload": payload, "type": .string("broadcast"),
            ]))
    }

    static func replicationReady(_ join: PhoenixMessage) -> PhoenixMessage {
        PhoenixMessage(
            joinRef: nil, ref: nil, topic: join.topic, event: .system,
            payload: .object([
                "channel": .string("jobs:42"), "extension": .string("system"),
                "message": .string("Replication connection established"), "status": .string("ok"),
            ]))
    }

    /// A kind-4 frame (§B4) for `realtime:jobs:42`.
    static func kind4(event: String, id: String, payload: String = #"{"n":1}"#) -> [UInt8] {
        let topic = "realtime:jobs:42"
        let metadata = #"{"id":"\#(id)"}"#
        return [4, UInt8(topic.utf8.count), UInt8(event.utf8.count), UInt8(metadata.utf8.count), 1]
            + Array(topic.utf8) + Array(event.utf8) + Array(metadata.utf8) + Array(payload.utf8)
    }

    @Test("§B3 §B4 §B5 private join with replay and replication_ready; replay, live binary rows, dedupe over a rejoin")
    func replayLiveAndRejoin() async throws {
        let watermark = NIOLockedValueBox<Int?>(1_760_000_000_000)
        try await withTestClient(configure: { configuration in
            configuration.rejoin.jitter = 0
            configuration.accessToken = { "user-jwt" }
        }) { client, clock, transport in
            let subscription = client.broadcast(
                topic: "jobs:42", events: ["update"],
                replay: BroadcastReplay(limit: 10) { watermark.withLockedValue { $0 } })
            var events = subscription.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            let connection = try await attempts.nextAttempt().accept()
            var server = ScriptedServer(connection)
            let join = try await server.expect(.join)
            #expect(join.topic == "realtime:jobs:42")
            let config = join.payload["config"]
            #expect(config?["private"] == .bool(true))
            #expect(config?["broadcast"]?["replication_ready"] == .bool(true))
            #expect(
                config?["broadcast"]?["replay"]
                    == .object(["since": .number(JSONNumber(1_760_000_000_000)), "limit": .number(JSONNumber(10))]))
            #expect(join.payload["access_token"] == .string("user-jwt"))
            server.acceptJoin(join, subscribed: false)
            // Replayed (text, join_ref set) before readiness, then live.
            server.send(Self.broadcastPush(join, event: "UPDATE", id: "a", replayed: true))
            #expect(try await events.next() == .message(BroadcastMessage(
                event: "UPDATE", payload: .object([:]), id: "a", isReplayed: true)))
            server.send(Self.replicationReady(join))
            #expect(try await events.next() == .live)
            // Live binary rows: a duplicate of "a" and an INSERT are not delivered, "b" is.
            connection.serverSend(binary: Self.kind4(event: "UPDATE", id: "a"))
            connection.serverSend(binary: Self.kind4(event: "INSERT", id: "i"))
            connection.serverSend(binary: Self.kind4(event: "update", id: "b"))
            #expect(try await events.next() == .message(BroadcastMessage(
                event: "update", payload: .object(["n": .number(JSONNumber(1))]), id: "b", isReplayed: false)))
            // The channel crashes; the rejoin asks for the watermark again and replays a, b (dropped) and c.
            watermark.withLockedValue { $0 = 1_760_000_000_500 }
            server.send(PhoenixMessage(
                joinRef: join.joinRef, ref: join.joinRef, topic: join.topic, event: .error, payload: .object([:])))
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .channelErrored)
            clock.advance(by: .seconds(1))
            let rejoin = try await server.expect(.join)
            #expect(rejoin.joinRef != join.joinRef)
            #expect(
                rejoin.payload["config"]?["broadcast"]?["replay"]?["since"]
                    == .number(JSONNumber(1_760_000_000_500)))
            server.acceptJoin(rejoin, subscribed: false)
            for id in ["a", "b", "c"] {
                server.send(Self.broadcastPush(rejoin, event: "UPDATE", id: id, replayed: true))
            }
            #expect(try await events.next() == .message(BroadcastMessage(
                event: "UPDATE", payload: .object([:]), id: "c", isReplayed: true)))
            server.send(Self.replicationReady(rejoin))
            #expect(try await events.next() == .live)
        }
    }

    @Test("§B2 a refused private join is reported as unauthorized and retried after the rejoin delay, not at once")
    func refusalIsTypedAndBacksOff() async throws {
        try await withTestClient(configure: { $0.rejoin.jitter = 0 }) { client, clock, transport in
            let subscription = client.broadcast(topic: "jobs:42")
            var events = subscription.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            server.reply(
                to: join, status: "error",
                response: ["reason": .string(
                    "Unauthorized: You do not have permissions to read from this Channel topic: jobs:42")])
            guard case .notLive(let reason)? = try await events.next() else {
                Issue.record("expected notLive")
                return
            }
            #expect(reason.kind == .unauthorized)
            #expect(reason.message.contains("do not have permissions"))
            // The rejoin waits for its 1 s timer (its sleeper registers asynchronously: wait for it, bounded).
            var spins = 0
            while !clock.deadlines.contains(.seconds(1)) && spins < 100_000 {
                await Task.yield()
                spins += 1
            }
            #expect(clock.deadlines.contains(.seconds(1)))
            clock.advance(by: .seconds(1))
            let rejoin = try await server.expect(.join)
            #expect(rejoin.joinRef != join.joinRef)
        }
    }

    @Test("§B2 §B3 §B6 channel errors map to distinct NotLiveReason kinds; other errors stay channelErrored")
    func errorKinds() {
        typealias Reason = ChannelStateMachine.Reason
        let cases: [(Reason, NotLiveReason.Kind)] = [
            (.joinRejected(ErrorReason("Unauthorized: You do not have permissions to read from this Channel topic: t")),
             .unauthorized),
            (.accessRevoked(ErrorReason("You no longer have permission to read from this Channel topic: t")),
             .accessRevoked),
            (.rateLimited(ErrorReason("Too many messages per second")), .rateLimited),
            (.joinRejected(ErrorReason("ChannelRateLimitReached: Too many channels")), .rateLimited),
            (.replicationNotReady(ErrorReason("Replication connection was not established in time")),
             .replicationNotReady),
            (.serverError, .channelErrored),
            (.tokenExpired(ErrorReason("Token has expired 0 seconds ago")), .channelErrored),
            (.socketLost, .socketLost),
        ]
        for (reason, kind) in cases {
            #expect(ClientDriver.notLiveReason(.errored(reason)).kind == kind, "\(reason)")
        }
    }

    @Test("§B5 replay on a public channel, an empty topic, or mixed privacy on a topic: invalidSubscription")
    func invalidSubscriptions() async throws {
        try await withTestClient { client, _, transport in
            // Accept the connection so that run() ends promptly when the test is over.
            var attempts = transport.attempts.makeAsyncIterator()
            _ = try await attempts.nextAttempt().accept()
            var publicReplay = client.broadcast(topic: "jobs", isPrivate: false, replay: BroadcastReplay { 1 })
                .makeAsyncIterator()
            do {
                _ = try await publicReplay.next()
                Issue.record("expected invalidSubscription")
            } catch let error as RealtimeClientError {
                #expect(error.code == .invalidSubscription)
            }
            var empty = client.broadcast(topic: "").makeAsyncIterator()
            await #expect(throws: RealtimeClientError.self) { _ = try await empty.next() }
            // One socket joins a topic once: a public subscription to a topic joined as private is refused.
            let privateJobs = client.broadcast(topic: "jobs:1")
            var publicJobs = client.broadcast(topic: "jobs:1", isPrivate: false).makeAsyncIterator()
            do {
                _ = try await publicJobs.next()
                Issue.record("expected invalidSubscription")
            } catch let error as RealtimeClientError {
                #expect(error.code == .invalidSubscription)
                #expect(error.message.contains("private"))
            }
            _ = privateJobs
        }
    }
}
