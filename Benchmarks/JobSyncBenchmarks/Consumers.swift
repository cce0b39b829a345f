// Durable consumers: acknowledged outcomes per second for one `OutcomeConsumer` with its state in SQLite (group
// commit), through the catch-up path (REST rows) and the live path (store merges); the fleet's cost per outcome
// (claim and acknowledgement requests, claim round trip) against SupabaseLocal's RPC; and the time from a replica's
// death to another replica delivering the outcome it held, at the default lease.
import Foundation
import JobSync
import JobSyncCore
import Logging
import SupabaseLocal
import SupabaseREST
import Synchronization

/// A table held in memory, sorted by `(updated_at, id)`, read like `SupabaseTableSource` reads (the first
/// `maximumRowsPerRead` rows at or after `since`): the REST path without a server, so the consumer is the cost.
/// Only the first `visible` rows exist yet (the live path makes them visible as it merges them).
final class SortedRowsSource: JobSource {
    private let rows: [JSONObject]
    private let keys: [JobTimestamp]
    private let visibleCount: Mutex<Int>
    let maximumRowsPerRead = 10_000
    var supportsWatermark: Bool { true }

    init(rows: [JSONObject], visible: Int) {
        self.rows = rows
        self.keys = rows.map { JobTimestamp($0["updated_at"]!.stringValue!)! }
        self.visibleCount = Mutex(visible)
    }

    /// Makes the next row visible and returns it.
    func reveal() -> JSONObject {
        self.rows[self.visibleCount.withLock { count in
            defer { count += 1 }
            return count
        }]
    }

    func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject] { [] }

    func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        var low = 0
        var high = self.keys.count
        if let since {
            while low < high {
                let middle = (low + high) / 2
                if self.keys[middle] < since { low = middle + 1 } else { high = middle }
            }
        }
        let visible = self.visibleCount.withLock { $0 }
        return Array(self.rows[min(low, visible)..<min(low + self.maximumRowsPerRead, visible)])
    }
}

struct ConsumerThroughput {
    var path: String
    var outcomes: Int
    var elapsed: Duration
    var cpu: Duration
    var fileBytes: Int
    var remembered: Int

    var perSecond: Double { Double(self.outcomes) / self.elapsed.secondsValue }
}

struct FleetCost {
    var replicas: Int
    var outcomes: Int
    var elapsed: Duration
    var claims: ClaimStatistics
    var claimRoundTrip: LatencyPercentiles

    var grantedAndRefused: String { "\(self.claims.claimsGranted) / \(self.claims.claimsRefused)" }
    var acknowledgements: Int { self.claims.acksAccepted }

    var requestsPerOutcome: Double {
        Double(self.claims.claimsGranted + self.claims.claimsRefused + self.claims.acksAccepted + self.claims.acksRefused)
            / Double(self.outcomes)
    }
}

enum ConsumerBenchmark {
    /// A completed job row, updated `index` × 10 ms after a fixed start.
    static func row(_ index: Int) -> JSONObject {
        let id = String(format: "00000000-0000-4000-8000-%012d", index)
        let micros: Int64 = 1_800_000_000_000_000 + Int64(index) * 10_000
        return [
            "id": .string(id), "status": .string("completed"), "progress": .string("Done"),
            "updated_at": .string(JobTimestamp(microsecondsSinceEpoch: micros).description),
            "result": .object(["classification": .string("invoice"), "confidence": .number(JSONNumber(text: "0.97"))]),
        ]
    }

