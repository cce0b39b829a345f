public import Foundation
public import Logging
public import ServiceLifecycle
public import SupabaseREST
public import SupabaseRealtime
import WebSocketTransport

/// The whole JobSync stack for one Supabase project: a ``RealtimeClient`` (WebSocket, `postgres_changes` or Broadcast
/// from Database) feeding
/// a ``JobSyncClient`` (store, reconciliation, polling fallback) that reads rows over PostgREST.
///
/// ```swift
/// let sync = try JobSyncClient.supabase(url: URL(string: "https://ref.supabase.co")!, apiKey: key)
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await sync.run() }
///     let job = try await sync.client.waitForCompletion(of: id, timeout: .seconds(600))
/// }
/// ```
///
/// - Important: ``run()`` runs both clients in one task group until cancelled (or a graceful shutdown, as a
///   `Service`). It may be called once.
public final class SupabaseJobSync: Service, Sendable {
    /// The job client: watch jobs, read the store, wait for completions.
    public let client: JobSyncClient
    /// The Realtime client behind ``client``'s feed (status and heartbeat observation).
    public let realtime: RealtimeClient

    /// Bundles two clients; `client`'s feed should be a ``RealtimeJobFeed`` or ``BroadcastJobFeed`` over `realtime`.
    public init(client: JobSyncClient, realtime: RealtimeClient) {
        self.client = client
        self.realtime = realtime
    }

    /// Runs the Realtime client and the job client until cancelled; when either one ends, the other is stopped.
    ///
    /// - Throws: what either `run()` throws (e.g. when called twice).
    public func run() async throws {
        // A graceful shutdown (ServiceGroup, SIGTERM) stops both clients the same way cancellation does.
        try await cancelWhenGracefulShutdown {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await self.realtime.run() }
                group.addTask { try await self.client.run() }
                defer { group.cancelAll() }
                try await group.next()
            }
        }
    }
}

extension JobSyncClient {
    /// Which Realtime feed ``supabase(url:apiKey:accessToken:table:schema:mode:feed:store:maximumResponseBytes:logger:)``
    /// builds.
    public enum Feed: Sendable {
        /// `postgres_changes` (``RealtimeJobFeed``): the table must be in the `supabase_realtime` publication.
        case postgresChanges
        /// Broadcast from Database on private channels (``BroadcastJobFeed``) with these topics: the table needs a
        /// trigger calling `realtime.broadcast_changes` (broadcast-from-database.md §B1.4), `realtime.messages` a
        /// read policy, and `accessToken` a user JWT.
        case broadcast(BroadcastTopics)
    }

