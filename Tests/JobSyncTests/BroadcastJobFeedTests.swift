import Foundation
import JobSyncCore
import JobSyncTestSupport
import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
import SupabaseRealtime
import Testing
import WebSocketTransport

@testable import JobSync

private let jobA = try! JobID("00000000-0000-4000-8000-00000000000a")
private let jobB = try! JobID("00000000-0000-4000-8000-00000000000b")
private let jobC = try! JobID("00000000-0000-4000-8000-00000000000c")

/// A `realtime.broadcast_changes` payload (broadcast-from-database.md §B1.3).
private func changePayload(
    _ operation: String, id: JobID, status: String = "processing", schema: String = "public", table: String = "jobs"
) -> JSONValue {
    let row: JSONValue = .object([
        "id": .string(id.rawValue), "status": .string(status), "updated_at": .string("2026-12-03T05:00:01.5Z"),
    ])
    return .object([
        "id": .string("11111111-2222-4333-8444-555555555555"),
        "old_record": operation == "INSERT" ? .null : row,
        "operation": .string(operation),
        "record": operation == "DELETE" ? .null : row,
        "schema": .string(schema),
        "table": .string(table),
    ])
}

@Suite("BroadcastJobFeed: topic planning, fan-in and payload decoding (pure)")
struct BroadcastJobFeedUnitTests {
    @Test("per job: one topic per id when they fit, the table-wide topic with an id filter when they do not")
    func perJobPlan() {
        let binding = JobFeedBinding(ids: [jobA, jobB])
        let topics = BroadcastTopics()
        let fits = BroadcastTopicPlan(
            binding: binding, mode: .perJob, tableWide: topics.tableWide, perJob: topics.perJob, available: 2)
        #expect(fits.subscriptions.map(\.topic) == ["jobs:" + jobA.rawValue, "jobs:" + jobB.rawValue])
        #expect(fits.subscriptions.map(\.ids) == [[jobA], [jobB]])
        #expect(fits.perJobTopics == 2)
        let full = BroadcastTopicPlan(
            binding: binding, mode: .perJob, tableWide: topics.tableWide, perJob: topics.perJob, available: 1)
        #expect(full.subscriptions == [.init(topic: "jobs", ids: [jobA, jobB])])
        #expect(full.perJobTopics == 0)
        let allJobs = BroadcastTopicPlan(
            binding: JobFeedBinding(ids: nil), mode: .perJob, tableWide: "jobs", perJob: topics.perJob, available: 90)
        #expect(allJobs.subscriptions == [.init(topic: "jobs", ids: nil)])
    }

    @Test("table-wide mode, custom names, and ids sharing one per-job topic name")
    func tableWideAndCustomNames() {
        let binding = JobFeedBinding(ids: [jobA, jobB, jobC])
        let tableWide = BroadcastTopicPlan(
            binding: binding, mode: .tableWide, tableWide: "orders", perJob: { "orders:" + $0.rawValue },
            available: 90)
        #expect(tableWide.subscriptions == [.init(topic: "orders", ids: [jobA, jobB, jobC])])
        #expect(tableWide.perJobTopics == 0)
        // A topic function mapping A and B to one name: one channel for both, C on its own.
        let shared = BroadcastTopicPlan(
            binding: binding, mode: .perJob, tableWide: "orders", perJob: { $0 == jobC ? "c" : "ab" }, available: 2)
        #expect(shared.subscriptions == [.init(topic: "ab", ids: [jobA, jobB]), .init(topic: "c", ids: [jobC])])
        #expect(shared.perJobTopics == 2)
        #expect(BroadcastTopics.maximumPerJobTopics == 90)
        #expect(BroadcastTopics().perJob(jobA) == "jobs:" + jobA.rawValue)
        #expect(BroadcastTopics().mode == .perJob)
    }

    @Test("§B3 fan-in: live only once every topic is live, not live as soon as one drops")
    func fanIn() {
        var fanIn = BroadcastFanIn(topics: 2)
        #expect(fanIn.topicNotLive(0) == .none)  // not live yet: nothing to report
        #expect(fanIn.topicLive(0) == .none)
        #expect(fanIn.topicLive(0) == .none)  // repeated
        #expect(fanIn.topicLive(1) == .live)
        #expect(fanIn.topicLive(1) == .none)
        #expect(fanIn.topicNotLive(0) == .notLive)
        #expect(fanIn.topicNotLive(1) == .none)
        #expect(fanIn.topicLive(1) == .none)
        #expect(fanIn.topicLive(0) == .live)
        var single = BroadcastFanIn(topics: 1)
        #expect(single.topicLive(0) == .live)
    }

