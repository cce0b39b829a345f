public import Logging

/// Settings for a local Supabase stack. Defaults are fast for tests; ``realistic`` mimics hosted timings.
public struct SupabaseLocalConfiguration: Sendable {
    /// Address to bind. Only loopback is intended.
    public var host = "127.0.0.1"
    /// Port to bind; 0 picks a free one (read it back from ``SupabaseLocalStack/port``).
    public var port = 0
    /// The project's JWT secret (HS256). Never printed.
    public var jwtSecret = "supabase-local-jwt-secret-at-least-32-characters"
    /// Lifetime of the generated `anon` and `service_role` keys.
    public var keyLifetime: Duration = .seconds(10 * 365 * 86_400)
    /// The classification service's `api-key` for `GET /classify/{job_id}`.
    public var classifyAPIKey = "local-classify-api-key"
    /// Delay between a join reply and `Subscribed to PostgreSQL` (real: 0–3 s, up to ~8 s cold; §4.5).
    public var systemOkDelay: Duration = .zero
    /// Delay before any join error reply (real: 5 s; §4.4).
    public var joinErrorDelay: Duration = .zero
    /// Delay before a refused handshake is answered (real: 2 s; §1.3).
    public var connectErrorDelay: Duration = .zero
    /// A socket that receives nothing for this long is closed with 1000 (§3).
    public var idleTimeout: Duration = .seconds(60)
    /// Channels per socket before `ChannelRateLimitReached: Too many channels` (§7.1).
    public var maxChannelsPerSocket = 100
    /// Record size above which changes carry only ≤ 64-byte values and `Error 413` (§5.4).
    public var maxRecordBytes = 1_048_576
    /// Largest WebSocket frame accepted (real: 5,000,000 bytes; §2.3).
    public var maxFrameSize = 5_000_000
    /// Upper bound of the periodic token check (§8.2).
    public var tokenCheckInterval: Duration = .seconds(300)
    /// Delay between a join and the replication connection of Broadcast from Database: live broadcasts start
    /// then, and `replication_ready` joins get `Replication connection established` (broadcast-from-database.md
    /// §B3). Default 0; ``realistic`` uses 500 ms (the server's check interval).
    public var replicationReadyDelay: Duration = .zero
    /// After this long without a replication connection, `replication_ready` joins get `Replication connection was
    /// not established in time` and `phx_close` (§B3; the server's `replication_ready_timeout`, 60 s).
    public var replicationReadyTimeout: Duration = .seconds(60)
    /// Rows per REST response at most (§11.1).
    public var maxRows = 1000
    /// The schemas REST serves, as PostgREST's `db-schemas`: the first is used when a request names none, others
    /// are chosen with `Accept-Profile` / `Content-Profile`, anything else is `406 PGRST106`. Nil (the default)
    /// exposes `public` and the table's schema.
    public var exposedSchemas: [String]?
    /// The table store; nil uses a fresh ``InMemoryJobsBackend``.
    public var backend: (any JobsBackend)?
    /// Wall-clock time for timestamps and JWT expiry.
    public var wallClock: WallClock = .system
    /// Clock for every delay and timer.
    public var clock: any Clock<Duration> = ContinuousClock()
    /// Logger (trace/debug only).
    public var logger = Logger(label: "SupabaseLocal")

    /// Default settings: loopback, port 0, no artificial delays.
    public init() {}

    /// Hosted-like timings: `system` ok after 1 s, join errors after 5 s, connect errors after 2 s, replication
    /// connection after 500 ms.
    public static var realistic: SupabaseLocalConfiguration {
        var configuration = SupabaseLocalConfiguration()
        configuration.systemOkDelay = .seconds(1)
        configuration.joinErrorDelay = .seconds(5)
        configuration.connectErrorDelay = .seconds(2)
        configuration.replicationReadyDelay = .milliseconds(500)
        return configuration
    }
}