    /// Builds the JobSync stack for a Supabase project: Realtime over libwebsockets at
    /// `<url>/realtime/v1/websocket` and PostgREST at `<url>/rest/v1`.
    ///
    /// - Parameters:
    ///   - url: the project URL, e.g. `https://<ref>.supabase.co` (http for a local stack).
    ///   - apiKey: the project API key (anon or service role); never logged.
    ///   - accessToken: the user's JWT provider, asked before every connect, after the server refuses a token
    ///     (Realtime token expiry, REST `JWT expired`), and on a heartbeat shortly before the current token's `exp`
    ///     (every 25 s for a token without `exp`); `nil` uses the API key's role.
    ///   - table: the jobs table (default `jobs`; must have `id`, and `updated_at` for watermark reads).
    ///   - schema: the table's schema (default `public`). Realtime bindings name it, and PostgREST reads ask for it
    ///     with the `Accept-Profile` header, so another schema must be exposed by the project's API settings
    ///     (otherwise every REST read fails with `PGRST106` and is retried with backoff) and its table added to
    ///     the `supabase_realtime` publication.
    ///   - mode: which jobs to keep in sync.
    ///   - feed: the Realtime feed: `postgres_changes` (default) or Broadcast from Database (``Feed/broadcast(_:)``,
    ///     which needs `accessToken` to give a user JWT). Either way the client reconciles over REST after live.
    ///   - store: the store to keep in sync (default: a new in-memory store).
    ///   - maximumResponseBytes: the largest PostgREST response body accepted (default 64 MiB); a larger one is
    ///     cut off as it arrives and that read fails like any other REST failure (retried with backoff).
    ///   - logger: the logger for every layer (trace/debug only; secrets are never logged).
    /// - Throws: ``JobSyncError/Code/invalidConfiguration`` for a bad URL, a missing key, a schema or table name
    ///   that is not a plain identifier, or a response cap below 1 byte.
    public static func supabase(
        url: URL,
        apiKey: String,
        accessToken: (@Sendable () async throws -> String?)? = nil,
        table: String = "jobs",
        schema: String = "public",
        mode: WatchMode = .jobs,
        feed: Feed = .postgresChanges,
        store: JobStore? = nil,
        maximumResponseBytes: Int = HTTPRequest.defaultMaximumBodyBytes,
        logger: Logger = Logger(label: "JobSync", factory: { _ in SwiftLogNoOpLogHandler() })
    ) throws(JobSyncError) -> SupabaseJobSync {
        let source = try SupabaseTableSource.supabase(
            url: url, apiKey: apiKey, accessToken: accessToken, table: table, schema: schema,
            maximumResponseBytes: maximumResponseBytes, logger: logger)
        var realtimeConfiguration: RealtimeClient.Configuration
        do {
            realtimeConfiguration = try RealtimeClient.Configuration(
                projectURL: url, apiKey: apiKey, transport: LWSWebSocketTransport(logger: logger), logger: logger)
        } catch {
            throw JobSyncError(code: .invalidConfiguration, message: error.message)
        }
        realtimeConfiguration.accessToken = accessToken
        realtimeConfiguration.applyJobSyncTimings()
        let realtime: RealtimeClient
        do {
            realtime = try RealtimeClient(configuration: realtimeConfiguration)
        } catch {
            throw JobSyncError(code: .invalidConfiguration, message: error.message)
        }
        let changeFeed: any JobChangeFeed
        switch feed {
        case .postgresChanges:
            changeFeed = RealtimeJobFeed(client: realtime, schema: schema, table: table, logger: logger)
        case .broadcast(let topics):
            changeFeed = BroadcastJobFeed(client: realtime, topics: topics, schema: schema, table: table, logger: logger)
        }
        let client = try JobSyncClient(
            configuration: .init(
                source: source,
                feed: changeFeed,
                mode: mode,
                logger: logger),
            store: store)
        return SupabaseJobSync(client: client, realtime: realtime)
    }
}

extension SupabaseTableSource {
    /// The jobs table of a Supabase project, read over PostgREST at `<url>/rest/v1`: the source that
    /// ``JobSyncClient/supabase(url:apiKey:accessToken:table:schema:mode:feed:store:maximumResponseBytes:logger:)``
    /// builds (its parameters mean the same), for reads without a client, such as `jobwatch status`.
    package static func supabase(
        url: URL, apiKey: String, accessToken: (@Sendable () async throws -> String?)?, table: String, schema: String,
        maximumResponseBytes: Int = HTTPRequest.defaultMaximumBodyBytes, logger: Logger
    ) throws(JobSyncError) -> SupabaseTableSource {
        do {
            try PostgRESTQuery(table: table, schema: schema).validate()
        } catch {
            throw JobSyncError(code: .invalidConfiguration, message: "the jobs table or schema name is not valid")
        }
        var restBase = url.absoluteString
        while restBase.hasSuffix("/") { restBase.removeLast() }
        var restToken: PostgRESTClient.AccessTokenProvider?
        if let accessToken {
            restToken = { _ in try await accessToken() }
        }
        do {
            let rest = try PostgRESTClient(
                configuration: .init(
                    baseURL: restBase + "/rest/v1", apiKey: apiKey, accessToken: restToken,
                    maximumResponseBytes: maximumResponseBytes, logger: logger))
            return SupabaseTableSource(client: rest, table: table, schema: schema)
        } catch {
            throw JobSyncError(code: .invalidConfiguration, message: error.message)
        }
    }
}
