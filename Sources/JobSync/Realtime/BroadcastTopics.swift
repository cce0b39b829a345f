// Broadcast from Database for the jobs table (broadcast-from-database.md, cited §Bn): the topics a trigger writes
// to, and the pure decisions of ``BroadcastJobFeed``: which topics a binding subscribes to, when the topics of one
// binding count as live together, and how a `realtime.broadcast_changes` payload becomes a ``JobChange``.

import JobSyncCore
import RealtimeProtocol

/// The broadcast topics the jobs table's trigger writes to (§B1.4), named as the trigger names them.
///
/// The default matches §B1.4's example: `jobs:<id>` per job and `jobs` for the whole table.
///
/// ```swift
/// // A trigger calling realtime.broadcast_changes('orders:' || id, …) and ('orders', …):
/// let topics = BroadcastTopics(tableWide: "orders", perJob: { "orders:\($0.rawValue)" })
/// // Only a table-wide topic:
/// let tableOnly = BroadcastTopics(tableWide: "orders", mode: .tableWide)
/// ```
public struct BroadcastTopics: Sendable {
    /// How bindings are mapped to topics.
    public enum Mode: Sendable, Hashable {
        /// One private channel per watched job (``BroadcastTopics/perJob``) while the feed holds at most
        /// ``BroadcastTopics/maximumPerJobTopics`` of them; a binding that does not fit, or a table-wide binding
        /// (all-jobs mode, or more watched ids than filtered channels carry), uses the table-wide topic and is
        /// filtered by id on the client. The trigger must write to both topics.
        case perJob
        /// Every binding uses the table-wide topic (``BroadcastTopics/tableWide``), filtered by id on the client:
        /// one channel, and every change of the table crosses the network. The trigger writes only there.
        case tableWide
    }

    /// The most per-job channels one ``BroadcastJobFeed`` holds: 90 of the 100 channels a connection may join
    /// ([RP] §7.1), leaving room for the table-wide topic and other subscriptions of the same ``RealtimeClient``.
    public static let maximumPerJobTopics = 90

    /// The table-wide topic (default `jobs`), without the `realtime:` prefix.
    public var tableWide: String
    /// The topic of one job (default `jobs:<id>`), without the `realtime:` prefix.
    public var perJob: @Sendable (JobID) -> String
    /// How bindings are mapped to topics (default ``Mode/perJob``).
    public var mode: Mode

    /// Creates a topic scheme.
    /// - Parameters:
    ///   - tableWide: the table-wide topic (default `jobs`).
    ///   - perJob: the topic of one job (default `jobs:<id>`, the id in lower-case UUID form).
    ///   - mode: per-job channels with a table-wide fallback (default), or the table-wide topic only.
    public init(
        tableWide: String = "jobs",
        perJob: @escaping @Sendable (JobID) -> String = { "jobs:" + $0.rawValue },
        mode: Mode = .perJob
    ) {
        self.tableWide = tableWide
        self.perJob = perJob
        self.mode = mode
    }
}

// MARK: - Topic planning (pure)

/// The topics one binding subscribes to, decided without I/O.
///
/// - ``BroadcastTopics/Mode/perJob``: a binding with ids gets one topic per distinct ``BroadcastTopics/perJob`` name
///   when all of them fit into the per-job topics still free in the feed; otherwise (or for a table-wide binding)
///   it gets the table-wide topic.
/// - ``BroadcastTopics/Mode/tableWide``: always the table-wide topic.
///
/// Every topic carries the ids it may deliver (`nil`: every id, for a table-wide binding): the client never merges a
/// job it did not ask this binding for, and a binding that shares the table-wide topic with others does not deliver
/// their jobs a second time.
struct BroadcastTopicPlan: Sendable, Hashable {
    /// One subscription: a topic and the ids delivered from it.
    struct Subscription: Sendable, Hashable {
        /// The sub-topic (no `realtime:` prefix).
        let topic: String
        /// The ids whose changes are delivered; `nil` for all.
        let ids: Set<JobID>?
    }

    /// The subscriptions, per-job topics in the order of the binding's ids.
    let subscriptions: [Subscription]
    /// How many per-job topics the plan holds (0 for the table-wide topic).
    let perJobTopics: Int

    /// Plans the topics of `binding` when `available` per-job topics are free in the feed.
    init(
        binding: JobFeedBinding,
        mode: BroadcastTopics.Mode,
        tableWide: String,
        perJob: (JobID) -> String,
        available: Int
    ) {
        let tableWideSubscription = Subscription(topic: tableWide, ids: binding.ids.map(Set.init))
        guard mode == .perJob, let ids = binding.ids, !ids.isEmpty else {
            self.subscriptions = [tableWideSubscription]
            self.perJobTopics = 0
            return
        }
        // Ids the topic function maps to one name share that topic (a channel is joined once per socket).
        var order: [String] = []
        var idsByTopic: [String: Set<JobID>] = [:]
        for id in ids {
            let topic = perJob(id)
            if idsByTopic[topic] == nil { order.append(topic) }
            idsByTopic[topic, default: []].insert(id)
        }
        guard order.count <= max(0, available) else {
            self.subscriptions = [tableWideSubscription]
            self.perJobTopics = 0
            return
        }
        self.subscriptions = order.map { Subscription(topic: $0, ids: idsByTopic[$0]) }
        self.perJobTopics = order.count
    }
}