    @Test("§B1.3 INSERT, UPDATE and DELETE payloads become the JobChanges RealtimeJobFeed produces")
    func decodesChanges() throws {
        let insert = BroadcastChangeDecoding(
            BroadcastMessage(event: "INSERT", payload: changePayload("INSERT", id: jobA), id: "m1"),
            schema: "public", table: "jobs")
        guard case .change(let inserted, let insertedID) = insert else {
            Issue.record("expected a change, got \(insert)")
            return
        }
        #expect(insertedID == jobA)
        #expect(inserted.type == .insert)
        #expect(inserted.record?["status"] == .string("processing"))
        #expect(inserted.record?["updated_at"] == .string("2026-12-03T05:00:01.5Z"))
        #expect(inserted.oldRecord == nil)
        #expect(inserted.commitTimestamp == nil)
        #expect(!inserted.isTruncated)

        let update = BroadcastChangeDecoding(
            BroadcastMessage(event: "UPDATE", payload: changePayload("UPDATE", id: jobB, status: "completed")),
            schema: "public", table: "jobs")
        guard case .change(let updated, jobB) = update else {
            Issue.record("expected a change of B, got \(update)")
            return
        }
        #expect(updated.type == .update)
        #expect(updated.record?["status"] == .string("completed"))
        #expect(updated.oldRecord?["id"] == .string(jobB.rawValue))

        let delete = BroadcastChangeDecoding(
            BroadcastMessage(event: "delete", payload: changePayload("DELETE", id: jobC)), schema: "public",
            table: "jobs")
        guard case .change(let deleted, jobC) = delete else {
            Issue.record("expected a deletion of C, got \(delete)")
            return
        }
        #expect(deleted.type == .delete)
        #expect(deleted.record == nil)
        #expect(deleted.oldRecord?["id"] == .string(jobC.rawValue))
        // The deleted version (§B1.3: `old_record` is the whole OLD row) orders the deletion; inserts and updates
        // carry no commit time.
        #expect(deleted.commitTimestamp == JobTimestamp("2026-12-03T05:00:01.5Z"))
        #expect(updated.commitTimestamp == nil)
    }

    @Test("§B5 a replayed UPDATE of the deleted version, arriving after the broadcast DELETE, does not bring the job back")
    func replayedUpdateAfterDelete() {
        // The fault matrix's failure (ThreadSanitizer run): the store knew the job at an older version, a live
        // DELETE arrived, then the rejoin's replay (since watermark − skew) re-delivered the UPDATE just before it.
        var core = JobStoreCore()
        core.merge(observe(row(jobC, status: "processing", updatedAt: "2026-12-03T05:00:01Z")))
        let delete = BroadcastChangeDecoding(
            BroadcastMessage(event: "DELETE", payload: changePayload("DELETE", id: jobC)), schema: "public",
            table: "jobs")
        guard case .change(let deletion, jobC) = delete else {
            Issue.record("expected a deletion of C, got \(delete)")
            return
        }
        let deleted = core.merge(
            JobObservation(jobID: jobC, kind: .deleted, commitTimestamp: deletion.commitTimestamp, source: .realtime))
        guard case .deleted(jobC, _) = deleted else {
            Issue.record("expected the deletion of C, got \(deleted)")
            return
        }
        let replayed = core.merge(observe(row(jobC, status: "processing", updatedAt: "2026-12-03T05:00:01.5Z")))
        #expect(replayed == .ignored(.stale))
        #expect(core.entries[jobC] == nil)
    }

