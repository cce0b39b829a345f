public import JobSyncCore

/// One row change as the realtime feed delivers it (reference/realtime-protocol.md §5.2).
public struct JobChange: Sendable, Hashable {
    /// The change type.
    public enum ChangeType: String, Sendable, Hashable {
        /// INSERT
        case insert
        /// UPDATE
        case update
        /// DELETE
        case delete
    }

    /// INSERT, UPDATE or DELETE.
    public var type: ChangeType
    /// The new row (`record`); `nil` for DELETE. For UPDATE, keys are "columns present".
    public var record: JSONObject?
    /// The old row (`old_record`); primary key only unless the table is REPLICA IDENTITY FULL.
    public var oldRecord: JSONObject?
    /// `commit_timestamp`, when present.
    public var commitTimestamp: JobTimestamp?
    /// `errors` as sent, e.g. `["Error 413: Payload Too Large"]` (for diagnostics; see ``isTruncated``).
    public var errors: [String]
    /// Whether the server truncated the record (§5.4: values over 64 bytes cut, `Error 413`): merge what it holds
    /// as incomplete and re-fetch the row.
    public var isTruncated: Bool

    /// Creates a change.
    public init(
        type: ChangeType,
        record: JSONObject?,
        oldRecord: JSONObject? = nil,
        commitTimestamp: JobTimestamp? = nil,
        errors: [String] = [],
        isTruncated: Bool = false
    ) {
        self.type = type
        self.record = record
        self.oldRecord = oldRecord
        self.commitTimestamp = commitTimestamp
        self.errors = errors
        self.isTruncated = isTruncated
    }
}

/// What a realtime feed reports for one subscription.
public enum JobFeedEvent: Sendable, Hashable {
    /// The subscription is live (the `system` "Subscribed to PostgreSQL" ok arrived): changes from now on are
    /// delivered. Expected again after every rejoin.
    case live
    /// The subscription is not live (socket down, channel errored, rejoining). Changes may be missed.
    case notLive(reason: String)
    /// A row change.
    case change(JobChange)
}

/// One `postgres_changes` binding on the jobs table: an `id=in.(…)` filter of at most 100 ids, or table-wide.
public struct JobFeedBinding: Sendable, Hashable {
    /// The ids of an `id=in.(…)` filter; `nil` for a table-wide binding.
    public var ids: [JobID]?

    /// Creates a binding.
    public init(ids: [JobID]?) {
        self.ids = ids
    }

    /// The Realtime filter text: `id=in.(a,b,…)`, or `nil` for table-wide.
    public var filter: String? {
        self.ids.map { "id=in.(" + $0.map(\.rawValue).joined(separator: ",") + ")" }
    }
}

/// What ``JobSyncClient`` tells a feed about its store when it subscribes, for feeds that can catch up by
/// themselves (``BroadcastJobFeed`` replays stored messages since the watermark at every join).
public struct JobFeedContext: Sendable {
    /// The point from which the store may be missing changes: the store's watermark (the newest `updated_at` it
    /// holds) minus the client's ``JobSyncClient/Configuration/watermarkSkew``; `nil` while the store has none.
    ///
    /// A feed may ask at every (re)join, so the value follows the store. It reads a lock-protected value and returns
    /// at once.
    public var watermark: @Sendable () -> JobTimestamp?

    /// Creates a context.
    /// - Parameter watermark: where the store may be missing changes, asked at every (re)join; `nil` for none.
    public init(watermark: @escaping @Sendable () -> JobTimestamp? = { nil }) {
        self.watermark = watermark
    }
}

/// The realtime side of ``JobSyncClient``: row changes of the jobs table.
///
/// Implemented by ``RealtimeJobFeed`` (`postgres_changes`) and ``BroadcastJobFeed`` (Broadcast from Database); tests
/// use fakes.
///
/// The client calls ``subscribe(_:context:handler:)``. A feed that needs no context implements only
/// ``subscribe(_:handler:)``: the default ``subscribe(_:context:handler:)`` calls it.
public protocol JobChangeFeed: Sendable {
    /// Subscribes to changes with one binding (one channel) and calls `handler` for each event, in order, until
    /// the calling task is cancelled.
    ///
    /// - Important: Must report ``JobFeedEvent/live`` only after the server confirmed the subscription, and
    ///   ``JobFeedEvent/notLive(reason:)`` whenever changes may be missed. Returning or throwing ends the
    ///   subscription; the client then subscribes again after a backoff.
    func subscribe(
        _ binding: JobFeedBinding,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws

    /// Subscribes as ``subscribe(_:handler:)`` does, with what the client knows about its store (the watermark).
    ///
    /// The default implementation ignores `context` and calls ``subscribe(_:handler:)``.
    func subscribe(
        _ binding: JobFeedBinding,
        context: JobFeedContext,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws
}

extension JobChangeFeed {
    /// Ignores `context` and calls ``subscribe(_:handler:)``.
    public func subscribe(
        _ binding: JobFeedBinding,
        context: JobFeedContext,
        handler: @escaping @Sendable (JobFeedEvent) async -> Void
    ) async throws {
        try await self.subscribe(binding, handler: handler)
    }
}

/// The REST side of ``JobSyncClient``: where job rows are read.
public protocol JobSource: Sendable {
    /// Whether ``fetchUpdated(since:)`` is supported (a table with `updated_at`).
    var supportsWatermark: Bool { get }

    /// The most rows one ``fetchUpdated(since:)`` returns (a memory bound); a read that returns that many is
    /// continued by the next catch-up from its newest row.
    var maximumRowsPerRead: Int { get }

    /// Fetches the rows of `ids`. Ids without a row are simply absent from the result; a row for an id not asked
    /// for must be an error (a server ignoring the filter), never returned: absent ids count as deleted.
    func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject]

    /// Fetches the rows with `updated_at >= since` (all rows when `nil`), oldest first in `updated_at, id` order,
    /// at most ``maximumRowsPerRead``.
    func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject]

    /// Fetches the versions of the rows with `updated_at >= since`: objects holding at least `id` and `updated_at`,
    /// in the order and with the bound of ``fetchUpdated(since:)``. The client's audit compares them with its store
    /// and reads in full (``fetch(ids:)``) only the rows it has older, so that a quiet table costs one small
    /// request per audit.
    ///
    /// The default implementation returns ``fetchUpdated(since:)``'s full rows (correct, not cheaper);
    /// ``SupabaseTableSource`` asks for `select=id,updated_at`.
    func fetchVersions(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject]
}

extension JobSource {
    /// No bound by default.
    public var maximumRowsPerRead: Int { .max }

    /// The full rows of ``fetchUpdated(since:)``.
    public func fetchVersions(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        try await self.fetchUpdated(since: since)
    }
}
