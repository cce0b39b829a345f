import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import SupabaseLocal

/// The server a claims test runs against.
enum ClaimsServer: Sendable {
    /// The default in-memory store, with a wall clock the test moves.
    case inMemory
    /// `PostgresJobsBackend`: the shipped migration's SQL functions on the PostgreSQL tier.
    case postgres
}

/// A running stack for the fleet-claims contract, speaking PostgREST RPC over a real loopback socket.
struct ClaimsHarness: Sendable {
    let stack: SupabaseLocalStack
    /// A consumer name of its own, so that tests can share one PostgreSQL database.
    let consumer = "consumer-" + randomUUIDString()
    /// Makes the server's clock pass an instant (see ``passBeyond(_:)``).
    private let moveClock: (@Sendable (LocalTimestamp) -> Void)?

    /// Runs `body` with a fresh stack on `server`; the PostgreSQL tier's table is dropped afterwards.
    static func withRunning(_ server: ClaimsServer, _ body: @Sendable (ClaimsHarness) async throws -> Void)
        async throws
    {
        var configuration = SupabaseLocalConfiguration()
        switch server {
        case .inMemory:
            let now = NIOLockedValueBox(LocalTimestamp(parsing: "2026-12-02T10:00:00Z")!)
            configuration.wallClock = WallClock { now.withLockedValue { $0 } }
            try await SupabaseLocal.withRunning(configuration) { stack in
                try await body(
                    ClaimsHarness(stack: stack) { instant in
                        now.withLockedValue { $0 = max($0, instant.advanced(by: .microseconds(1))) }
                    })
            }
        case .postgres:
            let backend = try Self.postgresBackend()
            configuration.backend = backend
            try await SupabaseLocal.withRunning(configuration) { stack in
                do {
                    try await body(ClaimsHarness(stack: stack, moveClock: nil))
                    await PostgresTier.dropTable(of: backend)
                } catch {
                    await PostgresTier.dropTable(of: backend)
                    throw error
                }
            }
        }
    }

    /// A PostgreSQL backend on a table of its own (the claims table is shared: consumers keep tests apart).
    static func postgresBackend() throws -> PostgresJobsBackend {
        PostgresJobsBackend(
            configuration: try .init(
                url: try PostgresTier.url(), table: PostgresTier.uniqueTable(.default), dropExistingTable: true))
    }

    private init(stack: SupabaseLocalStack, moveClock: (@Sendable (LocalTimestamp) -> Void)?) {
        self.stack = stack
        self.moveClock = moveClock
    }

    /// Headers of an `authenticated` user's call.
    var userHeaders: [String: String] {
        [
            "apikey": self.stack.anonKey, "Authorization": "Bearer \(self.stack.mintUserToken())",
            "Content-Type": "application/json",
        ]
    }

    /// `POST /rest/v1/rpc/<function>` with a raw body.
    func call(
        _ function: String, body: String?, headers: [String: String]? = nil
    ) async throws -> (status: Int, headers: [String: String], body: String) {
        try await httpRequest(
            self.stack, "POST", "/rest/v1/rpc/\(function)", headers: headers ?? self.userHeaders, body: body)
    }

    /// `POST /rest/v1/rpc/<function>` with named arguments.
    func call(
        _ function: String, _ arguments: [String: LocalJSON], headers: [String: String]? = nil
    ) async throws -> (status: Int, headers: [String: String], body: String) {
        try await self.call(function, body: LocalJSON.object(arguments).encoded(), headers: headers)
    }

    /// `jobsync_claim` for this harness's consumer (or `consumer`); the answer must be a 200 claim state in
    /// PostgreSQL's `jsonb` text.
    func claim(
        _ job: String, _ holder: String, lease: Int, consumer: String? = nil
    ) async throws -> ClaimState {
        let answer = try await self.call(
            "jobsync_claim",
            [
                "p_consumer": .string(consumer ?? self.consumer), "p_job_id": .string(job),
                "p_holder": .string(holder), "p_lease_seconds": .int(lease),
            ])
        try #require(answer.status == 200, "jobsync_claim answered \(answer.status) \(answer.body)")
        #expect(answer.headers["content-type"]?.hasPrefix("application/json") == true)
        let state = try #require(ClaimState(json: try LocalJSON(parsing: answer.body)), "not a claim: \(answer.body)")
        #expect(answer.body == state.json.encoded(style: .jsonb), "the function's jsonb text")
        return state
    }

