import Foundation
import JobSync
import JobSyncCore
import Logging
import NIOConcurrencyHelpers
import RealtimeProtocol
import SupabaseLocal
import SupabaseREST
import SupabaseRealtime
import Testing
import WebSocketTransport

/// One integration run: SupabaseLocal on 127.0.0.1 (port 0), the real stack (`RealtimeClient` over
/// `LWSWebSocketTransport` + PostgREST over URLSession + `JobSyncClient`), three kinds of subscribers, the job
/// simulator, and a fault scenario. Uses the real `ContinuousClock` (integration tier) with short timings.
struct IntegrationRun {
    /// Settings of one run.
    struct Settings: Sendable {
        var jobs = 200
        var simulator = JobSimulator.Configuration()
        /// Use a user JWT (minted fresh on every call) instead of the anon key, for the token-expiry fault.
        var userTokens = false
        /// How long the client may take to go live before the faults start (a hang guard).
        var liveDeadline: Duration = .seconds(30)
        /// How long subscribers may take to see every outcome once the drive is over (a hang guard, not a
        /// performance assertion).
        var convergenceDeadline: Duration = .seconds(45)
        /// The PostgreSQL URL for the wal2json backend; nil: in-memory backend.
        var postgresURL: String?
        /// The jobs table's schema; the client is configured with it (REST `Accept-Profile`, Realtime bindings).
        var schema = "public"
        /// The client's audit interval while live (with jobs open or not).
        var auditInterval: Duration = .seconds(2)
        /// The client's watermark skew (default as in production, 5 s).
        var watermarkSkew: Duration = .seconds(5)
        /// The `waitForCompletion` timeout of each job's waiter (they all start before the drive).
        var waitTimeout: Duration = .seconds(300)
        /// A label printed with any failure (e.g. the soak seed).
        var label = ""
        /// The Realtime feed. Broadcast runs (the trigger's private topics, §B1.4) use user tokens: the shipped read
        /// policy lets `authenticated` read `jobs` and `jobs:<id>` (§B2), not `anon`.
        var feed: JobSyncClient.Feed = .postgresChanges
        /// Run at the production defaults (JobSync's Realtime timings: 3 s heartbeat, late after 1.5 s, 10 s
        /// timeout; the client's defaults: audits every 5 s while jobs are open and 30 s otherwise, 1…30 s polling,
        /// 5 min deletion sweeps) instead of the short test timings.
        var productionTimings = false

        var isBroadcast: Bool {
            if case .broadcast = self.feed { true } else { false }
        }

        init() {
            self.simulator.pages = 1...10
            self.simulator.queueDelay = .milliseconds(100)
            self.simulator.pageInterval = .milliseconds(250)
            self.simulator.failureRate = 0.2
        }
    }

    /// What a scenario gets: the stack, the planned jobs, and helpers.
    struct Context: Sendable {
        let stack: SupabaseLocalStack
        let plans: [JobSimulator.Plan]
        let sync: SupabaseJobSync
        let deletions: DeletionLog
        /// The user session when the run uses user tokens.
        let session: UserSession?
        let simulator: JobSimulator

        var faults: SupabaseLocalFaults { self.stack.faults }

        /// Expires user tokens (through the session, so that it refreshes like an app would).
        func expireTokens() {
            if let session = self.session { session.expireTokens() } else { self.faults.expireTokens() }
        }

        /// Deletes jobs on the server and records, from each row as it was deleted (not from the scenario's timing),
        /// whether the job had reached a terminal state first: that decides what subscribers must have seen.
        func delete(_ ids: [String]) async throws {
            var early: [JobID] = []
            var finished: [JobID] = []
            for id in ids {
                let row = try await self.stack.backend.delete(primaryKey: .string(id))
                let deleted = try #require(row, "job \(id) was not on the server when the scenario deleted it")
                let status = deleted["status"].flatMap { if case .string(let text) = $0 { text } else { nil } }
                let terminal = try #require(status.map(JobStatus.init(raw:))).isTerminal
                if terminal { finished.append(try JobID(id)) } else { early.append(try JobID(id)) }
            }
            self.deletions.state.withLockedValue {
                $0.early.formUnion(early)
                $0.finished.formUnion(finished)
            }
        }
    }