// MARK: - Fan-in liveness (pure)

/// When the topics of one binding count as live together: only once every topic reported `live` (joined and
/// replication ready, §B3), and no longer from the moment any one of them is not.
///
/// The binding starts not live (the client assumes so), so only changes are reported: `live` when the last topic
/// becomes live, `notLive` when the first one drops after that.
struct BroadcastFanIn: Sendable, Hashable {
    /// What to report for the binding.
    enum Report: Sendable, Hashable {
        /// Nothing changed for the binding.
        case none
        /// Every topic is live now.
        case live
        /// A topic stopped being live: messages may be missed.
        case notLive
    }

    private let topics: Int
    private var live: Set<Int> = []
    private var reportedLive = false

    /// A fan-in over `topics` topics, numbered `0..<topics`.
    init(topics: Int) {
        self.topics = topics
    }

    /// Topic `index` is live.
    mutating func topicLive(_ index: Int) -> Report {
        self.live.insert(index)
        guard !self.reportedLive, self.live.count == self.topics else { return .none }
        self.reportedLive = true
        return .live
    }

    /// Topic `index` is not live.
    mutating func topicNotLive(_ index: Int) -> Report {
        self.live.remove(index)
        guard self.reportedLive else { return .none }
        self.reportedLive = false
        return .notLive
    }
}

// MARK: - Payload decoding (pure)

/// A `realtime.broadcast_changes` message decoded for the jobs table (§B1.3), or why it is skipped.
enum BroadcastChangeDecoding: Sendable, Hashable {
    /// Why a message is not a change of the jobs table.
    enum Skip: String, Sendable, Hashable {
        /// A row of another schema or table (one topic may carry several tables).
        case otherTable = "other table"
        /// Not a `broadcast_changes` payload: not an object, no INSERT/UPDATE/DELETE operation, a record that is
        /// not an object, or no row id.
        case undecodable
    }

    /// A change of job `id`.
    case change(JobChange, id: JobID)
    /// Skipped.
    case skipped(Skip)

    /// Decodes `message`: the operation from the payload's `operation` (else the event name), case-insensitive; the
    /// row from `record` (INSERT, UPDATE) or `old_record` (DELETE), kept as received (one merge path with
    /// ``RealtimeJobFeed``: the version is the row's `updated_at`). Broadcasts carry no commit timestamp and are
    /// never truncated (a payload over the limit is dropped by the server, §B6).
    init(_ message: BroadcastMessage, schema: String, table: String) {
        guard let payload = message.payload.objectValue else {
            self = .skipped(.undecodable)
            return
        }
        if let rowSchema = payload["schema"]?.stringValue, rowSchema != schema {
            self = .skipped(.otherTable)
            return
        }
        if let rowTable = payload["table"]?.stringValue, rowTable != table {
            self = .skipped(.otherTable)
            return
        }
        let operation = payload["operation"]?.stringValue ?? message.event
        let type: JobChange.ChangeType
        switch operation.uppercased() {
        case "INSERT": type = .insert
        case "UPDATE": type = .update
        case "DELETE": type = .delete
        default:
            self = .skipped(.undecodable)
            return
        }
        guard let record = Self.object(payload["record"]), let oldRecord = Self.object(payload["old_record"]) else {
            self = .skipped(.undecodable)
            return
        }
        let row = type == .delete ? oldRecord : record
        guard let id = Self.jobID(row?["id"]) else {
            self = .skipped(.undecodable)
            return
        }
        // A broadcast carries no commit time. For a DELETE, `old_record` is the whole deleted row (§B1.3 sends OLD,
        // whatever the replica identity), so its `updated_at` is the deleted version: every row state up to it is
        // stale, and a replayed UPDATE of that version arriving after the DELETE cannot bring the job back.
        let deletedVersion = type == .delete ? oldRecord?["updated_at"]?.stringValue.flatMap(JobTimestamp.init) : nil
        self = .change(
            JobChange(
                type: type, record: type == .delete ? nil : record, oldRecord: oldRecord,
                commitTimestamp: deletedVersion),
            id: id)
    }

    /// `.some(nil)` for a missing or null value, `.some(object)` for an object, `nil` for anything else.
    private static func object(_ value: JSONValue?) -> JSONObject?? {
        guard let value, value != .null else { return .some(nil) }
        guard let object = value.objectValue else { return nil }
        return .some(object)
    }

    private static func jobID(_ value: JSONValue?) -> JobID? {
        guard let text = value?.stringValue else { return nil }
        return try? JobID(text)
    }
}
