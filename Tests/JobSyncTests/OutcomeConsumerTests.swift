import Foundation
import JobSyncCore
import JobSyncTestSupport
import SupabaseREST
import Testing

@testable import JobSync

/// ``OutcomeConsumer`` over a fake table, the client's store and a SQLite file: restarts, start positions, retries and
/// dead letters, the bound on held outcomes, and the file's size.
@Suite("Outcome consumer: durable delivery across restarts")
struct OutcomeConsumerTests {
    /// The job id number `n`.
    static func id(_ n: Int) -> JobID {
        try! JobID(String(format: "00000000-0000-4000-8000-%012d", n))
    }

    static func date(_ second: Int) -> Date {
        Date(timeIntervalSince1970: Double(JobTimestamp(ts(second))!.microsecondsSinceEpoch) / 1e6)
    }

    /// A fresh SQLite path in a private directory, removed after `body`.
    static func withFile(_ body: (String) async throws -> Void) async throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "jobsync-consumer-\(UInt64.random(in: 0...UInt64.max))")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        try await body(directory.appendingPathComponent("state.sqlite").path)
    }

    static func consumer(
        _ source: FakeSource, path: String, name: String = "billing", start: OutcomeConsumer.StartPosition = .beginning,
        now: Date = Self.date(59), clock: ManualClock = ManualClock(), maximum: Int = 1_000, skew: Duration = .seconds(5)
    ) throws -> OutcomeConsumer {
        let client = try makeClient(source: source, feed: nil, clock: clock, mode: .allJobs)
        return try OutcomeConsumer(
            client: client, persistence: try SQLiteJobPersistence(path: path),
            configuration: .init(
                name: name, start: start, maximumAttempts: 2, retryDelay: .seconds(1), watermarkSkew: skew,
                maximumUnacknowledged: maximum, clock: clock, now: { now }))
    }

    /// Runs the consumer around `body`, then stops it (its end writes every acknowledgement).
    static func running<T: Sendable>(
        _ consumer: OutcomeConsumer, _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: T?.self) { group in
            group.addTask {
                try await consumer.run()
                return nil
            }
            group.addTask {
                guard (try? await Task.sleep(for: .seconds(30))) != nil else { return nil }
                throw JobSyncError(code: .timeout, message: "the consumer test exceeded its deadline")
            }
            let value = try await body()
            group.cancelAll()
            while let _ = try await group.next() {}
            return value
        }
    }

    /// The next `count` outcomes.
    static func take(_ count: Int, from consumer: OutcomeConsumer) async -> [Outcome] {
        var outcomes: [Outcome] = []
        guard count > 0 else { return [] }
        for await outcome in consumer.outcomes() {
            outcomes.append(outcome)
            if outcomes.count == count { break }
        }
        return outcomes
    }

    /// Waits until the consumer completed `count` catch-up reads.
    static func caughtUp(_ consumer: OutcomeConsumer, _ count: Int = 1) async throws {
        while consumer.statistics.catchUps < count { try await Task.sleep(for: .milliseconds(5)) }
    }

    @Test("a restart delivers what was not acknowledged and what finished while down, and nothing acknowledged")
    func restart() async throws {
        try await Self.withFile { path in
            let source = FakeSource()
            source.put(row(idA, status: "completed", updatedAt: ts(1)))
            source.put(row(idB, status: "failed", updatedAt: ts(2), error: "corrupt PDF"))
            source.put(row(idC, status: "processing", updatedAt: ts(3)))
            let first = try Self.consumer(source, path: path)
            let delivered = try await Self.running(first) {
                let outcomes = await Self.take(2, from: first)
                first.acknowledge(outcomes[0])  // B is delivered, never acknowledged: the process "ends"
                return outcomes
            }
            #expect(delivered.map(\.jobID) == [idA, idB])  // catch-up order: updated_at
            #expect(delivered.map(\.kind) == [.completed, .failed])
            #expect(delivered[1].job?.error == "corrupt PDF")

            // While down, C completes.
            source.put(row(idC, status: "completed", updatedAt: ts(4)))
            let second = try Self.consumer(source, path: path)
            let again = try await Self.running(second) {
                let outcomes = await Self.take(2, from: second)
                for outcome in outcomes { second.acknowledge(outcome) }
                // Live: a change merged by the client's store.
                second.client.store.merge(observe(row(idB, status: "failed", updatedAt: ts(2))))  // a duplicate
                let id = Self.id(9)
                second.client.store.merge(observe(row(id, status: "completed", updatedAt: ts(6))))
                let live = await Self.take(1, from: second)
                second.acknowledge(live[0])
                return outcomes + live
            }
            #expect(again.map(\.jobID) == [idB, idC, Self.id(9)])
            #expect(again.allSatisfy { $0.delivery == 1 })

            let third = try Self.consumer(source, path: path)
            try await Self.running(third) { try await Self.caughtUp(third) }
            #expect(third.statistics.delivered == 0)
            #expect(third.statistics.rowsRead > 0)  // it did read the table
        }
    }

    @Test("start positions: now, a time, the beginning; the start of a name's first run is kept")
    func startPositions() async throws {
        try await Self.withFile { path in
            let source = FakeSource()
            source.put(row(idA, status: "completed", updatedAt: ts(10)))
            source.put(row(idB, status: "completed", updatedAt: ts(40)))
            for (name, start, expected) in [
                ("now", OutcomeConsumer.StartPosition.now, [idB]), ("since", .since(JobTimestamp(ts(5))!), [idA, idB]),
                ("beginning", .beginning, [idA, idB]),
            ] {
                let consumer = try Self.consumer(source, path: path, name: name, start: start, now: Self.date(30))
                let outcomes = try await Self.running(consumer) {
                    try await Self.caughtUp(consumer)
                    let outcomes = await Self.take(consumer.statistics.unacknowledged, from: consumer)
                    for outcome in outcomes { consumer.acknowledge(outcome) }
                    return outcomes
                }
                #expect(outcomes.map(\.jobID) == expected, "start \(name)")
            }
            // `now` is the first run's: a later run started at 0:50 still gets C, updated at 0:35.
            source.put(row(idC, status: "failed", updatedAt: ts(35)))
            let later = try Self.consumer(source, path: path, name: "now", start: .now, now: Self.date(50))
            let outcomes = try await Self.running(later) { await Self.take(1, from: later) }
            #expect(outcomes.map(\.jobID) == [idC])
        }
    }

    @Test("a rejected outcome comes back after its backoff, then becomes a dead letter kept in the file")
    func rejectionAndDeadLetter() async throws {
        try await Self.withFile { path in
            let source = FakeSource()
            source.put(row(idA, status: "failed", updatedAt: ts(1), error: "timeout"))
            let clock = ManualClock()
            let consumer = try Self.consumer(source, path: path, clock: clock)
            try await Self.running(consumer) {
                let first = await Self.take(1, from: consumer)[0]
                consumer.reject(first, reason: "webhook answered 503")
                await clock.waitForSleepers(1)
                #expect(clock.deadlines == [.seconds(1)])
                clock.advance(by: .seconds(1))
                let second = await Self.take(1, from: consumer)[0]
                #expect(second.jobID == idA && second.delivery == 2)
                consumer.reject(second, reason: "webhook answered 500")  // the second attempt: a dead letter
                await consumer.flush()
            }
            let letters = try consumer.deadLetters()
            #expect(letters.map(\.jobID) == [idA])
            #expect(letters.first?.attempts == 2 && letters.first?.reason == "webhook answered 500")
            #expect(letters.first?.job?.error == "timeout")
            #expect(consumer.statistics.deadLettered == 1 && consumer.statistics.redelivered == 1)

            let restarted = try Self.consumer(source, path: path, clock: clock)
            try await Self.running(restarted) { try await Self.caughtUp(restarted) }
            #expect(restarted.statistics.delivered == 0)  // a dead letter is handled
        }
    }

    @Test("at most maximumUnacknowledged are held; the rest is read again once half are acknowledged, once each")
    func boundedHolding() async throws {
        try await Self.withFile { path in
            let source = FakeSource(maximumRowsPerRead: 3)
            for n in 1...20 { source.put(row(Self.id(n), status: "completed", updatedAt: ts(n))) }
            let consumer = try Self.consumer(source, path: path, maximum: 4)
            let outcomes = try await Self.running(consumer) {
                var outcomes: [Outcome] = []
                var highest = 0
                for await outcome in consumer.outcomes() {
                    highest = max(highest, consumer.statistics.unacknowledged)
                    outcomes.append(outcome)
                    consumer.acknowledge(outcome)
                    if outcomes.count == 20 { break }
                }
                #expect(highest <= 4)
                return outcomes
            }
            #expect(outcomes.map(\.jobID) == (1...20).map(Self.id))
            #expect(outcomes.allSatisfy { $0.delivery == 1 })
            #expect(consumer.statistics.catchUps > 1)
        }
    }

    @Test("the file keeps only the acknowledgements within the skew window above the watermark")
    func compactionInTheFile() async throws {
        try await Self.withFile { path in
            let source = FakeSource()
            for n in 1...50 { source.put(row(Self.id(n), status: "completed", updatedAt: ts(n))) }
            let consumer = try Self.consumer(source, path: path, skew: .seconds(5))
            try await Self.running(consumer) {
                for await outcome in consumer.outcomes() {
                    consumer.acknowledge(outcome)
                    if outcome.jobID == Self.id(50) { break }
                }
                try await Self.caughtUp(consumer)
                await consumer.flush()
            }
            let saved = try SQLiteJobPersistence(path: path).consumerState("billing", start: nil)
            #expect(saved.watermark == JobTimestamp(ts(45)))  // the newest (0:50) less the skew
            #expect(Set(saved.acknowledged.keys) == Set((45...50).map(Self.id)))
        }
    }

    @Test("scope: a filter on the row's columns, or a set of ids; ordering operators are refused")
    func scopes() async throws {
        try await Self.withFile { path in
            let source = FakeSource()
            source.put(row(idA, status: "completed", updatedAt: ts(1), extra: ["tenant_id": .number(JSONNumber(42))]))
            source.put(row(idB, status: "failed", updatedAt: ts(2), extra: ["tenant_id": .number(JSONNumber(7))]))
            source.put(row(idC, status: "completed", updatedAt: ts(3)))
            for (name, scope, expected) in [
                ("tenant", OutcomeConsumer.Scope.matching([PostgRESTFilter("tenant_id", .eq("42"))]), [idA]),
                ("not-tenant", .matching([PostgRESTFilter("tenant_id", .neq("42"))]), [idB]),  // null <> 42 is not true
                ("no-tenant", .matching([PostgRESTFilter("tenant_id", .isNull)]), [idC]),
                ("set", .jobs([idB, idC]), [idB, idC]),
            ] {
                let client = try makeClient(source: source, feed: nil, clock: ManualClock(), mode: .allJobs)
                let consumer = try OutcomeConsumer(
                    client: client, persistence: try SQLiteJobPersistence(path: path),
                    configuration: .init(name: name, scope: scope, start: .beginning))
                let outcomes = try await Self.running(consumer) {
                    try await Self.caughtUp(consumer)
                    // Live: B's deletion is merged into B's open outcome where B is in scope, and is not delivered
                    // where a filter left B out (a deletion has no row to match).
                    client.store.merge(
                        observe(row(idB, status: "failed", updatedAt: ts(2), extra: ["tenant_id": .number(JSONNumber(7))])))
                    let deleted = client.store.merge(JobObservation(jobID: idB, kind: .deleted, source: .realtime))
                    #expect(deleted.event == .deleted(idB))
                    return await Self.take(consumer.statistics.unacknowledged, from: consumer)
                }
                #expect(outcomes.map(\.jobID) == expected, "scope \(name)")
            }
            let client = try makeClient(source: source, feed: nil, clock: ManualClock(), mode: .allJobs)
            #expect(throws: JobSyncError.self) {
                try OutcomeConsumer(
                    client: client, persistence: try SQLiteJobPersistence(path: path),
                    configuration: .init(name: "ordered", scope: .matching([PostgRESTFilter("tenant_id", .gt("7"))])))
            }
        }
    }
}
