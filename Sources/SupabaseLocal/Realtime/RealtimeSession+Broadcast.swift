/// The replay window a join asked for (broadcast-from-database.md §B3, §B5).
struct ReplayRequest: Sendable, Hashable {
    /// `since`, milliseconds since the epoch.
    var sinceMilliseconds: Int64
    /// `limit` as sent (clamped to 1…25 by the query); 25 when absent.
    var limit: Int
}

/// A broadcast read check the driver runs against the backend (§B2), with the replay query of a join (§B5).
struct AuthorizationRequest: Sendable, Hashable {
    /// Why the check runs.
    enum Purpose: Sendable, Hashable {
        /// `phx_join` with `private: true`.
        case join
        /// An `access_token` push on a joined private channel.
        case refresh
    }

    /// The joined topic (`realtime:jobs:42`).
    var topic: String
    /// The sub-topic the policies see (`jobs:42`).
    var subTopic: String
    /// The channel generation the outcome belongs to (stale outcomes are ignored).
    var generation: Int
    /// The JWT's role and claims.
    var reader: BroadcastReader
    /// The replay to run when the read passes (joins only).
    var replay: ReplayRequest?
    /// Join or refresh.
    var purpose: Purpose
}

/// What the driver found for an ``AuthorizationRequest``.
enum AuthorizationOutcome: Sendable, Hashable {
    /// The read passed; the replayed rows (empty without replay).
    case allowed(replayed: [BroadcastRow])
    /// No read policy passed.
    case refused
    /// The read passed but the replay query failed (§B5).
    case replayFailed
}

/// A private join waiting for its read check.
struct PendingJoin: Sendable {
    var channel: RealtimeSession.Channel
    var ref: LocalJSON
    var trailing: [ServerFrame]
    var echo: String
}

/// The broadcast part of a join's `config` (§B3), read raw as the server does.
struct BroadcastJoinOptions: Sendable, Hashable {
    var isPrivate = false
    var replicationReady = false
    var replay: ReplayRequest?

    /// Parses `config`; the failure is the exact join error reason (§B3, §B5).
    static func parse(_ config: LocalJSON) -> Result<BroadcastJoinOptions, JoinRefusal> {
        var options = BroadcastJoinOptions()
        options.isPrivate = config["private"] == .bool(true)
        let broadcast = config["broadcast"] ?? .null
        // §B3: any truthy value counts (everything but null and false), even the string "false".
        if let ready = broadcast["replication_ready"], ready != .null, ready != .bool(false) {
            options.replicationReady = true
        }
        if let replay = broadcast["replay"], replay != .null {
            guard options.isPrivate else {
                return .failure(JoinRefusal("UnableToReplayMessages: Replay is not allowed for public channels"))
            }
            // §B3: `since` must be a JSON integer; no `limit` means 25.
            guard case .number(let sinceText)? = replay["since"], let since = Int64(sinceText) else {
                return .failure(JoinRefusal("UnableToReplayMessages: Replay params are not valid"))
            }
            var limit = 25
            if let rawLimit = replay["limit"], rawLimit != .null {
                guard case .number(let limitText) = rawLimit, let value = Int(limitText) else {
                    return .failure(JoinRefusal("UnableToReplayMessages: Replay params are not valid"))
                }
                limit = value
            }
            options.replay = ReplayRequest(sinceMilliseconds: since, limit: limit)
        }
        return .success(options)
    }
}

/// A join error reason (§4.4).
struct JoinRefusal: Error, Sendable, Hashable {
    var reason: String
    init(_ reason: String) { self.reason = reason }
}

extension RealtimeSession {
    /// The read check's outcome for a private join or a token refresh (§B2, §B5).
    mutating func authorized(
        topic: String, generation: Int, outcome: AuthorizationOutcome, now: LocalTimestamp
    ) -> [Action] {
        if let pending = self.pendingJoins[topic], pending.channel.generation == generation {
            self.pendingJoins.removeValue(forKey: topic)
            func refuse(_ reason: String) -> [Action] {
                let reply = ServerFrame.errorReply(
                    joinRef: pending.channel.joinRef, ref: pending.ref, topic: topic, reason: reason)
                return self.hold([reply] + pending.trailing, after: self.policy.joinErrorDelay, closeSocket: false)
            }
            switch outcome {
            case .allowed(let replayed):
                return self.completeJoin(pending, replayed: replayed, now: now)
            case .refused:
                // §B2: the sub-topic, after the channel error backoff.
                let name = pending.channel.name
                return refuse("Unauthorized: You do not have permissions to read from this Channel topic: \(name)")
            case .replayFailed:
                return refuse("UnableToReplayMessages: Realtime was unable to replay messages")
            }
        }
        guard let channel = self.channels[topic], channel.generation == generation else { return [] }
        switch outcome {
        case .allowed, .replayFailed:
            return []
        case .refused:
            // §B2 "On refresh": the read went from true (the join passed) to false.
            return self.shutdown(
                channel, message: "You no longer have permission to read from this Channel topic: \(channel.name)")
        }
    }

