import Foundation
import JobSyncCore
import JobSyncTestSupport
import Logging
import RealtimeProtocol
import Synchronization
import Testing
import WebSocketTransport

import JobSyncTestSupport
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

    @Test("a consumer that stops reading holds the socket back for a second, then gets subscriptionOverflow")
    func subscriptionOverflow() async throws {
        try await withTestClient(configure: { $0.subscriptionBufferSize = 3 }) { client, clock, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let join = try await server.expect(.join)
            server.acceptJoin(join)  // .live is event 1 of 3
            for row in 1...5 { server.insert(topic: join.topic, ids: [100], rowID: row) }
            // Two unread events put the consumer behind (more than half the buffer): the reader waits for it, up to
            // one second of the client's clock. Time moves in 100 ms steps until the reader gives up.
            let ticker = Task {
                while !Task.isCancelled {
                    try await Task.sleep(for: .milliseconds(10))
                    clock.advance(by: .milliseconds(100))
                }
            }
            defer { ticker.cancel() }
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

    @Test("a slow consumer holds the socket back instead of overflowing: every event arrives, in order")
    func backPressure() async throws {
        // The reader waits above half the buffer (300); at most 256 decoded frames are past it, so 600 holds them.
        try await withTestClient(configure: { $0.subscriptionBufferSize = 600 }) { client, _, transport in
            var attempts = transport.attempts.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            let join = try await server.expect(.join)
            server.acceptJoin(join)
            // Five buffers' worth, sent at once; the clock never moves, so only the consumer's progress lets the
            // reader go on.
            let count = 3_000
            for row in 1...count { server.insert(topic: join.topic, ids: [100], rowID: row) }
            #expect(try await events.next() == .live)
            var rows: [Int] = []
            while rows.count < count, let event = try await events.next() {
                if rows.count % 100 == 0 { try await Task.sleep(for: .milliseconds(5)) }
                guard case .change(let change) = event else {
                    Issue.record("unexpected \(event)")
                    return
                }
                rows.append(change.record?["id"]?.numberValue?.int64.map(Int.init) ?? -1)
            }
            // Without the back-pressure the driver hands all 3,000 over at once and the buffer overflows.
            #expect(rows == Array(1...count))
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
