// Broadcast from Database (broadcast-from-database.md, cited §Bn): the replay option of a join, the broadcast
// message as received (JSON text push or vsn 2.0.0 kind-4 binary frame, §B4), event matching (§B7) and the bounded
// memory of message ids used to drop replayed duplicates (§B5).

public import JobSyncCore

// MARK: - Replay option (§B3, §B5)

/// `config.broadcast.replay` of a join payload (§B3): replay the newest stored messages since `since`.
package struct BroadcastReplayOption: Hashable, Sendable {
    /// The most messages the server replays per join (§B5: `clamp(limit, 1, 25)`).
    package static let maximumLimit = 25

    /// Milliseconds since the Unix epoch (UTC). Encoded as a JSON integer: the server refuses anything else (§B3).
    package var since: Int
    /// At most this many messages, clamped to `1...25` when encoded; `nil` omits the key (the server uses 25).
    package var limit: Int?

    /// Creates a replay option.
    package init(since: Int, limit: Int? = nil) {
        self.since = since
        self.limit = limit
    }

    /// `{"since":<Int>[,"limit":<1...25>]}`.
    package var jsonValue: JSONValue {
        var object: JSONObject = ["since": .number(JSONNumber(self.since))]
        if let limit = self.limit {
            object["limit"] = .number(JSONNumber(min(max(limit, 1), Self.maximumLimit)))
        }
        return .object(object)
    }
}

// MARK: - Messages (§B4)

/// One message of a broadcast channel: a row written to `realtime.messages` (by `realtime.send` or
/// `realtime.broadcast_changes`, §B1), delivered live or replayed (§B5).
public struct BroadcastMessage: Hashable, Sendable, CustomStringConvertible {
    /// The event name, e.g. `UPDATE` (`realtime.messages.event`).
    public var event: String
    /// The message payload, e.g. `{"operation","schema","table","record","old_record","id"}` for
    /// `broadcast_changes` (§B1.3).
    public var payload: JSONValue
    /// `meta.id`: the stored row's id (a UUID), the key for de-duplication (§B5). `nil` when the server sent none.
    public var id: String?
    /// `meta.replayed`: the message was replayed from storage after a join (§B5) rather than streamed live.
    public var isReplayed: Bool

    /// Creates a message.
    public init(event: String, payload: JSONValue, id: String? = nil, isReplayed: Bool = false) {
        self.event = event
        self.payload = payload
        self.id = id
        self.isReplayed = isReplayed
    }

    /// Decodes the payload of a `broadcast` message, `{"type":"broadcast","event":…,"payload":…,"meta":{…}}` in
    /// any key order, from a JSON text push (live under vsn 1.0.0, replayed under both) or from a kind-4 binary frame as
    /// ``PhoenixSerializer`` decodes it (§B4). `type` is not required; `meta` and its members are optional, and a
    /// `meta.replayed` that is not `true` counts as live.
    /// - Throws: `RealtimeProtocolError` (`.unexpectedType`, `.missingField`) if the payload is not an object, `event`
    ///   is not a string, `payload` is missing, or `meta` / `meta.id` have the wrong type.
    package init(broadcastPayload: JSONValue) throws(RealtimeProtocolError) {
        let context = "broadcast payload"
        let object = try broadcastPayload.requireObject(context)
        if let type = try object.optionalString("type", in: context), type != "broadcast" {
            throw RealtimeProtocolError(.unexpectedType, "\(context): type is '\(type)', expected 'broadcast'")
        }
        self.event = try object.requiredString("event", in: context)
        guard let payload = object["payload"] else {
            throw RealtimeProtocolError(.missingField, "\(context): missing field 'payload'")
        }
        self.payload = payload
        let meta = try object.optionalObject("meta", in: context)
        self.id = try meta?.optionalString("id", in: "\(context) meta")
        self.isReplayed = meta?["replayed"]?.boolValue ?? false
    }

    /// `"<event> <id>"`, with `(replayed)` for replayed messages; never the payload.
    public var description: String {
        "\(self.event) \(self.id ?? "(no id)")\(self.isReplayed ? " (replayed)" : "")"
    }
}

// MARK: - Event filter (§B7)

/// Which broadcast events a subscriber wants: event names compared case-insensitively, as realtime-js does (§B7),
/// or every event when the list contains `*` (or is empty).
package struct BroadcastEventFilter: Hashable, Sendable {
    /// The event names, upper-cased; `nil` means every event.
    package let events: Set<String>?

    /// A filter for these event names (`*` anywhere, or no name at all, selects every event).
    package init(_ events: some Sequence<String>) {
        let names = Set(events.map { $0.uppercased() })
        self.events = names.isEmpty || names.contains("*") ? nil : names
    }

    /// Whether a message with this event name is wanted.
    package func matches(_ event: String) -> Bool {
        guard let events = self.events else { return true }
        return events.contains(event.uppercased())
    }
}

// MARK: - Recent ids (§B5)

/// The last `capacity` message ids seen, oldest forgotten first: constant memory, O(1) per message.
///
/// Each rejoin replays the newest ≤ 25 stored messages again (§B5), so ids seen before the rejoin come back; a
/// capacity well above 25 (1,000 by default) also covers live messages that arrive while replays are still being
/// sent. An id older than the last `capacity` is forgotten and a duplicate of it would be delivered again.
package struct RecentIDs: Sendable, Hashable {
    /// How many ids are remembered.
    package let capacity: Int
    private var ring: [String]
    private var next: Int
    private var members: Set<String>

    /// An empty memory of `capacity` ids (at least 1).
    package init(capacity: Int) {
        self.capacity = max(1, capacity)
        self.ring = []
        self.next = 0
        self.members = []
    }

    /// How many ids are remembered now (≤ ``capacity``).
    package var count: Int { self.ring.count }

    /// Whether `id` is remembered.
    package func contains(_ id: String) -> Bool { self.members.contains(id) }

    /// Remembers `id`; returns `false` if it already was (a duplicate). At capacity the oldest id is forgotten.
    package mutating func insert(_ id: String) -> Bool {
        guard !self.members.contains(id) else { return false }
        if self.ring.count < self.capacity {
            self.ring.append(id)
        } else {
            self.members.remove(self.ring[self.next])
            self.ring[self.next] = id
            self.next = (self.next + 1) % self.capacity
        }
        self.members.insert(id)
        return true
    }
}