    /// A fault scenario: `during` runs concurrently with the simulator's drive (the fault is active meanwhile);
    /// `afterDrive` runs once every job is terminal on the server (lift faults that block both transports).
    struct Scenario: Sendable {
        var name: String
        /// Whether the fault did fire, from what SupabaseLocal counted and what the client saw (checked after every
        /// run: a fault test whose fault never fired proves nothing).
        var fired: @Sendable (FaultStatistics, JobSyncClient.Statistics) -> Bool
        var during: @Sendable (Context) async throws -> Void
        var afterDrive: @Sendable (Context) async throws -> Void = { _ in }
        /// Drives the plans (default: all at once with the simulator).
        var drive: (@Sendable (Context) async throws -> Void)?
    }

    static let perJob = "per-job updates"
    static let allJobs = "all-jobs updates"
    static let setJobs = "job-set updates"
    static let streams = [Self.allJobs, Self.setJobs]

    /// Runs a scenario and records every invariant violation as a test failure.
    static func run(_ scenario: Scenario, settings: Settings = Settings()) async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.logger = Logger(label: "SupabaseLocal", factory: { _ in SwiftLogNoOpLogHandler() })
        var table = "jobs"
        var descriptor = TableDescriptor.jobs
        descriptor.schema = settings.schema
        if let url = settings.postgresURL {
            descriptor.name = "jobs_integ_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
            table = descriptor.name
            let backend = PostgresJobsBackend(
                configuration: try .init(
                    url: url, table: descriptor, dropExistingTable: true, broadcast: settings.isBroadcast))
            configuration.backend = backend
        } else if settings.schema != "public" {
            configuration.backend = try InMemoryJobsBackend(table: descriptor)
        }
        try await SupabaseLocal.withRunning(configuration) { stack in
            try await Self.run(scenario, settings: settings, stack: stack, table: table)
            if let backend = stack.backend as? PostgresJobsBackend {
                try? await backend.execute(sql: "drop table if exists \"\(settings.schema)\".\(table) cascade")
            }
        }
    }

    private static func makeSync(
        stack: SupabaseLocalStack, table: String, settings: Settings, session: UserSession?
    ) throws -> SupabaseJobSync {
        // JOBSYNC_INTEGRATION_LOG=1 prints the client stack's debug log (for diagnosis).
        var logger = Logger(label: "JobSync.integration", factory: { _ in SwiftLogNoOpLogHandler() })
        if ProcessInfo.processInfo.environment["JOBSYNC_INTEGRATION_LOG"] == "1" {
            logger = Logger(label: "JobSync.integration", factory: { StreamLogHandler.standardError(label: $0) })
            logger.logLevel = .trace
        }
        var token: (@Sendable () async throws -> String?)?
        if let session {
            token = { @Sendable in session.currentToken() }
        }
        var realtimeConfiguration = RealtimeClient.Configuration(
            endpoint: stack.realtimeURL, apiKey: stack.anonKey, transport: LWSWebSocketTransport(logger: logger),
            logger: logger)
        realtimeConfiguration.accessToken = token
        if settings.productionTimings {
            realtimeConfiguration.applyJobSyncTimings()
        } else {
            realtimeConfiguration.heartbeatInterval = .seconds(1)
            realtimeConfiguration.heartbeatTimeout = .seconds(1)
            realtimeConfiguration.unresponsiveAfter = .milliseconds(400)
            realtimeConfiguration.reconnect = BackoffSchedule(
                steps: [.milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1)])
            realtimeConfiguration.rateLimitedReconnectDelay = .seconds(1)
            realtimeConfiguration.joinTimeout = .seconds(3)
            realtimeConfiguration.rejoin = BackoffSchedule(
                steps: [.milliseconds(100), .milliseconds(250), .milliseconds(500), .seconds(1)])
            realtimeConfiguration.rateLimitedRejoinDelay = .milliseconds(500) ... .seconds(1)
            realtimeConfiguration.connectTimeout = .seconds(2)
        }
        let realtime = try RealtimeClient(configuration: realtimeConfiguration)
        var restToken: PostgRESTClient.AccessTokenProvider?
        if let token { restToken = { _ in try await token() } }
        let rest = try PostgRESTClient(
            configuration: .init(
                baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.anonKey, accessToken: restToken,
                timeout: .seconds(10)))
        var configuration = JobSyncClient.Configuration(
            source: LoggingSource(
                base: SupabaseTableSource(client: rest, table: table, schema: settings.schema), logger: logger),
            feed: Self.feed(settings.feed, realtime: realtime, schema: settings.schema, table: table, logger: logger),
            logger: logger)
        if !settings.productionTimings {
            configuration.initialPollDelay = .milliseconds(200)
            configuration.maximumPollDelay = .seconds(2)
            configuration.auditInterval = settings.auditInterval
            configuration.openAuditInterval = settings.auditInterval
            configuration.deletionSweepInterval = settings.auditInterval * 5  // one audit in 5 by id (production: 10)
            configuration.watermarkSkew = settings.watermarkSkew
            configuration.resubscribeDelay = .milliseconds(200)
        }
        let client = try JobSyncClient(configuration: configuration)
        return SupabaseJobSync(client: client, realtime: realtime)
    }

    private static func feed(
        _ feed: JobSyncClient.Feed, realtime: RealtimeClient, schema: String, table: String, logger: Logger
    ) -> any JobChangeFeed {
        switch feed {
        case .postgresChanges:
            return RealtimeJobFeed(client: realtime, schema: schema, table: table, logger: logger)
        case .broadcast(var topics):
            // The trigger names its topics after the table (tg_table_name): PostgreSQL runs use `jobs_integ_<hex>`.
            if table != "jobs" {
                topics.tableWide = table
                topics.perJob = { table + ":" + $0.rawValue }
            }
            return BroadcastJobFeed(client: realtime, topics: topics, schema: schema, table: table, logger: logger)
        }
    }

    private static func run(_ scenario: Scenario, settings: Settings, stack: SupabaseLocalStack, table: String)
        async throws
    {
        let label = "[\(scenario.name)\(settings.label.isEmpty ? "" : " " + settings.label)]"
        let clock = ContinuousClock()
        let started = clock.now
        var phases: [String] = []
        func phase(_ name: String) { phases.append("\(name) \(started.duration(to: clock.now))") }
        let simulator = JobSimulator(backend: stack.backend, configuration: settings.simulator)
        let plans = try await simulator.createJobs(count: settings.jobs)
        let ids = try plans.map { try JobID($0.id) }
        phase("created")
        let idSet = Set(ids)
        let session = settings.userTokens || settings.isBroadcast ? UserSession(stack: stack) : nil
        let sync = try Self.makeSync(stack: stack, table: table, settings: settings, session: session)
        let client = sync.client
        let recorder = IntegrationRecorder()
        let context = Context(
            stack: stack, plans: plans, sync: sync, deletions: DeletionLog(), session: session,
            simulator: simulator)
        let drive = scenario.drive ?? { context in try await context.simulator.drive(context.plans) }

        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await sync.run() }
            // Subscribers. Stream subscribers signal once registered, so no change can slip before them.
            let (ready, readyContinuation) = AsyncStream<Void>.makeStream()
            group.addTask {
                let updates = client.store.allUpdates()
                var iterator = updates.makeAsyncIterator()
                readyContinuation.yield()
                do {
                    while let event = try await iterator.next() { recorder.record(Self.allJobs, event) }
                } catch {
                    recorder.recordError(Self.allJobs, error)
                }
            }
            group.addTask {
                var iterator = client.updates(forJobs: idSet).makeAsyncIterator()
                readyContinuation.yield()
                do {
                    while let event = try await iterator.next() { recorder.record(Self.setJobs, event) }
                } catch {
                    recorder.recordError(Self.setJobs, error)
                }
            }
            var readiness = ready.makeAsyncIterator()
            for _ in 0..<2 { _ = await readiness.next() }
            for id in ids {
                group.addTask {
                    do {
                        for try await event in client.updates(for: id) { recorder.record(Self.perJob, event) }
                    } catch {
                        recorder.recordError(Self.perJob, error)
                    }
                    recorder.finished(Self.perJob, id)
                }
                group.addTask {
                    let outcome: WaitOutcome
                    do throws(JobSyncError) {
                        let job = try await client.waitForCompletion(of: id, timeout: settings.waitTimeout)
                        outcome = .completed(job.updatedAt, result: job.result?.raw)
                    } catch {
                        switch error.code {
                        case .jobFailed: outcome = .failed(error.jobError)
                        case .jobDeleted: outcome = .deleted
                        default: outcome = .other("\(error)")
                        }
                    }
                    recorder.recordWait(id, outcome)
                }
            }

            // Start from a live, reconciled client: the faults then hit a working system.
            let wentLive = await Self.within(settings.liveDeadline) {
                await client.waitForTransportMode(.live)
            }
            // (The wait also returns if run() ended: only the mode itself says it went live.)
            try #require(
                wentLive && client.transportMode == .live, "\(label) the client never went live before the faults")
            phase("live")

            // Drive every job to a terminal state while the fault is active.
            try await withThrowingTaskGroup(of: Void.self) { phase in
                phase.addTask { try await drive(context) }
                phase.addTask { try await scenario.during(context) }
                try await phase.waitForAll()
            }
            phase("driven")
            try await scenario.afterDrive(context)

            // Every subscriber must learn every outcome.
            let converged = await Self.within(settings.convergenceDeadline) {
                while !Task.isCancelled, !recorder.isComplete(ids: idSet, subscribers: Self.streams) {
                    try? await Task.sleep(for: .milliseconds(50))
                }
            }
            phase("converged")
            let server = try await InvariantChecks.serverJobs(stack.backend)
            let statistics = client.statistics
            let diagnostics =
                "\(label) statistics: \(statistics), mode \(client.transportMode), "
                + "dropped changes \(stack.faults.droppedChangeCount), delivered \(stack.faults.deliveredChangeCount)"
            #expect(
                converged,
                """
                \(label) not every subscriber saw every outcome within \(settings.convergenceDeadline): \
                \(recorder.progress(ids: idSet, subscribers: Self.streams)); \(diagnostics); \
                store vs server: \(InvariantChecks.storeDifferences(store: client.store, server: server, ids: idSet))
                """)

            let faultStatistics = stack.faults.statistics
            #expect(
                scenario.fired(faultStatistics, client.statistics),
                "\(label) the scenario's fault never fired: \(faultStatistics); \(diagnostics)")
            if settings.isBroadcast {
                // The run proves the broadcast feed, not only the REST fallback: the server delivered broadcasts
                // (§B1.4 trigger) and the client received changes over them.
                #expect(
                    faultStatistics.broadcastsDelivered > 0 && client.statistics.changesReceived > 0,
                    "\(label) no change arrived over Broadcast: \(faultStatistics); \(diagnostics)")
            }

            // Let any late duplicate arrive before judging (one audit interval).
            try await Task.sleep(for: .seconds(2))
            let differences = InvariantChecks.storeDifferences(store: client.store, server: server, ids: idSet)
            #expect(differences.isEmpty, "\(label) the store differs from the server: \(differences); \(diagnostics)")

            let (deletedEarly, deletedFinished) = context.deletions.state.withLockedValue { ($0.early, $0.finished) }
            var expected: [JobID: ServerOutcome] = [:]
            for id in ids {
                let job = server[id]
                expected[id] = ServerOutcome(job: job, reachedTerminal: !deletedEarly.contains(id))
                if job == nil, !deletedEarly.contains(id), !deletedFinished.contains(id) {
                    Issue.record("\(label) \(id) vanished from the server without a recorded deletion")
                }
            }
            client.store.close()
            group.cancelAll()
            let problems = InvariantChecks.problems(
                recorder: recorder, expected: expected, subscribers: [Self.allJobs, Self.setJobs, Self.perJob],
                endingAtFinal: [Self.setJobs, Self.perJob])
            #expect(problems.isEmpty, "\(label) invariant violations:\n\(problems.joined(separator: "\n"))")
            phase("checked")
            print("\(label) phases: \(phases.joined(separator: ", "))")
            #expect(
                recorder.subscriberErrors.isEmpty,
                "\(label) subscribers failed: \(recorder.subscriberErrors.prefix(5))")
        }
    }

    /// Runs `body`; returns false if it did not finish within `limit` (it is then cancelled: `body` must react to
    /// cancellation).
    static func within(_ limit: Duration, _ body: @escaping @Sendable () async -> Void) async -> Bool {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await body()
                return true
            }
            group.addTask {
                try? await Task.sleep(for: limit)
                return false
            }
            let first = await group.next() ?? false
            group.cancelAll()
            return first
        }
    }
}