    /// One consumer acknowledging `count` outcomes as fast as they come, its state in a fresh SQLite file.
    /// `live`: the outcomes are merged into the client's store (the Realtime path); otherwise read by the start-up
    /// catch-up (the REST path).
    static func throughput(count: Int, live: Bool) async throws -> ConsumerThroughput {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("jobsync-bench-consumer-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let path = directory.appendingPathComponent("state.sqlite").path
        let rows = (0..<count).map(Self.row)
        let source = SortedRowsSource(rows: rows, visible: live ? 0 : count)
        let client = try JobSyncClient(configuration: .init(source: source, feed: nil, mode: .allJobs))
        let persistence = try SQLiteJobPersistence(path: path)
        let consumer = try OutcomeConsumer(
            client: client, persistence: persistence, configuration: .init(name: "bench", start: .beginning))
        let startCPU = processCPU()
        let start = ContinuousClock.now
        await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await consumer.run() }
            if live {
                group.addTask {
                    // Once the consumer listens (before that, only its catch-up would find the rows).
                    while client.store.subscriberCount == 0 { try await Task.sleep(for: .milliseconds(1)) }
                    for _ in 0..<count {
                        client.store.merge(try JobObservation.row(source.reveal(), source: .realtime))
                    }
                }
            }
            var acknowledged = 0
            for await outcome in consumer.outcomes() {
                consumer.acknowledge(outcome)
                acknowledged += 1
                if acknowledged == count { break }
            }
            await consumer.flush()
            group.cancelAll()
        }
        let elapsed = ContinuousClock.now - start
        let cpu = processCPU() - startCPU
        let bytes = ["", "-wal"].compactMap {
            (try? FileManager.default.attributesOfItem(atPath: path + $0))?[.size] as? Int
        }.reduce(0, +)
        let saved = try persistence.consumerState("bench", start: nil)
        return ConsumerThroughput(
            path: live ? "live (store merges)" : "catch-up (REST rows)", outcomes: consumer.statistics.acknowledged,
            elapsed: elapsed, cpu: cpu, fileBytes: bytes, remembered: saved.acknowledged.count)
    }

    static func stackConfiguration() -> SupabaseLocalConfiguration {
        var configuration = SupabaseLocalConfiguration()
        configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
        return configuration
    }

    static func replica(
        _ stack: SupabaseLocalStack, holder: String, lease: Duration = .seconds(30)
    ) throws -> (JobSyncClient, OutcomeConsumer) {
        let rest = try PostgRESTClient(
            configuration: .init(baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.serviceKey))
        let client = try JobSyncClient(
            configuration: .init(
                source: SupabaseTableSource(client: rest), feed: nil, mode: .allJobs,
                initialPollDelay: .milliseconds(100), maximumPollDelay: .milliseconds(500)))
        let consumer = try OutcomeConsumer(
            client: client, persistence: try SQLiteJobPersistence(path: ":memory:"),
            configuration: .init(name: "fleet", start: .beginning, fleet: .init(holder: holder, lease: lease)))
        return (client, consumer)
    }

    /// `replicas` fleet replicas handling `count` finished jobs (all acknowledged at once by whoever holds each).
    /// The run lasts until every replica has settled every outcome: the losers of a claim learn that the outcome
    /// was acknowledged by claiming again after the holder's lease (5 s here, to keep the run short; the request
    /// count does not depend on it).
    static func fleet(count: Int, replicas: Int) async throws -> FleetCost {
        try await SupabaseLocal.withRunning(Self.stackConfiguration()) { stack in
            for index in 0..<count {
                _ = try await stack.backend.insert([
                    "id": .string(String(format: "00000000-0000-4000-8000-%012d", index)),
                    "status": .string("completed"), "progress": .string("Done"),
                ])
            }
            let members = try (0..<replicas).map {
                try Self.replica(stack, holder: "replica-\($0)", lease: .seconds(5))
            }
            let handled = ChangeCounter()
            let start = ContinuousClock.now
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (client, consumer) in members {
                    group.addTask { try await client.run() }
                    group.addTask { try await consumer.run() }
                    group.addTask {
                        for await outcome in consumer.outcomes() {
                            consumer.acknowledge(outcome)
                            handled.increment()
                        }
                    }
                }
                while handled.value < count || members.contains(where: { $0.1.statistics.unacknowledged > 0 }) {
                    try await Task.sleep(for: .milliseconds(5))
                }
                for (_, consumer) in members { await consumer.flush() }
                group.cancelAll()
            }
            let elapsed = ContinuousClock.now - start
            let claims = stack.claimStatistics
            // The claim round trip alone: sequential claims of new outcomes through the same REST client.
            let rest = try PostgRESTClient(
                configuration: .init(baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.serviceKey))
            var trips: [Duration] = []
            for index in 0..<200 {
                let began = ContinuousClock.now
                _ = try await rest.rpc(
                    "jobsync_claim",
                    arguments: [
                        "p_consumer": .string("latency"),
                        "p_job_id": .string(String(format: "00000000-0000-4000-9000-%012d", index)),
                        "p_holder": .string("bench"), "p_lease_seconds": .number(JSONNumber(30)),
                    ])
                trips.append(ContinuousClock.now - began)
            }
            return FleetCost(
                replicas: replicas, outcomes: count, elapsed: elapsed, claims: claims,
                claimRoundTrip: LatencyPercentiles(trips))
        }
    }

    /// Replica B claims one outcome and dies; replica A, started then, delivers it once B's lease runs out.
    /// Returns the time from B's death to A's delivery.
    static func takeover(lease: Duration) async throws -> Duration {
        try await SupabaseLocal.withRunning(Self.stackConfiguration()) { stack in
            _ = try await stack.backend.insert([
                "id": .string("00000000-0000-4000-8000-000000000001"), "status": .string("completed"),
            ])
            let (clientB, consumerB) = try Self.replica(stack, holder: "replica-b", lease: lease)
            let died: ContinuousClock.Instant = await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await clientB.run() }
                group.addTask { try await consumerB.run() }
                var iterator = consumerB.outcomes().makeAsyncIterator()
                _ = await iterator.next()  // claimed and delivered; never acknowledged
                group.cancelAll()
                return ContinuousClock.now
            }
            let (clientA, consumerA) = try Self.replica(stack, holder: "replica-a", lease: lease)
            return await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await clientA.run() }
                group.addTask { try await consumerA.run() }
                var iterator = consumerA.outcomes().makeAsyncIterator()
                _ = await iterator.next()
                let took = ContinuousClock.now - died
                group.cancelAll()
                return took
            }
        }
    }
}
