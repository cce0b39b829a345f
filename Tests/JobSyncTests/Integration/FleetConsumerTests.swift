import Foundation
import JobSync
import JobSyncCore
import Logging
import NIOConcurrencyHelpers
import SupabaseLocal
import SupabaseREST
import Testing

/// Three replicas of one consumer name against SupabaseLocal's fleet-claims RPC (`jobsync_claim`, `jobsync_ack`):
/// each outcome handled by exactly one replica; a replica that dies with outcomes claimed and unacknowledged loses
/// them to the others after the lease.
@Suite("Fleet consumers: one handler per outcome, takeover after a replica dies", .timeLimit(.minutes(3)))
struct FleetConsumerTests {
    /// Which replica acknowledged which job, and what the dying replica received but never acknowledged.
    struct Ledger {
        var handledBy: [JobID: [String]] = [:]
        var abandoned: Set<JobID> = []
        var handledCount: Int { self.handledBy.count }
    }

    struct Replica {
        let client: JobSyncClient
        let consumer: OutcomeConsumer

        /// Runs the client and the consumer in `group`.
        func run(in group: inout ThrowingTaskGroup<Void, any Error>) {
            group.addTask { try await self.client.run() }
            group.addTask { try await self.consumer.run() }
        }

        /// Waits until the stack accepted `count` acknowledgements and this replica has as many answers (cancelling
        /// a request whose answer is on its way counts it failed, and the shutdown's flush sends it again). Its
        /// answers are its requests less its failures (claims' failures too: those only make it wait longer).
        func waitForAcknowledgements(_ count: Int, on stack: SupabaseLocalStack) async throws {
            let deadline = ContinuousClock.now + .seconds(60)
            while stack.claimStatistics.acksAccepted < count
                || self.consumer.statistics.acknowledgementRequests - self.consumer.statistics.fleetFailures < count,
                ContinuousClock.now < deadline
            {
                try await Task.sleep(for: .milliseconds(20))
            }
        }

        /// Handles (acknowledges) the first `count` outcomes delivered.
        func acknowledge(_ count: Int) async {
            var handled = 0
            for await outcome in self.consumer.outcomes() {
                self.consumer.acknowledge(outcome)
                handled += 1
                if handled == count { return }
            }
        }
    }