    /// Schedules the replication connection (or its timeout) for a new join (§B3).
    mutating func startReplication(topic: String) -> [Action] {
        guard let channel = self.channels[topic] else { return [] }
        let timer = TimerID.replicationReady(topic: topic, joinGeneration: channel.joinGeneration)
        if let delay = self.policy.replicationReadyDelay, delay < self.policy.replicationReadyTimeout {
            if delay <= .zero { return self.replicationReady(topic: topic, joinGeneration: channel.joinGeneration) }
            return [.schedule(timer, after: delay)]
        }
        // Withheld (or slower than the timeout): only `replication_ready` joins learn about it.
        guard channel.wantsReplicationReady else { return [] }
        return [
            .schedule(
                .replicationTimeout(topic: topic, joinGeneration: channel.joinGeneration),
                after: self.policy.replicationReadyTimeout)
        ]
    }

    /// Live broadcasts start; `replication_ready` joins get the `system` ok once (§B3).
    mutating func replicationReady(topic: String, joinGeneration: Int) -> [Action] {
        guard var channel = self.channels[topic], channel.joinGeneration == joinGeneration, !channel.broadcastLive
        else { return [] }
        channel.broadcastLive = true
        self.channels[topic] = channel
        guard channel.wantsReplicationReady else { return [] }
        return [
            .send(
                ServerFrame.system(
                    joinRef: channel.joinRef, topic: topic, channel: channel.name, extension: "system",
                    message: "Replication connection established", status: "ok"
                ).encoded(self.version))
        ]
    }

    /// The channels a committed row reaches: same sub-topic, same privacy (§B2 "Isolation"), streaming.
    private func receivers(of row: BroadcastRow) -> [Channel] {
        self.order.compactMap { self.channels[$0] }.filter {
            $0.name == row.topic && $0.isPrivate == row.isPrivate && $0.broadcastLive
        }
    }

    /// One live frame per receiving channel, minus rows replayed at that join (§B4, §B5 "Server dedupe").
    func deliverBroadcast(_ row: BroadcastRow) -> [Action] {
        self.receivers(of: row).compactMap { channel in
            channel.replayedIDs.contains(row.id) ? nil : self.broadcastAction(row, channel: channel, replayed: false)
        }
    }

    /// The rate-limit shutdown (§B6): every channel the row would reach gets `Too many messages per second`
    /// and `phx_close`; the row itself is not delivered.
    mutating func rateLimitBroadcast(_ row: BroadcastRow) -> [Action] {
        var actions: [Action] = []
        for channel in self.receivers(of: row) {
            actions += self.shutdown(channel, message: "Too many messages per second")
        }
        return actions
    }

    /// The frame for one row on one channel (§B4): V1 JSON text (binary rows skipped); V2 live rows binary kind 4;
    /// replayed JSON rows a text push with join_ref, replayed binary rows kind 4 with encoding 0.
    func broadcastAction(_ row: BroadcastRow, channel: Channel, replayed: Bool) -> Action? {
        let meta = replayed ? "{\"id\":\(jsonString(row.id)),\"replayed\":true}" : "{\"id\":\(jsonString(row.id))}"
        if let bytes = row.binaryPayload {
            guard self.version == .v2 else { return nil }
            return BroadcastFrames.userBroadcast(
                topic: channel.topic, event: row.event, metadata: meta, encoding: 0, payload: bytes
            ).map(Action.sendBinary)
        }
        if self.version == .v2, !replayed {
            // §B4: the kind-4 payload is the jsonb column's text as stored.
            let payload = (row.payload ?? .null).encoded(style: .jsonb)
            return BroadcastFrames.userBroadcast(
                topic: channel.topic, event: row.event, metadata: meta, encoding: 1, payload: Array(payload.utf8)
            ).map(Action.sendBinary)
        }
        // Text frames carry the payload decoded and re-encoded by the server's JSON encoder (compact, keys sorted;
        // realtime-protocol.md §2.4: clients must not depend on the order).
        let payload = (row.payload ?? .null).encoded()
        let text =
            "{\"event\":\(jsonString(row.event)),\"meta\":\(meta),\"payload\":\(payload),\"type\":\"broadcast\"}"
        let frame = ServerFrame(
            joinRef: replayed ? channel.joinRef : .null, ref: .null, topic: channel.topic, event: "broadcast",
            payload: text)
        return .send(frame.encoded(self.version))
    }
}

/// Binary frame encoders (realtime-protocol.md §2.3, broadcast-from-database.md §B4).
enum BroadcastFrames {
    /// Kind 4 user broadcast: `04 T E M enc`, topic, event, metadata, payload; nil when a field exceeds 255 bytes.
    static func userBroadcast(topic: String, event: String, metadata: String, encoding: UInt8, payload: [UInt8])
        -> [UInt8]?
    {
        let topicBytes = Array(topic.utf8)
        let eventBytes = Array(event.utf8)
        let metadataBytes = Array(metadata.utf8)
        guard topicBytes.count <= 255, eventBytes.count <= 255, metadataBytes.count <= 255 else { return nil }
        var out: [UInt8] = [
            4, UInt8(topicBytes.count), UInt8(eventBytes.count), UInt8(metadataBytes.count), encoding,
        ]
        out += topicBytes
        out += eventBytes
        out += metadataBytes
        out += payload
        return out
    }
}

/// A JSON string literal.
func jsonString(_ text: String) -> String {
    var out = ""
    LocalJSON.writeString(text, to: &out)
    return out
}
