import NIOConcurrencyHelpers

extension InMemoryJobsBackend: BroadcastBackend {
    /// Whether row changes call `realtime.broadcast_changes` as the shipped trigger does (§B1.4; default true).
    public var broadcastTrigger: Bool {
        get { self.state.withLockedValue { $0.broadcastTrigger } }
        set { self.state.withLockedValue { $0.broadcastTrigger = newValue } }
    }

    /// Whether rows of one transaction replay in reverse order, as the server does today (§B5 "Order bug",
    /// `supabase/realtime` #2201; default true).
    public var reproduceReplayOrderBug: Bool {
        get { self.state.withLockedValue { $0.broadcasts.reproduceReplayOrderBug } }
        set { self.state.withLockedValue { $0.broadcasts.reproduceReplayOrderBug = newValue } }
    }

    /// The read policies on `realtime.messages` that private joins are checked against (§B2; default
    /// ``BroadcastReadRule/jobsMigration``).
    public var broadcastReadRule: BroadcastReadRule {
        get { self.state.withLockedValue { $0.broadcastReadRule } }
        set { self.state.withLockedValue { $0.broadcastReadRule = newValue } }
    }

    /// Sets the bounds of the stored messages: rows older than `retention` (by the wall clock) and the oldest
    /// beyond `maxRows` are dropped (defaults: 72 h, §B1.1, and 100,000 rows).
    public func setBroadcastRetention(_ retention: Duration, maxRows: Int) {
        let now = self.clock.now()
        self.state.withLockedValue { state in
            state.broadcasts.retention = retention
            state.broadcasts.maxRows = max(0, maxRows)
            state.broadcasts.prune(now: now)
        }
    }

    /// `realtime.send` in a transaction of its own (§B1.2): stores the row and streams it. Never fails here.
    public func send(payload: LocalJSON, event: String, topic: String, isPrivate: Bool) async throws -> BroadcastRow? {
        let write = BroadcastWrite(payload: payload, event: event, topic: topic, isPrivate: isPrivate)
        return self.sendBroadcastTransaction([write]).first
    }

    /// Writes several messages in one transaction: they share `inserted_at` (the transaction start, §B5 "Order
    /// bug") and stream in call order after the commit. Returns the stored rows.
    @discardableResult
    public func sendBroadcastTransaction(_ writes: [BroadcastWrite]) -> [BroadcastRow] {
        let now = self.clock.now()
        return self.state.withLockedValue { state in
            let rows = writes.map { InMemoryBroadcasts.makeRow($0, insertedAt: now) }
            Self.commit(&state, rows, now: now)
            return rows
        }
    }

    /// Every stored message, in commit order (for tests).
    public func storedBroadcasts() -> [BroadcastRow] {
        self.state.withLockedValue { $0.broadcasts.rows.map(\.row) }
    }

    /// Evaluates ``broadcastReadRule`` for `reader` on `topic` (§B2).
    public func canRead(topic: String, reader: BroadcastReader) async throws -> Bool {
        self.broadcastReadRule.allows(topic: topic, reader: reader)
    }

    /// The replay query with the server's semantics (§B5).
    public func replay(topic: String, isPrivate: Bool, sinceMilliseconds: Int64, limit: Int) async throws
        -> [BroadcastRow]
    {
        let now = self.clock.now()
        return self.state.withLockedValue { state in
            state.broadcasts.prune(now: now)
            return state.broadcasts.replay(
                topic: topic, isPrivate: isPrivate, sinceMilliseconds: sinceMilliseconds, limit: limit, now: now)
        }
    }

    /// A new stream of committed messages, starting with the next commit.
    public func broadcasts() -> AsyncStream<BroadcastRow> {
        let (stream, continuation) = AsyncStream<BroadcastRow>.makeStream()
        let id = self.state.withLockedValue { state in
            let id = state.nextSubscriber
            state.nextSubscriber += 1
            state.broadcastSubscribers[id] = continuation
            return id
        }
        continuation.onTermination = { [weak self] _ in
            self?.state.withLockedValue { _ = $0.broadcastSubscribers.removeValue(forKey: id) }
        }
        return stream
    }

    /// The in-memory backend is its own `realtime.messages`.
    public var broadcastBackend: (any BroadcastBackend)? { self }

    /// Stores committed rows and streams them; called under the lock so commits cannot interleave.
    private static func commit(_ state: inout State, _ rows: [BroadcastRow], now: LocalTimestamp) {
        guard !rows.isEmpty else { return }
        state.broadcasts.append(rows, now: now)
        for row in rows {
            for continuation in state.broadcastSubscribers.values { continuation.yield(row) }
        }
    }

    /// The shipped trigger (§B1.4): `broadcast_changes('<table>:<id>', TG_OP, TG_OP, …)` and the same for the
    /// table-wide topic `<table>`, in the row write's transaction (`inserted_at` = its start).
    func fireTrigger(
        _ state: inout State, kind: TableChange.Kind, new: TableRow?, old: TableRow?, time: LocalTimestamp,
        now: LocalTimestamp
    ) {
        guard state.broadcastTrigger else { return }
        let key = (new ?? old)?[self.table.primaryKey[0].name]
        let keyText = key?.stringValue ?? key?.encoded() ?? "null"
        // §B1.3: operation, schema, table, record (null on DELETE), old_record (null on INSERT); send adds `id`.
        let payload = LocalJSON.object([
            "operation": .string(kind.rawValue),
            "schema": .string(self.table.schema),
            "table": .string(self.table.name),
            "record": new.map(LocalJSON.object) ?? .null,
            "old_record": old.map(LocalJSON.object) ?? .null,
        ])
        let rows = [self.table.name + ":" + keyText, self.table.name].map { topic in
            InMemoryBroadcasts.makeRow(
                BroadcastWrite(payload: payload, event: kind.rawValue, topic: topic, isPrivate: true),
                insertedAt: time)
        }
        Self.commit(&state, rows, now: now)
    }
}