/// A user's session as an app keeps it: one JWT, reused until the server revoked it; then a new one is signed in a
/// later second (tokens issued in the revocation second count as revoked).
final class UserSession: Sendable {
    private let stack: SupabaseLocalStack
    private let state = NIOLockedValueBox<(token: String, issuedAt: Int64)?>(nil)
    private let revokedAt = NIOLockedValueBox<Int64?>(nil)

    init(stack: SupabaseLocalStack) {
        self.stack = stack
    }

    /// Expires every user token on the server (§8.2); the session refreshes its token in the next second.
    func expireTokens() {
        self.revokedAt.withLockedValue { $0 = Int64(Date().timeIntervalSince1970) }
        self.stack.faults.expireTokens()
    }

    /// The current token: the cached one unless an expiry fault revoked it.
    func currentToken() -> String {
        let now = Int64(Date().timeIntervalSince1970)
        let revokedAt = self.revokedAt.withLockedValue { $0 }
        return self.state.withLockedValue { state in
            if let current = state, revokedAt.map({ current.issuedAt > $0 }) ?? true { return current.token }
            if let current = state, let revokedAt, now <= revokedAt { return current.token }  // refresh in progress
            let token = self.stack.mintUserToken(lifetime: .seconds(3600))
            state = (token, now)
            return token
        }
    }
}

