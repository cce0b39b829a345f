import Foundation
import JobSync
import SupabaseLocal
import SupabaseREST
import Testing

/// Jobs tables outside `public` (PostgREST `Accept-Profile`, Realtime bindings naming the schema) and REST bodies
/// over the response cap, through the whole stack (issue #10).
enum SchemaScenarios {
    /// Sockets drop twice while jobs run: outcomes come over Realtime and from the REST catch-ups after each
    /// reconnect, all read from the `app` schema.
    static let realtimeAndCatchUp = IntegrationRun.Scenario(
        name: "schema app: Realtime and catch-up",
        fired: { faults, client in
            faults.changesDelivered > 0 && client.changesReceived > 0 && faults.socketsDropped >= 1
                && client.reconciliations > 1
        }
    ) { context in
        try await FaultScenarios.every(.milliseconds(500), times: 2) { context.faults.dropAllConnections(code: 1000) }
    }

    /// The socket drops and handshakes are refused for 10 s: every outcome comes from REST polling of `app`.
    static let pollingOnly = IntegrationRun.Scenario(
        name: "schema app: polling only",
        fired: { faults, client in faults.handshakesRefused >= 1 && client.polls > 0 }
    ) { context in
        try await Task.sleep(for: .milliseconds(200))
        context.faults.refuseConnections(ConnectionRefusal(status: 503), for: .seconds(10))
        context.faults.dropAllConnections(code: nil)
    }
}

extension JobSyncIntegration {
    @Suite("A jobs table in schema app (in-memory SupabaseLocal)")
    struct SchemaTests {
        private var settings: IntegrationRun.Settings {
            var settings = IntegrationRun.Settings()
            settings.schema = "app"
            settings.label = "schema app"
            return settings
        }

        @Test("every outcome arrives over Realtime and REST catch-up from schema app")
        func realtimeAndCatchUp() async throws {
            try await IntegrationRun.run(SchemaScenarios.realtimeAndCatchUp, settings: self.settings)
        }

        @Test("every outcome arrives by REST polling of schema app while the socket is refused")
        func pollingOnly() async throws {
            try await IntegrationRun.run(SchemaScenarios.pollingOnly, settings: self.settings)
        }

        @Test("an unexposed schema is a typed REST error (406 PGRST106); the sync loop retries it, no crash")
        func unknownSchema() async throws {
            var configuration = SupabaseLocalConfiguration()
            var table = TableDescriptor.jobs
            table.schema = "app"
            configuration.backend = try InMemoryJobsBackend(table: table)
            try await SupabaseLocal.withRunning(configuration) { stack in
                let rest = try PostgRESTClient(
                    configuration: .init(baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.anonKey))
                let id = try JobID("2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f")
                do throws(JobSyncError) {
                    _ = try await SupabaseTableSource(client: rest, schema: "nope").fetch(ids: [id])
                    Issue.record("an unexposed schema was read")
                } catch {
                    #expect(error.code == .rest)
                    #expect(error.restError?.httpStatus == 406)
                    #expect(error.restError?.serverCode == "PGRST106")
                    #expect(error.restError?.hint == "Only the following schemas are exposed: public, app")
                }
                // The right schema reads the table; `public` (no profile) does not have it.
                #expect(try await SupabaseTableSource(client: rest, schema: "app").fetch(ids: [id]).isEmpty)
                await #expect(throws: JobSyncError.self) {
                    _ = try await SupabaseTableSource(client: rest).fetch(ids: [id])
                }

                // Every read fails: the fetch of the watched id and each catch-up, all retried.
                let sync = try JobSyncClient.supabase(url: stack.baseURL, apiKey: stack.anonKey, schema: "nope")
                try await Self.runUntil(sync, watching: id) { $0.restFailures >= 2 && $0.fetchFailures >= 2 }
            }
        }

        /// Runs `sync` watching `id` until `condition` holds for its statistics (a 30 s hang guard). The id is
        /// watched before the run starts, so that the run begins with it (not, by a race, with nothing watched).
        static func runUntil(
            _ sync: SupabaseJobSync, watching id: JobID,
            _ condition: @escaping @Sendable (JobSyncClient.Statistics) -> Bool
        ) async throws {
            sync.client.watch([id])
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await sync.run() }
                let clock = ContinuousClock()
                let deadline = clock.now + .seconds(30)
                while !condition(sync.client.statistics), clock.now < deadline {
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(condition(sync.client.statistics), "statistics: \(sync.client.statistics)")
                group.cancelAll()
                try? await group.waitForAll()
            }
        }
    }

    @Suite("REST bodies over the response cap through the sync loop")
    struct ResponseCapTests {
        @Test("an endless body is a REST failure like any other: retried with backoff, then the outcome arrives")
        func endlessBodyIsRetried() async throws {
            try await SupabaseLocal.withRunning { stack in
                let row = try await stack.backend.insert(["status": .string("completed")])
                let id = try JobID(#require(row["id"]?.stringValue))
                stack.faults.sendOversizedRESTBodies(.endless)
                let sync = try JobSyncClient.supabase(
                    url: stack.baseURL, apiKey: stack.anonKey, maximumResponseBytes: 16 << 10)
                // Watched before the run starts (see `runUntil`).
                sync.client.watch([id])
                try await withThrowingTaskGroup(of: Void.self) { group in
                    group.addTask { try await sync.run() }
                    let clock = ContinuousClock()
                    let deadline = clock.now + .seconds(30)
                    while sync.client.statistics.restFailures < 2, clock.now < deadline {
                        try await Task.sleep(for: .milliseconds(50))
                    }
                    // On failure, what the server sent tells a hung transport (nothing abandoned) from a slow one.
                    #expect(
                        sync.client.statistics.restFailures >= 2,
                        "\(sync.client.statistics); server: \(stack.faults.statistics)")
                    #expect(sync.client.store.job(id) == nil)
                    #expect(stack.faults.statistics.oversizedRESTBodies >= 2)
                    stack.faults.sendOversizedRESTBodies(nil)
                    let job = try await sync.client.waitForCompletion(of: id, timeout: .seconds(30))
                    #expect(job.status == .completed)
                    group.cancelAll()
                    try? await group.waitForAll()
                }
            }
        }
    }
}

extension JobSyncIntegration.PostgresFaultMatrixTests {
    @Test("§9.2 clean close on PostgreSQL, jobs table in schema app")
    func schemaOnPostgres() async throws {
        var settings = IntegrationRun.Settings()
        settings.postgresURL = try PostgresIntegrationTier.url()
        settings.schema = "app"
        settings.label = "postgres, schema app"
        try await IntegrationRun.run(SchemaScenarios.realtimeAndCatchUp, settings: settings)
    }
}