    @Test("§B1.3 the operation is read case-insensitively, from the event name when the payload has none")
    func operationFromEvent() {
        var payload = changePayload("UPDATE", id: jobA).objectValue ?? [:]
        payload["operation"] = nil
        let fromEvent = BroadcastChangeDecoding(
            BroadcastMessage(event: "update", payload: .object(payload)), schema: "public", table: "jobs")
        #expect(fromEvent == .change(
            JobChange(type: .update, record: payload["record"]?.objectValue, oldRecord: payload["old_record"]?.objectValue),
            id: jobA))
        payload["operation"] = .string("Insert")
        let lower = BroadcastChangeDecoding(
            BroadcastMessage(event: "custom", payload: .object(payload)), schema: "public", table: "jobs")
        guard case .change(let change, _) = lower else {
            Issue.record("expected a change")
            return
        }
        #expect(change.type == .insert)
    }

    @Test("other tables and undecodable payloads are skipped with their reason")
    func skipped() {
        func decode(_ payload: JSONValue, event: String = "UPDATE") -> BroadcastChangeDecoding {
            BroadcastChangeDecoding(BroadcastMessage(event: event, payload: payload), schema: "public", table: "jobs")
        }
        #expect(decode(changePayload("UPDATE", id: jobA, table: "orders")) == .skipped(.otherTable))
        #expect(decode(changePayload("UPDATE", id: jobA, schema: "private")) == .skipped(.otherTable))
        #expect(decode(.string("hello")) == .skipped(.undecodable))
        #expect(decode(.object(["operation": .string("TRUNCATE")]), event: "TRUNCATE") == .skipped(.undecodable))
        var payload = changePayload("UPDATE", id: jobA).objectValue ?? [:]
        payload["record"] = .string("not a row")
        #expect(decode(.object(payload)) == .skipped(.undecodable))
        payload["record"] = .object(["id": .string("42")])  // not a UUID
        #expect(decode(.object(payload)) == .skipped(.undecodable))
        payload["record"] = .object(["status": .string("queued")])  // no id
        #expect(decode(.object(payload)) == .skipped(.undecodable))
        // A DELETE without its old row has nothing to delete.
        var deletion = changePayload("DELETE", id: jobA).objectValue ?? [:]
        deletion["old_record"] = .null
        #expect(decode(.object(deletion), event: "DELETE") == .skipped(.undecodable))
    }
}

// MARK: - Against a scripted Realtime peer

/// Waits (bounded) until a sleeper of `clock` is due at `deadline`.
private func waitForDeadline(_ clock: ManualClock, _ deadline: Duration) async {
    var spins = 0
    while !clock.deadlines.contains(deadline) && spins < 100_000 {
        await Task.yield()
        spins += 1
    }
    #expect(clock.deadlines.contains(deadline))
}

/// The server side of one in-memory connection, speaking vsn 2.0.0 text frames.
private struct Peer {
    let connection: InMemoryWebSocketServerConnection
    var inbound: WebSocketEvents.AsyncIterator
    let serializer = PhoenixSerializer(version: .v2)

    init(_ connection: InMemoryWebSocketServerConnection) {
        self.connection = connection
        self.inbound = connection.inbound.makeAsyncIterator()
    }

    /// The client's next join (heartbeats and token pushes are skipped).
    mutating func nextJoin(sourceLocation: SourceLocation = #_sourceLocation) async throws -> PhoenixMessage {
        while let event = await self.inbound.next() {
            guard case .message(.text(let text)) = event else { continue }
            let message = try self.serializer.decode(text: text)
            if message.event == .join { return message }
        }
        Issue.record("the client closed the connection", sourceLocation: sourceLocation)
        throw CancellationError()
    }

    func send(_ message: PhoenixMessage) {
        self.connection.send(.text(self.serializer.encode(message)))
    }

    func acceptJoin(_ join: PhoenixMessage) {
        self.send(PhoenixMessage(
            joinRef: join.joinRef, ref: join.ref, topic: join.topic, event: .reply,
            payload: .object(["response": .object([:]), "status": .string("ok")])))
    }

    /// §B3: the `system` ok once the replication connection exists.
    func ready(_ join: PhoenixMessage) {
        self.send(PhoenixMessage(
            joinRef: nil, ref: nil, topic: join.topic, event: .system,
            payload: .object([
                "channel": .string(String(join.topic.rawValue.dropFirst("realtime:".count))),
                "extension": .string("system"), "message": .string("Replication connection established"),
                "status": .string("ok"),
            ])))
    }

    /// §B4/§B5: a broadcast text push; replayed ones carry `join_ref` and `meta.replayed`.
    func broadcast(_ join: PhoenixMessage, event: String, payload: JSONValue, id: String, replayed: Bool = false) {
        var meta: JSONObject = ["id": .string(id)]
        if replayed { meta["replayed"] = .bool(true) }
        self.send(PhoenixMessage(
            joinRef: replayed ? join.joinRef : nil, ref: nil, topic: join.topic, event: .broadcast,
            payload: .object([
                "event": .string(event), "meta": .object(meta), "payload": payload, "type": .string("broadcast"),
            ])))
    }
}