    /// Runs `body` against a SupabaseLocal (not logging) whose table holds `count` completed jobs.
    static func withStack(completed count: Int, _ body: (SupabaseLocalStack) async throws -> Void) async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
        try await SupabaseLocal.withRunning(configuration) { stack in
            for _ in 0..<count {
                _ = try await stack.backend.insert(["status": .string("completed")])
            }
            try await body(stack)
        }
    }

    static func replica(
        stack: SupabaseLocalStack, holder: String, transport: any HTTPTransport = URLSessionHTTPTransport(),
        lease: Duration = .seconds(3)
    ) throws -> Replica {
        let rest = try PostgRESTClient(
            configuration: .init(
                baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.serviceKey, timeout: .seconds(10),
                transport: transport))
        // A backend's key: the claim functions are executable by authenticated and service_role, not anon.
        // REST polling only: the claims, not the feed, are under test.
        let client = try JobSyncClient(
            configuration: .init(
                source: SupabaseTableSource(client: rest), feed: nil, mode: .allJobs,
                initialPollDelay: .milliseconds(100), maximumPollDelay: .milliseconds(300)))
        let consumer = try OutcomeConsumer(
            client: client, persistence: try SQLiteJobPersistence(path: ":memory:"),
            configuration: .init(
                name: "router", start: .beginning, watermarkSkew: .seconds(5),
                fleet: .init(holder: holder, lease: lease)))
        return Replica(client: client, consumer: consumer)
    }

    @Test("three replicas, 60 jobs, one dies holding claims: every outcome handled once; its claims taken over")
    func takeover() async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
        try await SupabaseLocal.withRunning(configuration) { stack in
            var settings = JobSimulator.Configuration()
            settings.pages = 1...4
            settings.queueDelay = .milliseconds(100)
            settings.pageInterval = .milliseconds(100)
            let simulator = JobSimulator(backend: stack.backend, configuration: settings)
            let plans = try await simulator.createJobs(count: 60)
            let ids = Set(try plans.map { try JobID($0.id) })
            let ledger = NIOLockedValueBox(Ledger())
            let replicas = try ["replica-a", "replica-b", "replica-c"].map {
                ($0, try Self.replica(stack: stack, holder: $0))
            }
            /// Runs one replica until its handler stops (replica-b's dies) or the test cancels it.
            @Sendable func serve(_ holder: String, _ replica: Replica) async {
                await withThrowingTaskGroup(of: Void.self) { own in
                    own.addTask { try await replica.client.run() }
                    own.addTask { try await replica.consumer.run() }
                    // replica-b acknowledges 2 outcomes, then takes one more without acknowledging it and dies (its
                    // tasks are cancelled: no acknowledgement, no renewal); it may hold more claims, of outcomes
                    // queued for it.
                    var taken = 0
                    for await outcome in replica.consumer.outcomes() {
                        taken += 1
                        if holder == "replica-b", taken > 2 {
                            ledger.withLockedValue { _ = $0.abandoned.insert(outcome.jobID) }
                            // Its 2 acknowledgements reach the claims table first (a kill between handling an
                            // outcome and that makes one more outcome another replica handles again: at least once).
                            await replica.consumer.flush()
                            break
                        }
                        ledger.withLockedValue { $0.handledBy[outcome.jobID, default: []].append(holder) }
                        replica.consumer.acknowledge(outcome)
                    }
                    own.cancelAll()
                }
            }
            func wait(until done: @Sendable (Ledger) -> Bool) async throws {
                let deadline = ContinuousClock.now + .seconds(90)
                while !ledger.withLockedValue({ done($0) }), ContinuousClock.now < deadline {
                    try await Task.sleep(for: .milliseconds(20))
                }
            }
            try await withThrowingTaskGroup(of: Void.self) { group in
                // replica-b starts alone, so it surely claims outcomes before it dies; the others start after.
                group.addTask { await serve("replica-b", replicas[1].1) }
                group.addTask { try await simulator.drive(plans) }
                try await wait { !$0.abandoned.isEmpty }
                for (holder, replica) in replicas where holder != "replica-b" {
                    group.addTask { await serve(holder, replica) }
                }
                try await wait { $0.handledCount == ids.count }
                group.cancelAll()
            }
            let final = ledger.withLockedValue { $0 }
            #expect(Set(final.handledBy.keys) == ids, "every outcome handled")
            let twice = final.handledBy.filter { $0.value.count > 1 }
            #expect(twice.isEmpty, "outcomes handled by more than one replica: \(twice)")
            // The fault fired: replica-b died holding outcomes, and each was handled by another replica after the
            // lease.
            #expect(final.abandoned.count == 1)
            for id in final.abandoned {
                #expect(final.handledBy[id].map { !$0.contains("replica-b") } == true, "\(id) taken over")
            }
            let claims = stack.claimStatistics
            // At least one accepted acknowledgement per outcome (an acknowledgement whose answer a dying replica
            // never read is sent again, and accepted again: jobsync_ack is idempotent), none refused.
            #expect(claims.acksAccepted >= ids.count)
            #expect(claims.acksRefused == 0)
            #expect(claims.claimsRefused > 0)  // the replicas did compete
            let counted = replicas.map(\.1.consumer.statistics)
            #expect(counted.map(\.acknowledged).reduce(0, +) == ids.count)
            print(
                "fleet: \(ids.count) outcomes, \(claims.claimsGranted) claims granted, \(claims.claimsRefused) refused, "
                    + "\(claims.acksAccepted) acks; requests per outcome "
                    + "\(Double(claims.claimsGranted + claims.claimsRefused + claims.acksAccepted) / Double(ids.count))")
        }
    }

    /// Holds every `jobsync_ack` request (300 ms unless told) before sending it, counting how many are held at once;
    /// fails the first `failing` of them after the hold, without sending them.
    final class SlowAcknowledgements: HTTPTransport {
        let inner = URLSessionHTTPTransport()
        let hold: Duration
        let counts: NIOLockedValueBox<(inFlight: Int, most: Int, failing: Int)>

        init(hold: Duration = .milliseconds(300), failing: Int = 0) {
            self.hold = hold
            self.counts = NIOLockedValueBox((0, 0, failing))
        }

        func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
            guard request.url.hasSuffix("/rpc/jobsync_ack") else { return try await self.inner.send(request) }
            self.counts.withLockedValue {
                $0.inFlight += 1
                $0.most = max($0.most, $0.inFlight)
            }
            defer { self.counts.withLockedValue { $0.inFlight -= 1 } }
            try? await Task.sleep(for: self.hold)
            let fail = self.counts.withLockedValue { counts in
                defer { counts.failing = max(0, counts.failing - 1) }
                return counts.failing > 0
            }
            if fail { throw RESTError(code: .transport, message: "connection reset (injected)") }
            return try await self.inner.send(request)
        }
    }

    /// Acknowledgements go out as many at a time as claims: one at a time, behind a slow server, they fell far
    /// behind (before claims were renewed until acknowledged, other replicas then handled the outcomes again).
    @Test("acknowledgements behind a slow server go out 8 at a time (the claims' limit); only failed ones go again")
    func concurrentAcknowledgements() async throws {
        let count = 40
        try await Self.withStack(completed: count) { stack in
            let transport = SlowAcknowledgements()
            let replica = try Self.replica(stack: stack, holder: "replica-a", transport: transport)
            try await withThrowingTaskGroup(of: Void.self) { group in
                replica.run(in: &group)
                await replica.acknowledge(count)
                try await replica.waitForAcknowledgements(count, on: stack)
                group.cancelAll()
            }
            // Sent again only after a failure (the server's answer lost or late): each extra acceptance is one.
            let claims = stack.claimStatistics
            let failures = replica.consumer.statistics.fleetFailures
            #expect(claims.acksRefused == 0, "\(claims)")
            #expect((count...count + failures).contains(claims.acksAccepted), "\(claims), \(failures) failed requests")
            let most = transport.counts.withLockedValue { $0.most }
            #expect(most == OutcomeConsumer.Fleet().maximumConcurrentClaims, "at most \(most) in flight")
        }
    }

    /// An acknowledgement slower than the lease: the claim is renewed until it is answered, so a replica that starts
    /// meanwhile finds every outcome held, then acknowledged, and handles none again.
    @Test("a claim stays renewed while its acknowledgement is on the way: no takeover by another replica")
    func renewedUntilAcknowledged() async throws {
        // One round of 8 acknowledgements, each held 8 s against a 6 s lease (renewed every 2 s: a margin of 4 s
        // for a renewal late under the sanitizers).
        let count = 8
        try await Self.withStack(completed: count) { stack in
            let slow = try Self.replica(
                stack: stack, holder: "replica-a", transport: SlowAcknowledgements(hold: .seconds(8)),
                lease: .seconds(6))
            let other = try Self.replica(stack: stack, holder: "replica-b", lease: .seconds(6))
            let handledByOther = NIOLockedValueBox(0)
            try await withThrowingTaskGroup(of: Void.self) { group in
                slow.run(in: &group)
                await slow.acknowledge(count)
                // replica-b starts once replica-a has handled everything, with its acknowledgements on the way.
                other.run(in: &group)
                group.addTask {
                    for await outcome in other.consumer.outcomes() {
                        handledByOther.withLockedValue { $0 += 1 }
                        other.consumer.acknowledge(outcome)
                    }
                }
                try await slow.waitForAcknowledgements(count, on: stack)
                group.cancelAll()
            }
            let claims = stack.claimStatistics
            let tried = other.consumer.statistics
            #expect(handledByOther.withLockedValue { $0 } == 0, "replica-b handled outcomes again; \(claims)")
            #expect(claims.acksAccepted >= count && claims.acksRefused == 0, "\(claims)")
            // The fault fired: replica-b did try to claim them while replica-a's acknowledgements were on the way,
            // and replica-a renewed its claims meanwhile (granted more than once each).
            #expect(tried.claimRequests >= count && tried.claimedElsewhere >= count, "\(tried)")
            #expect(claims.claimsGranted > count, "\(claims)")
        }
    }

    @Test("failed acknowledgements are sent again after the retry delay, first, until each is accepted")
    func failedAcknowledgementsRetried() async throws {
        let count = 12
        try await Self.withStack(completed: count) { stack in
            let injected = 5
            let transport = SlowAcknowledgements(hold: .milliseconds(50), failing: injected)
            let replica = try Self.replica(stack: stack, holder: "replica-a", transport: transport)
            try await withThrowingTaskGroup(of: Void.self) { group in
                replica.run(in: &group)
                await replica.acknowledge(count)
                let acknowledged = ContinuousClock.now
                try await replica.waitForAcknowledgements(count, on: stack)
                let took = ContinuousClock.now - acknowledged
                #expect(took >= .seconds(1), "the last accepted after \(took) (retry delay 1 s)")
                group.cancelAll()
            }
            // The injected failures never reached the server: an acknowledgement is accepted again only after another
            // failure (an answer lost or late).
            let claims = stack.claimStatistics
            let statistics = replica.consumer.statistics
            #expect(transport.counts.withLockedValue { $0.failing } == 0, "the failures fired")
            #expect(
                statistics.fleetFailures >= injected && statistics.acknowledgementRequests >= count + injected,
                "\(statistics)")
            let others = statistics.fleetFailures - injected
            #expect(claims.acksRefused == 0, "\(claims)")
            #expect((count...count + others).contains(claims.acksAccepted), "\(claims), \(others) other failures")
        }
    }

    @Test("flush() makes one attempt: with jobsync_ack unreachable it returns, the acknowledgements kept for later")
    func flushWithoutAnswers() async throws {
        let count = 4
        try await Self.withStack(completed: count) { stack in
            let transport = SlowAcknowledgements(hold: .zero, failing: .max)
            let replica = try Self.replica(stack: stack, holder: "replica-a", transport: transport)
            await withThrowingTaskGroup(of: Void.self) { group in
                replica.run(in: &group)
                await replica.acknowledge(count)
                let flushed = ContinuousClock.now
                await replica.consumer.flush()
                let took = ContinuousClock.now - flushed
                #expect(took < .seconds(10), "flush() took \(took)")
                group.cancelAll()
            }
            #expect(stack.claimStatistics.acksAccepted == 0)
            #expect(replica.consumer.statistics.fleetFailures >= 2 * count, "\(replica.consumer.statistics)")
        }
    }
}
