public import Logging
public import RealtimeProtocol
public import SupabaseRealtime

/// ``JobChangeFeed`` over a Supabase Realtime client: each ``JobFeedBinding`` becomes one
/// `postgres_changes` subscription (a channel of its own) on the jobs table.
///
/// ```swift
/// let realtime = try RealtimeClient(configuration: .init(
///     projectURL: projectURL, apiKey: key, transport: LWSWebSocketTransport(), logger: logger))
/// let feed = RealtimeJobFeed(client: realtime, table: "jobs")
/// let client = try JobSyncClient(configuration: .init(source: tableSource, feed: feed))
/// // run both realtime.run() and client.run(), e.g. with ``SupabaseJobSync``.
/// ```
///
/// Mapping (reference/realtime-protocol.md §4.5, §5):
/// - `live` (the `system` "Subscribed to PostgreSQL" ok) → ``JobFeedEvent/live``;
/// - `notLive` → ``JobFeedEvent/notLive(reason:)``;
/// - a `postgres_changes` row → ``JobFeedEvent/change(_:)``, its records as decoded from the frame (never copied
///   or converted), truncation (§5.4) as ``JobChange/isTruncated``;
/// - a `system` error → logged at debug, then ``JobFeedEvent/notLive(reason:)``: the binding may not work
///   (a refused filter, a channel about to close), so the client falls back to REST until the next `live`.
///
/// - Important: The ``RealtimeClient`` must be running (``RealtimeClient/run()``) for subscriptions to join.
public struct RealtimeJobFeed: JobChangeFeed {
    /// The Realtime client the subscriptions are made on.
    public let client: RealtimeClient
    /// The schema of the jobs table (default `public`).
    public let schema: String
    /// The jobs table (default `jobs`).
    public let table: String
    private let logger: Logger

    /// Creates a feed.
    ///
    /// - Parameters:
    ///   - client: the Realtime client (run it alongside the ``JobSyncClient``).
    ///   - schema: the table's schema.
    ///   - table: the table's name.
    ///   - logger: the logger (debug only).
    public init(
        client: RealtimeClient,
        schema: String = "public",
        table: String = "jobs",
        logger: Logger = Logger(label: "JobSync.realtime", factory: { _ in SwiftLogNoOpLogHandler() })
    ) {
        self.client = client
        self.schema = schema
        self.table = table
        self.logger = logger
    }

    public func subscribe(
        _ binding: JobFeedBinding,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        let subscription = self.client.postgresChanges(
            schema: self.schema, table: self.table, event: .all, filter: binding.filter)
        for try await event in subscription {
            switch event {
            case .live:
                await handler(.live)
            case .notLive(let reason):
                await handler(.notLive(reason: reason.description))
            case .change(let change):
                guard let converted = Self.jobChange(change) else {
                    // An unknown change type (not INSERT/UPDATE/DELETE): no row observation to merge. Skipped; the
                    // next audit or reconciliation reads the rows anyway.
                    self.logger.debug(
                        "realtime change of unknown type skipped",
                        metadata: ["jobsync.type": "\(change.type.rawValue)"])
                    continue
                }
                await handler(.change(converted))
            case .systemError(let message):
                // The message is server text about the binding or channel (no credentials are sent there).
                self.logger.debug("realtime subscription error", metadata: ["jobsync.error": "\(message)"])
                await handler(.notLive(reason: "subscription error: \(message)"))
            }
        }
    }

    /// The ``JobChange`` of a `postgres_changes` row change (§5.2), sharing its records; `nil` for an unknown change
    /// type.
    public static func jobChange(_ change: PostgresChange) -> JobChange? {
        let type: JobChange.ChangeType
        switch change.type {
        case .insert: type = .insert
        case .update: type = .update
        case .delete: type = .delete
        case .unknown: return nil
        }
        return JobChange(
            type: type,
            record: change.record,
            oldRecord: change.oldRecord,
            commitTimestamp: change.commitTimestamp.flatMap { JobTimestamp($0) },
            errors: change.errors?.map(\.text) ?? [],
            isTruncated: change.isTruncated)
    }
}

extension RealtimeClient.Configuration {
    /// Applies the timings JobSync uses for the Realtime client behind a ``JobSyncClient`` (which polls over REST
    /// whenever Realtime is not live):
    ///
    /// - a heartbeat every 3 s, reported late after 1.5 s (``unresponsiveAfter``): a silently stalled socket
    ///   (§13.1) is noticed within about 4.5 s and polled around while the connection is kept; it is torn down
    ///   after the 10 s heartbeat timeout as usual. Heartbeats are ~50-byte WebSocket frames, not REST requests;
    ///   the access token is still asked for at most every 25 s.
    /// - the first reconnect after 50 ms (±20 %), then 1, 2, 5, 10 s: a dropped connection is usually back and
    ///   reconciled before the first poll would have run.
    public mutating func applyJobSyncTimings() {
        self.heartbeatInterval = .seconds(3)
        self.unresponsiveAfter = .milliseconds(1_500)
        self.heartbeatTimeout = .seconds(10)
        self.reconnect = BackoffSchedule(
            steps: [.milliseconds(50), .seconds(1), .seconds(2), .seconds(5), .seconds(10)], jitter: 0.2)
    }
}