    /// `jobsync_ack` for this harness's consumer; the answer must be a 200 bare boolean.
    func ack(_ job: String, _ holder: String) async throws -> Bool {
        let answer = try await self.call(
            "jobsync_ack",
            ["p_consumer": .string(self.consumer), "p_job_id": .string(job), "p_holder": .string(holder)])
        try #require(answer.status == 200, "jobsync_ack answered \(answer.status) \(answer.body)")
        #expect(answer.headers["content-type"]?.hasPrefix("application/json") == true)
        return try #require(["true": true, "false": false][answer.body] as Bool?, "not a boolean: \(answer.body)")
    }

    /// Returns once the server's clock is past `instant`: at once in memory (the test moves the wall clock); on
    /// PostgreSQL by reading the database's own clock (a 1-second claim of a clock job of its own: `now()` is its
    /// `lease_until` minus 1 s) until it is past, however slow the machine. The deadline guards against hangs only.
    func passBeyond(_ instant: LocalTimestamp) async throws {
        if let moveClock {
            moveClock(instant)
            return
        }
        let clockJob = randomUUIDString()
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let probe = try await self.claim(clockJob, "clock", lease: 1, consumer: self.consumer + "-clock")
            let serverNow = probe.leaseUntil.advanced(by: .seconds(-1))
            if serverNow > instant { return }
            let remaining = instant.microsecondsSinceEpoch - serverNow.microsecondsSinceEpoch
            try await Task.sleep(for: .microseconds(min(remaining + 10_000, 200_000)))
        }
        Issue.record("the server's clock did not pass \(instant) within 30 s")
    }
}

/// The fleet-claims contract, one check per case, run on every server (the in-memory store must mean what the SQL
/// functions mean; only the PostgreSQL tier runs the SQL).
enum ClaimsContract: String, CaseIterable, Sendable {
    case claimAndRenew, acknowledge, leaseExpiry, badArguments, unknownFunction, authorization, concurrentClaims

    func run(on server: ClaimsServer) async throws {
        try await ClaimsHarness.withRunning(server) { harness in
            switch self {
            case .claimAndRenew: try await Self.claimAndRenew(harness)
            case .acknowledge: try await Self.acknowledge(harness)
            case .leaseExpiry: try await Self.leaseExpiry(harness)
            case .badArguments: try await Self.badArguments(harness)
            case .unknownFunction: try await Self.unknownFunction(harness)
            case .authorization: try await Self.authorization(harness)
            case .concurrentClaims: try await Self.concurrentClaims(harness)
            }
        }
    }