/// A job source that logs each request at debug (diagnosis with JOBSYNC_INTEGRATION_LOG=1).
struct LoggingSource: JobSource {
    let base: any JobSource
    let logger: Logger

    var supportsWatermark: Bool { self.base.supportsWatermark }

    func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject] {
        let rows = try await self.base.fetch(ids: ids)
        self.logger.debug("test source: fetch", metadata: ["ids": "\(ids.count)", "rows": "\(rows.count)"])
        return rows
    }

    func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        let rows = try await self.base.fetchUpdated(since: since)
        let newest = rows.compactMap { $0["updated_at"]?.stringValue }.max() ?? "-"
        self.logger.debug(
            "test source: fetchUpdated",
            metadata: ["since": "\(since?.description ?? "-")", "rows": "\(rows.count)", "newest": "\(newest)"])
        return rows
    }

    func fetchVersions(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        let rows = try await self.base.fetchVersions(since: since)
        let newest = rows.compactMap { $0["updated_at"]?.stringValue }.max() ?? "-"
        self.logger.debug(
            "test source: fetchVersions",
            metadata: ["since": "\(since?.description ?? "-")", "rows": "\(rows.count)", "newest": "\(newest)"])
        return rows
    }
}

/// Jobs a scenario deleted on the server: before they finished, or after (retention).
final class DeletionLog: Sendable {
    let state = NIOLockedValueBox<(early: Set<JobID>, finished: Set<JobID>)>(([], []))
}

/// The PostgreSQL tier's URL: from `JOBSYNC_TEST_POSTGRES_URL`; without it the test fails. The tier's suites are
/// skipped (and shown as skipped) with `JOBSYNC_SKIP_POSTGRES_TESTS=1`, never silently. Same contract as
/// SupabaseLocalTests' `PostgresTier`.
enum PostgresIntegrationTier {
    static let skipped = ProcessInfo.processInfo.environment["JOBSYNC_SKIP_POSTGRES_TESTS"] == "1"

    static func url() throws -> String {
        try #require(
            ProcessInfo.processInfo.environment["JOBSYNC_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 },
            """
            JOBSYNC_TEST_POSTGRES_URL is not set, so the PostgreSQL fault-matrix tier cannot run. Start a cluster \
            with `export JOBSYNC_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start)`, or set \
            JOBSYNC_SKIP_POSTGRES_TESTS=1 to skip this tier on purpose.
            """)
    }
}