@Suite("BroadcastJobFeed over a scripted Realtime peer (in-memory WebSocket, manual clock)")
struct BroadcastJobFeedPeerTests {
    /// Runs a Realtime client over an in-memory transport and `body` with a feed on it.
    private func withFeed(
        topics: BroadcastTopics = BroadcastTopics(),
        _ body: (BroadcastJobFeed, ManualClock, InMemoryWebSocketTransport) async throws -> Void
    ) async throws {
        let clock = ManualClock()
        let transport = InMemoryWebSocketTransport()
        var configuration = RealtimeClient.Configuration(
            endpoint: URL(string: "ws://127.0.0.1:9/realtime/v1/websocket")!, apiKey: "anon-key",
            transport: transport, clock: clock, logger: Logger(label: "test"))
        configuration.accessToken = { "user-jwt" }
        configuration.rejoin.jitter = 0
        let client = try RealtimeClient(configuration: configuration)
        let feed = BroadcastJobFeed(client: client, topics: topics, logger: Logger(label: "test"))
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await client.run() }
            try await body(feed, clock, transport)
            group.cancelAll()
            try await group.waitForAll()
        }
    }

    /// Subscribes `binding` in a child task; its events arrive in the returned stream.
    private func subscribe(
        _ feed: BroadcastJobFeed, _ binding: JobFeedBinding, context: JobFeedContext,
        in group: inout ThrowingTaskGroup<Void, any Error>
    ) -> AsyncStream<JobFeedEvent>.Iterator {
        let (events, sink) = AsyncStream<JobFeedEvent>.makeStream()
        group.addTask {
            try await feed.subscribe(binding, context: context) { sink.yield($0) }
            sink.finish()
        }
        return events.makeAsyncIterator()
    }

    @Test("§B2 §B3 §B5 private per-job joins replay since the watermark (ms), live after readiness, changes, rejoin")
    func perJobReplayLiveAndRejoin() async throws {
        // 05:00:00.123456 → 1796274000123 ms (floored).
        let watermark = NIOLockedValueBox<JobTimestamp?>(JobTimestamp("2026-12-03T05:00:00.123456Z"))
        let context = JobFeedContext(watermark: { watermark.withLockedValue { $0 } })
        try await withFeed { feed, clock, transport in
            try await withThrowingTaskGroup(of: Void.self) { group in
                var events = self.subscribe(feed, JobFeedBinding(ids: [jobA, jobB]), context: context, in: &group)
                var connections = transport.serverConnections.makeAsyncIterator()
                var peer = Peer(try #require(await connections.next()))
                var joins: [String: PhoenixMessage] = [:]
                for _ in 0..<2 {
                    let join = try await peer.nextJoin()
                    joins[join.topic.rawValue] = join
                }
                let joinA = try #require(joins["realtime:jobs:" + jobA.rawValue])
                let joinB = try #require(joins["realtime:jobs:" + jobB.rawValue])
                for join in [joinA, joinB] {
                    let config = join.payload["config"]
                    #expect(config?["private"] == .bool(true))
                    #expect(config?["broadcast"]?["replication_ready"] == .bool(true))
                    #expect(
                        config?["broadcast"]?["replay"]
                            == .object([
                                "since": .number(JSONNumber(1_796_274_000_123)), "limit": .number(JSONNumber(25)),
                            ]))
                    #expect(join.payload["access_token"] == .string("user-jwt"))
                }
                peer.acceptJoin(joinA)
                peer.acceptJoin(joinB)
                // A replayed row arrives before readiness and is delivered as a change.
                peer.broadcast(
                    joinA, event: "UPDATE", payload: changePayload("UPDATE", id: jobA), id: "r1", replayed: true)
                let replayed = await events.next()
                #expect(replayed == .change(JobChange(
                    type: .update, record: changePayload("UPDATE", id: jobA)["record"]?.objectValue,
                    oldRecord: changePayload("UPDATE", id: jobA)["old_record"]?.objectValue)))
                // A is ready, B is not: no live yet (the INSERT sent after A's readiness comes first).
                peer.ready(joinA)
                peer.broadcast(joinA, event: "INSERT", payload: changePayload("INSERT", id: jobA), id: "l1")
                guard case .change(let inserted)? = await events.next() else {
                    Issue.record("expected the INSERT before any live")
                    return
                }
                #expect(inserted.type == .insert)
                peer.ready(joinB)
                #expect(await events.next() == .live)
                // B's DELETE, a row of another table (skipped) and a row of C on B's topic (not this topic's job).
                peer.broadcast(joinB, event: "UPDATE", payload: changePayload("UPDATE", id: jobB, table: "orders"), id: "x")
                peer.broadcast(joinB, event: "UPDATE", payload: changePayload("UPDATE", id: jobC), id: "y")
                peer.broadcast(joinB, event: "DELETE", payload: changePayload("DELETE", id: jobB), id: "l2")
                guard case .change(let deleted)? = await events.next() else {
                    Issue.record("expected the DELETE")
                    return
                }
                #expect(deleted.type == .delete)
                #expect(deleted.oldRecord?["id"] == .string(jobB.rawValue))
                #expect(feed.statistics.otherTable == 1)
                #expect(feed.statistics.notWatched == 1)
                #expect(feed.statistics.changes == 3)
                // A's channel errors: not live; its rejoin replays again from the watermark as it is then.
                watermark.withLockedValue { $0 = JobTimestamp("2026-12-03T05:00:01.5Z") }
                peer.send(PhoenixMessage(
                    joinRef: joinA.joinRef, ref: joinA.joinRef, topic: joinA.topic, event: .error,
                    payload: .object([:])))
                guard case .notLive(let reason)? = await events.next() else {
                    Issue.record("expected notLive")
                    return
                }
                #expect(reason.contains("jobs:" + jobA.rawValue))
                await waitForDeadline(clock, .seconds(1))  // the rejoin timer (its sleeper registers asynchronously)
                clock.advance(by: .seconds(1))
                let rejoin = try await peer.nextJoin()
                #expect(rejoin.topic == joinA.topic)
                #expect(rejoin.joinRef != joinA.joinRef)
                #expect(
                    rejoin.payload["config"]?["broadcast"]?["replay"]?["since"]
                        == .number(JSONNumber(1_796_274_001_500)))
                peer.acceptJoin(rejoin)
                peer.broadcast(
                    rejoin, event: "UPDATE", payload: changePayload("UPDATE", id: jobA, status: "completed"),
                    id: "r2", replayed: true)
                guard case .change(let again)? = await events.next() else {
                    Issue.record("expected the replayed row")
                    return
                }
                #expect(again.record?["status"] == .string("completed"))
                peer.ready(rejoin)
                #expect(await events.next() == .live)
                group.cancelAll()
            }
        }
    }

    @Test("§B5 no replay without a watermark; table-wide mode joins one topic and filters by id")
    func noWatermarkTableWide() async throws {
        try await withFeed(topics: BroadcastTopics(tableWide: "orders", mode: .tableWide)) { feed, _, transport in
            try await withThrowingTaskGroup(of: Void.self) { group in
                var events = self.subscribe(feed, JobFeedBinding(ids: [jobA]), context: JobFeedContext(), in: &group)
                var connections = transport.serverConnections.makeAsyncIterator()
                var peer = Peer(try #require(await connections.next()))
                let join = try await peer.nextJoin()
                #expect(join.topic == "realtime:orders")
                #expect(join.payload["config"]?["private"] == .bool(true))
                #expect(join.payload["config"]?["broadcast"]?["replay"] == nil)
                #expect(join.payload["config"]?["broadcast"]?["replication_ready"] == .bool(true))
                peer.acceptJoin(join)
                peer.ready(join)
                #expect(await events.next() == .live)
                peer.broadcast(join, event: "INSERT", payload: changePayload("INSERT", id: jobB), id: "b")
                peer.broadcast(join, event: "INSERT", payload: .string("garbage"), id: "g")
                peer.broadcast(join, event: "INSERT", payload: changePayload("INSERT", id: jobA), id: "a")
                guard case .change(let change)? = await events.next() else {
                    Issue.record("expected A's INSERT")
                    return
                }
                #expect(change.record?["id"] == .string(jobA.rawValue))
                #expect(feed.statistics.notWatched == 1)
                #expect(feed.statistics.undecodable == 1)
                group.cancelAll()
            }
        }
    }

    @Test("per-job topics are shared by the feed's bindings: beyond 90 a binding uses the table-wide topic")
    func perJobLimitAcrossBindings() async throws {
        let many = (0..<90).map { try! JobID(String(format: "00000000-0000-4000-8000-%012d", $0 + 100)) }
        try await withFeed { feed, _, transport in
            try await withThrowingTaskGroup(of: Void.self) { group in
                _ = self.subscribe(feed, JobFeedBinding(ids: many), context: JobFeedContext(), in: &group)
                var connections = transport.serverConnections.makeAsyncIterator()
                var peer = Peer(try #require(await connections.next()))
                var topics: Set<String> = []
                for _ in 0..<90 { topics.insert(try await peer.nextJoin().topic.rawValue) }
                #expect(topics.count == 90)
                #expect(topics.allSatisfy { $0.hasPrefix("realtime:jobs:") })
                // The feed's 90 per-job topics are taken: the next binding joins the table-wide topic.
                _ = self.subscribe(feed, JobFeedBinding(ids: [jobA]), context: JobFeedContext(), in: &group)
                #expect(try await peer.nextJoin().topic == "realtime:jobs")
                group.cancelAll()
            }
        }
    }
}

// MARK: - The client's side of the protocol addition

/// A feed that records the context the client subscribes with, then stays subscribed until cancelled.
private final class ContextRecordingFeed: JobChangeFeed {
    let contexts = NIOLockedValueBox<[JobFeedContext]>([])
    let subscribed: AsyncStream<Void>
    private let sink: AsyncStream<Void>.Continuation

    init() {
        (self.subscribed, self.sink) = AsyncStream.makeStream()
    }

    func subscribe(_ binding: JobFeedBinding, handler: @escaping @Sendable (JobFeedEvent) async -> Void) async throws {
        Issue.record("the client must subscribe with a context")
    }

    func subscribe(
        _ binding: JobFeedBinding, context: JobFeedContext,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        self.contexts.withLockedValue { $0.append(context) }
        self.sink.yield()
        try await Task.sleep(for: .seconds(3_600))
    }
}

@Suite("JobSyncClient hands its feed the store's watermark (JobFeedContext)")
struct FeedContextTests {
    @Test("the context's watermark is the store's minus watermarkSkew, nil while there is none, and follows the store")
    func watermarkFollowsStore() async throws {
        let store = try JobStore()
        let feed = ContextRecordingFeed()
        let client = try JobSyncClient(
            configuration: .init(
                source: FakeSource(), feed: feed, mode: .allJobs, clock: ManualClock(), watermarkSkew: .seconds(5)),
            store: store)
        try await withRunning(client) {
            var subscribed = feed.subscribed.makeAsyncIterator()
            await subscribed.next()
            let context = try #require(feed.contexts.withLockedValue { $0.first })
            #expect(context.watermark() == nil)
            _ = store.merge(observe(row(idA, status: "processing", updatedAt: ts(10))))
            #expect(context.watermark() == JobTimestamp(ts(5)))
            _ = store.merge(observe(row(idB, status: "queued", updatedAt: ts(20, micros: 250))))
            #expect(context.watermark() == JobTimestamp(ts(15, micros: 250)))
        }
    }

    @Test("a feed implementing only subscribe(_:handler:) gets the context call through the default implementation")
    func defaultImplementation() async throws {
        let feed = FakeFeed()
        let task = Task {
            try await feed.subscribe(JobFeedBinding(ids: [idA]), context: JobFeedContext()) { _ in }
        }
        await feed.waitForSubscriptions(1)
        #expect(feed.bindings == [JobFeedBinding(ids: [idA])])
        task.cancel()
        _ = await task.result
    }
}

extension BroadcastJobFeedPeerTests {
    @Test("end to end: JobSyncClient over BroadcastJobFeed replays since its store's watermark and merges by version")
    func clientOverBroadcast() async throws {
        try await withFeed { feed, _, transport in
            // The store already holds A at 10:15:25 (a cache from an earlier run): the watermark.
            let store = try JobStore()
            _ = store.merge(observe(row(idA, status: "processing", updatedAt: ts(25)), source: .poll))
            let source = FakeSource()
            source.put(row(idA, status: "processing", updatedAt: ts(25)))
            let client = try JobSyncClient(
                configuration: .init(
                    source: source, feed: feed, clock: ManualClock(), watermarkSkew: .seconds(5), jitter: { $0 }),
                store: store)
            client.watch([idA])
            try await withRunning(client) {
                var updates = store.updates(for: idA).makeAsyncIterator()
                #expect(statusOf(try await updates.next()) == .processing)
                var connections = transport.serverConnections.makeAsyncIterator()
                var peer = Peer(try #require(await connections.next()))
                let join = try await peer.nextJoin()
                #expect(join.topic.rawValue == "realtime:jobs:" + idA.rawValue)
                // §B5: since = the store's watermark minus the 5 s skew, in milliseconds.
                let since = try #require(JobTimestamp(ts(20))).microsecondsSinceEpoch / 1_000
                #expect(join.payload["config"]?["broadcast"]?["replay"]?["since"] == .number(JSONNumber(Int(since))))
                peer.acceptJoin(join)
                // A replayed row older than the store's is ignored; the live completion is merged once.
                let stale = row(idA, status: "processing", updatedAt: ts(20), progress: "stale")
                peer.broadcast(
                    join, event: "UPDATE",
                    payload: .object([
                        "operation": .string("UPDATE"), "schema": .string("public"), "table": .string("jobs"),
                        "record": .object(stale), "old_record": .object(stale),
                    ]),
                    id: "old", replayed: true)
                peer.ready(join)
                #expect(await client.waitForTransportMode(.live))
                let done = row(idA, status: "completed", updatedAt: ts(30))
                peer.broadcast(
                    join, event: "UPDATE",
                    payload: .object([
                        "operation": .string("UPDATE"), "schema": .string("public"), "table": .string("jobs"),
                        "record": .object(done), "old_record": .object(stale),
                    ]),
                    id: "new")
                guard case .updated(let job)? = try await updates.next() else {
                    Issue.record("expected the completion")
                    return
                }
                #expect(job.status == .completed)
                #expect(job.updatedAt == JobTimestamp(ts(30)))
                #expect(feed.statistics.changes == 2)
            }
        }
    }
}

extension BroadcastJobFeedPeerTests {
    @Test("§B5 bindings sharing the table-wide topic: only the first asks for replay, a later one shares its join")
    func sharedTableWideTopic() async throws {
        let context = JobFeedContext(watermark: { JobTimestamp("2026-12-03T05:00:00Z") })
        try await withFeed(topics: BroadcastTopics(mode: .tableWide)) { feed, clock, transport in
            try await withThrowingTaskGroup(of: Void.self) { group in
                var first = self.subscribe(feed, JobFeedBinding(ids: [jobA]), context: context, in: &group)
                var connections = transport.serverConnections.makeAsyncIterator()
                var peer = Peer(try #require(await connections.next()))
                let join = try await peer.nextJoin()
                #expect(join.topic == "realtime:jobs")
                #expect(join.payload["config"]?["broadcast"]?["replay"]?["since"] == .number(JSONNumber(1_796_274_000_000)))
                peer.acceptJoin(join)
                peer.ready(join)
                #expect(await first.next() == .live)
                // The second binding joins nothing new: it is live at once, with no answer from the peer.
                var second = self.subscribe(feed, JobFeedBinding(ids: [jobB]), context: context, in: &group)
                #expect(await second.next() == .live)
                // Each binding gets only its own job's rows from the shared channel.
                peer.broadcast(join, event: "INSERT", payload: changePayload("INSERT", id: jobB), id: "b")
                peer.broadcast(join, event: "INSERT", payload: changePayload("INSERT", id: jobA), id: "a")
                guard case .change(let forFirst)? = await first.next(), case .change(let forSecond)? = await second.next()
                else {
                    Issue.record("expected one change per binding")
                    return
                }
                #expect(forFirst.record?["id"] == .string(jobA.rawValue))
                #expect(forSecond.record?["id"] == .string(jobB.rawValue))
                // A rejoin still replays (the first binding's option): both go down and come back.
                peer.send(PhoenixMessage(
                    joinRef: join.joinRef, ref: join.joinRef, topic: join.topic, event: .error, payload: .object([:])))
                guard case .notLive? = await first.next(), case .notLive? = await second.next() else {
                    Issue.record("expected notLive on both")
                    return
                }
                await waitForDeadline(clock, .seconds(1))  // the rejoin timer (its sleeper registers asynchronously)
                clock.advance(by: .seconds(1))
                let rejoin = try await peer.nextJoin()
                #expect(rejoin.payload["config"]?["broadcast"]?["replay"]?["since"] == .number(JSONNumber(1_796_274_000_000)))
                group.cancelAll()
            }
        }
    }
}