    private static func claimAndRenew(_ harness: ClaimsHarness) async throws {
        let job = randomUUIDString()
        let first = try await harness.claim(job, "replica-1", lease: 60)
        #expect(first.claimed && first.holder == "replica-1" && !first.acked)
        let renewed = try await harness.claim(job, "replica-1", lease: 120)
        #expect(renewed.claimed && renewed.holder == "replica-1")
        #expect(renewed.leaseUntil > first.leaseUntil, "claiming again renews the lease")
        let refused = try await harness.claim(job, "replica-2", lease: 60)
        #expect(
            refused == ClaimState(claimed: false, holder: "replica-1", leaseUntil: renewed.leaseUntil, acked: false))
        let otherConsumer = try await harness.claim(job, "replica-2", lease: 60, consumer: harness.consumer + "-other")
        #expect(otherConsumer.claimed, "claims are per consumer")
        let upperCase = try await harness.claim(job.uppercased(), "replica-3", lease: 60)
        #expect(!upperCase.claimed && upperCase.holder == "replica-1", "a uuid is the same job in any case")
    }

    private static func acknowledge(_ harness: ClaimsHarness) async throws {
        let job = randomUUIDString()
        #expect(try await harness.ack(job, "replica-1") == false, "no claim")
        let claim = try await harness.claim(job, "replica-1", lease: 60)
        #expect(claim.claimed)
        #expect(try await harness.ack(job, "replica-2") == false, "another holder's claim")
        #expect(try await harness.ack(job, "replica-1") == true)
        #expect(try await harness.ack(job, "replica-1") == true, "acknowledging again")
        let afterAck = try await harness.claim(job, "replica-2", lease: 60)
        #expect(afterAck == ClaimState(claimed: false, holder: "replica-1", leaseUntil: claim.leaseUntil, acked: true))
        let ownAfterAck = try await harness.claim(job, "replica-1", lease: 60)
        #expect(!ownAfterAck.claimed && ownAfterAck.acked, "an acknowledged claim is done, also for its holder")
        #expect(try await harness.ack(job, "replica-2") == false)
    }

    private static func leaseExpiry(_ harness: ClaimsHarness) async throws {
        // An expired lease passes to another holder; the old holder can no longer acknowledge.
        let job = randomUUIDString()
        let first = try await harness.claim(job, "replica-1", lease: 1)
        try await harness.passBeyond(first.leaseUntil)
        let takeover = try await harness.claim(job, "replica-2", lease: 60)
        #expect(takeover.claimed && takeover.holder == "replica-2" && !takeover.acked)
        #expect(try await harness.ack(job, "replica-1") == false, "the claim was taken over")
        let back = try await harness.claim(job, "replica-1", lease: 60)
        #expect(!back.claimed && back.holder == "replica-2")
        #expect(try await harness.ack(job, "replica-2") == true)

        // An expired lease nobody took: its holder can still acknowledge, and then nobody can take it.
        let late = randomUUIDString()
        let lateClaim = try await harness.claim(late, "replica-1", lease: 1)
        try await harness.passBeyond(lateClaim.leaseUntil)
        #expect(try await harness.ack(late, "replica-1") == true)
        let afterLateAck = try await harness.claim(late, "replica-2", lease: 60)
        #expect(!afterLateAck.claimed && afterLateAck.acked && afterLateAck.holder == "replica-1")

        // Its holder can also take an expired claim again.
        let again = randomUUIDString()
        let expiring = try await harness.claim(again, "replica-1", lease: 1)
        try await harness.passBeyond(expiring.leaseUntil)
        let retaken = try await harness.claim(again, "replica-1", lease: 60)
        #expect(retaken.claimed && retaken.leaseUntil > expiring.leaseUntil)
    }

    private static func badArguments(_ harness: ClaimsHarness) async throws {
        let job = randomUUIDString()
        let valid: [String: LocalJSON] = [
            "p_consumer": .string(harness.consumer), "p_job_id": .string(job), "p_holder": .string("replica-1"),
            "p_lease_seconds": .int(30),
        ]
        func expectError(
            _ change: [String: LocalJSON], _ status: Int, _ code: String, _ message: String,
            sourceLocation: SourceLocation = #_sourceLocation
        ) async throws {
            let answer = try await harness.call("jobsync_claim", valid.merging(change) { $1 })
            let expected = #"{"code":"\#(code)","details":null,"hint":null,"message":"\#(message)"}"#
            #expect(answer.status == status, "\(change)", sourceLocation: sourceLocation)
            #expect(answer.body == expected, sourceLocation: sourceLocation)
        }
        let lease = "p_lease_seconds must be between 1 and 86400"
        try await expectError(["p_lease_seconds": .int(0)], 400, "22023", lease)
        try await expectError(["p_lease_seconds": .int(86_401)], 400, "22023", lease)
        try await expectError(["p_lease_seconds": .null], 400, "22023", lease)
        try await expectError(["p_consumer": .string("")], 400, "22023", "p_consumer must be a non-empty text")
        try await expectError(["p_holder": .null], 400, "22023", "p_holder must be a non-empty text")
        try await expectError(["p_job_id": .null], 400, "22023", "p_job_id must not be null")
        try await expectError(
            ["p_job_id": .string("nope")], 400, "22P02", #"invalid input syntax for type uuid: \"nope\""#)
        try await expectError(
            ["p_lease_seconds": .string("abc")], 400, "22P02", #"invalid input syntax for type integer: \"abc\""#)
        try await expectError(
            ["p_lease_seconds": .number("1.5")], 400, "22P02", #"invalid input syntax for type integer: \"1.5\""#)
        try await expectError(
            ["p_lease_seconds": .number("99999999999")], 400, "22003",
            #"value \"99999999999\" is out of range for type integer"#)
        // Nothing was claimed by the refused calls; a lease given as a JSON string is read like PostgreSQL reads it.
        let claim = try await harness.call("jobsync_claim", valid.merging(["p_lease_seconds": .string(" 30 ")]) { $1 })
        #expect(claim.status == 200 && claim.body.contains(#""claimed": true"#))

        let ack = try await harness.call(
            "jobsync_ack", ["p_consumer": .string(harness.consumer), "p_job_id": .int(7), "p_holder": .string("r")])
        #expect(ack.status == 400 && ack.body.contains(#""message":"invalid input syntax for type uuid: \"7\"""#))
        let ackHolder = try await harness.call(
            "jobsync_ack", ["p_consumer": .string(harness.consumer), "p_job_id": .string(job), "p_holder": .string("")])
        #expect(ackHolder.status == 400 && ackHolder.body.contains("p_holder must be a non-empty text"))

        let invalid = try await harness.call("jobsync_claim", body: #"{"p_consumer":"#)
        #expect(invalid.status == 400)
        #expect(invalid.body == #"{"code":"PGRST102","details":null,"hint":null,"message":"Empty or invalid json"}"#)

        // PostgREST finds a function by its name and argument names: a missing or an extra argument is a 404.
        var missing = valid
        missing["p_lease_seconds"] = nil
        let notFound = try await harness.call("jobsync_claim", missing)
        #expect(notFound.status == 404)
        let notFoundBody: String =
            #"{"code":"PGRST202","details":"Searched for the function public.jobsync_claim with parameters "#
            + #"p_consumer, p_holder, p_job_id or with a single unnamed json/jsonb parameter, but no matches were "#
            + #"found in the schema cache.","hint":"Perhaps you meant to call the function public.jobsync_claim("#
            + #"p_consumer, p_holder, p_job_id, p_lease_seconds)","message":"Could not find the function "#
            + #"public.jobsync_claim(p_consumer, p_holder, p_job_id) in the schema cache"}"#
        #expect(notFound.body == notFoundBody)
        let extra = try await harness.call("jobsync_ack", valid)
        #expect(extra.status == 404 && extra.body.contains(#""code":"PGRST202""#))
        let empty = try await harness.call("jobsync_ack", body: nil)
        #expect(empty.status == 404)
        #expect(empty.body.contains(#""message":"Could not find the function public.jobsync_ack without parameters"#))
    }

    private static func unknownFunction(_ harness: ClaimsHarness) async throws {
        let unknown = try await harness.call("jobsync_nope", ["p_job_id": .string(randomUUIDString())])
        #expect(unknown.status == 404)
        #expect(unknown.headers["content-type"]?.hasPrefix("application/json") == true)
        let unknownBody: String =
            #"{"code":"PGRST202","details":"Searched for the function public.jobsync_nope with parameter "#
            + #"p_job_id or with a single unnamed json/jsonb parameter, but no matches were found in the schema "#
            + #"cache.","hint":null,"message":"Could not find the function public.jobsync_nope(p_job_id) in the "#
            + #"schema cache"}"#
        #expect(unknown.body == unknownBody)
        var profile = harness.userHeaders
        profile["Content-Profile"] = "app"
        let unexposed = try await harness.call("jobsync_ack", [:], headers: profile)
        #expect(unexposed.status == 406 && unexposed.body.contains(#""code":"PGRST106""#))
    }

    private static func authorization(_ harness: ClaimsHarness) async throws {
        let job = randomUUIDString()
        let arguments: [String: LocalJSON] = [
            "p_consumer": .string(harness.consumer), "p_job_id": .string(job), "p_holder": .string("intruder"),
            "p_lease_seconds": .int(60),
        ]
        let stack = harness.stack
        let noKey = try await harness.call("jobsync_claim", arguments, headers: ["Content-Type": "application/json"])
        #expect(noKey.status == 401 && noKey.body.contains("No API key found in request"))
        let anonymous = try await harness.call("jobsync_claim", arguments, headers: anonHeaders(stack))
        #expect(anonymous.status == 401)
        let anonymousBody: String =
            #"{"code":"42501","details":null,"hint":null,"#
            + #""message":"permission denied for function jobsync_claim"}"#
        #expect(anonymous.body == anonymousBody)
        let otherRole = ["apikey": stack.anonKey, "Authorization": "Bearer " + stack.mintUserToken(role: "reporting")]
        let unresolved = try await harness.call("jobsync_ack", ["p_consumer": .string("c")], headers: otherRole)
        #expect(unresolved.status == 404, "the function is resolved before the privilege is checked")
        let refused = try await harness.call("jobsync_claim", arguments, headers: otherRole)
        #expect(refused.status == 403 && refused.body.contains(#""code":"42501""#))
        let expired = [
            "apikey": stack.anonKey, "Authorization": "Bearer " + stack.mintUserToken(lifetime: .seconds(-1)),
        ]
        let expiredAnswer = try await harness.call("jobsync_claim", arguments, headers: expired)
        #expect(expiredAnswer.status == 401 && expiredAnswer.body.contains(#""code":"PGRST303""#))
        let service = ["apikey": stack.serviceKey, "Authorization": "Bearer \(stack.serviceKey)"]
        let granted = try await harness.call(
            "jobsync_claim", arguments.merging(["p_holder": .string("service")]) { $1 }, headers: service)
        #expect(
            granted.status == 200 && granted.body.contains(#""holder": "service""#), "refused calls claimed nothing")
    }

    private static func concurrentClaims(_ harness: ClaimsHarness) async throws {
        let job = randomUUIDString()
        let answers = try await withThrowingTaskGroup(of: ClaimState.self) { group in
            for replica in 0..<16 {
                group.addTask { try await harness.claim(job, "replica-\(replica)", lease: 60) }
            }
            return try await group.reduce(into: []) { $0.append($1) }
        }
        let winners = answers.filter(\.claimed)
        try #require(winners.count == 1, "exactly one of 16 concurrent claims wins: \(answers)")
        #expect(answers.allSatisfy { $0.holder == winners[0].holder && !$0.acked })

        // An acknowledgement racing takeovers of the expired lease: either the ack wins and nobody takes the claim,
        // or exactly one takeover wins and the ack fails.
        let racing = randomUUIDString()
        let expiring = try await harness.claim(racing, "replica-0", lease: 1)
        try await harness.passBeyond(expiring.leaseUntil)
        let (acked, takeovers) = try await withThrowingTaskGroup(of: (Bool?, ClaimState?).self) { group in
            group.addTask { (try await harness.ack(racing, "replica-0"), nil) }
            for replica in 1..<9 {
                group.addTask { (nil, try await harness.claim(racing, "replica-\(replica)", lease: 60)) }
            }
            var acked: Bool?
            var takeovers: [ClaimState] = []
            for try await (ack, claim) in group {
                if let ack { acked = ack }
                if let claim { takeovers.append(claim) }
            }
            return (try #require(acked as Bool?), takeovers)
        }
        let taken = takeovers.filter(\.claimed)
        if acked {
            #expect(taken.isEmpty, "acknowledged before any takeover: \(takeovers)")
        } else {
            #expect(taken.count == 1, "one takeover before the ack: \(takeovers)")
        }
    }
}

@Suite("Fleet claims over PostgREST RPC, in memory")
struct ClaimsRPCTests {
    @Test("The claims contract", arguments: ClaimsContract.allCases)
    func contract(_ check: ClaimsContract) async throws {
        try await check.run(on: .inMemory)
    }

    @Test("Statistics count granted and refused claims and acks, and failed calls; REST faults apply to RPC")
    func statistics() async throws {
        try await ClaimsHarness.withRunning(.inMemory) { harness in
            let job = randomUUIDString()
            _ = try await harness.claim(job, "replica-1", lease: 60)
            _ = try await harness.claim(job, "replica-2", lease: 60)
            _ = try await harness.ack(job, "replica-2")
            _ = try await harness.ack(job, "replica-1")
            _ = try await harness.call("jobsync_claim", [:])
            harness.stack.faults.failREST(RESTFailure(status: 503))
            let failed = try await harness.call("jobsync_ack", [:])
            #expect(failed.status == 503)
            #expect(harness.stack.faults.statistics.restRequestsFailed == 1)
            var expected = ClaimStatistics()
            expected.claimsGranted = 1
            expected.claimsRefused = 1
            expected.acksAccepted = 1
            expected.acksRefused = 1
            expected.failedCalls = 2
            #expect(harness.stack.claimStatistics == expected)
        }
    }

    @Test("The shipped migration is found from the sources, and its dollar-quoting tags are checked")
    func migrationFile() throws {
        let sql = try #require(ClaimsMigration.text(), "missing \(ClaimsMigration.path)")
        #expect(sql.contains("create or replace function public.jobsync_claim("))
        let statement = try ClaimsMigration.statement(running: sql)
        #expect(statement.hasPrefix("do $jobsync_migration$ begin execute $jobsync_sql$"))
        #expect(throws: SupabaseLocalError.self) { try ClaimsMigration.statement(running: "select $jobsync_sql$") }
    }
}

extension SupabaseLocalPostgresTests {
    /// The same contract on the shipped migration's SQL functions (`JOBSYNC_TEST_POSTGRES_URL`).
    @Suite(
        "Fleet claims over PostgREST RPC, on PostgreSQL",
        .enabled(if: !PostgresTier.skipped, "JOBSYNC_SKIP_POSTGRES_TESTS=1"),
        .timeLimit(.minutes(2))
    )
    struct Claims {
        @Test("The claims contract", arguments: ClaimsContract.allCases)
        func contract(_ check: ClaimsContract) async throws {
            try await check.run(on: .postgres)
        }

        @Test("The migration applies again over itself (idempotent)")
        func migrationIsIdempotent() async throws {
            let backend = try ClaimsHarness.postgresBackend()
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await backend.run() }
                defer { group.cancelAll() }
                _ = try await backend.rows()
                try await backend.applyClaimsMigration()
                try await backend.applyClaimsMigration()
                let state = try await backend.claim(
                    consumer: "idempotent-" + randomUUIDString(), jobID: randomUUIDString(), holder: "h",
                    leaseSeconds: 5)
                #expect(state.claimed)
                await PostgresTier.dropTable(of: backend)
            }
        }
    }
}
