import Foundation
import JobSyncCore
import Logging
import RealtimeProtocol
import Synchronization
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

@Suite("RealtimeClient subscriptions and support types")
struct RealtimeClientSubscriptionTests {
    @Test("removing one binding of a shared channel rejoins it without that binding")
    func sharedChannelRebind() async throws {
        try await withTestClient { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let kept = client.postgresChanges(schema: "public", table: "jobs", filter: "id=in.(1)", channel: "jobs")
            var keptEvents = kept.makeAsyncIterator()
            let first = try await server.expect(.join)
            server.acceptJoin(first)
            #expect(try await keptEvents.next() == .live)
            do {
                let extra = client.postgresChanges(
                    schema: "public", table: "jobs", filter: "id=in.(2)", channel: "jobs")
                var extraEvents = extra.makeAsyncIterator()
                // Adding a binding rejoins the channel with both (§15.3: the server closes the old join).
                let both = try await server.expect(.join)
                #expect(both.payload["config"]?["postgres_changes"]?.arrayValue?.count == 2)
                #expect(both.joinRef != first.joinRef)
                guard case .notLive(let reason)? = try await keptEvents.next() else {
                    Issue.record("expected notLive while rejoining")
                    return
                }
                #expect(reason.kind == .rejoining)
                server.acceptJoin(both)
                #expect(try await keptEvents.next() == .live)
                // The new subscription was part of the rejoin, so it saw the same not-live phase first.
                guard case .notLive(.init(kind: .rejoining, message: reason.message))? = try await extraEvents.next()
                else {
                    Issue.record("expected notLive(rejoining)")
                    return
                }
                #expect(try await extraEvents.next() == .live)
            }
            // The extra subscription is gone: the channel rejoins with only the kept binding.
            let single = try await server.expect(.join)
            let bindings = single.payload["config"]?["postgres_changes"]?.arrayValue
            #expect(bindings?.count == 1 && bindings?.first?["filter"] == .string("id=in.(1)"))
            server.acceptJoin(single)
            guard case .notLive? = try await keptEvents.next() else {
                Issue.record("expected notLive while rejoining")
                return
            }
            #expect(try await keptEvents.next() == .live)
        }
    }

    @Test("a consumer that falls a whole buffer behind gets subscriptionOverflow, never silent loss")
    func subscriptionOverflow() async throws {
        try await withTestClient(configure: { $0.subscriptionBufferSize = 3 }) { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let join = try await server.expect(.join)
            server.acceptJoin(join)  // .live is event 1 of 3
            for row in 1...5 { server.insert(topic: join.topic, ids: [100], rowID: row) }
            // The overflow ends the subscription, which leaves the channel: wait for that leave so every frame
            // above has been processed before reading.
            _ = try await server.expect(.leave)
            var received: [RealtimeSubscriptionEvent] = []
            do {
                while let event = try await events.next() { received.append(event) }
                Issue.record("expected an overflow error")
            } catch let error as RealtimeClientError {
                #expect(error.code == .subscriptionOverflow)
            }
            #expect(received.count == 3 && received.first == .live)
        }
    }

    @Test("Mailbox keeps delivering after the consumer task is cancelled, until finished")
    func mailboxIgnoresCancellation() async {
        let mailbox = Mailbox<Int>()
        let consumer = Task {
            var seen: [Int] = []
            while let value = await mailbox.next() { seen.append(value) }
            return seen
        }
        consumer.cancel()
        mailbox.send(1)
        mailbox.send(2)
        mailbox.finish()
        #expect(!mailbox.send(3), "sends after finish are refused")
        #expect(await consumer.value == [1, 2])
    }

    @Test("InboundCredits makes a reader wait once the limit is reached, and cancellation frees it")
    func inboundCredits() async {
        let credits = InboundCredits(limit: 2)
        #expect(await credits.acquire())
        #expect(await credits.acquire())
        let waiting = Task { await credits.acquire() }
        credits.release()
        #expect(await waiting.value == true)
        let cancelled = Task { await credits.acquire() }
        cancelled.cancel()
        #expect(await cancelled.value == false)
    }
}
