/// How heartbeats are answered (a fault knob).
public enum HeartbeatReplyMode: Sendable, Hashable {
    /// Reply at once (§3).
    case normal
    /// Reply after the given delay.
    case delayed(Duration)
    /// Never reply.
    case withheld
}

/// A forced join refusal (§4.4), used by fault injection.
public struct ForcedJoinError: Sendable, Hashable {
    /// The exact `reason`, e.g. `"RealtimeRestarting: Realtime is restarting, please standby"`.
    public var reason: String
    /// How long to wait before replying (the real server waits 5 s).
    public var delay: Duration

    /// Creates a forced join error.
    public init(reason: String, delay: Duration = .zero) {
        self.reason = reason
        self.delay = delay
    }
}

/// What the session machine needs to know about the server's current settings and faults.
struct SessionPolicy: Sendable, Equatable {
    /// Delay before `Subscribed to PostgreSQL`; nil withholds it.
    var systemOkDelay: Duration? = .zero
    var joinErrorDelay: Duration = .zero
    var forcedJoinError: ForcedJoinError?
    var maxChannels = 100
    var heartbeat: HeartbeatReplyMode = .normal
    var tokenCheckInterval: Duration = .seconds(300)
    /// Delay before the replication connection exists for a new join (§B3); nil withholds it.
    var replicationReadyDelay: Duration? = .zero
    /// After this long without a replication connection, `replication_ready` joins get an error and close (§B3).
    var replicationReadyTimeout: Duration = .seconds(60)
}

/// The per-socket Realtime protocol logic: frames and timer firings in, frames and timer requests out.
/// No I/O, no clock reads: the driver passes wall time in and executes the actions.
struct RealtimeSession {
    enum TimerID: Hashable, Sendable {
        /// Create the postgres subscription for a join or token refresh (then `system` ok/error).
        case subscribe(topic: String, generation: Int)
        /// Periodic token expiry check (§8.2).
        case tokenCheck(topic: String, generation: Int)
        /// Frames held back (delayed join errors, delayed heartbeat replies).
        case deferred(Int)
        /// The replication connection exists for the channel joined at `joinGeneration` (§B3).
        case replicationReady(topic: String, joinGeneration: Int)
        /// `replication_ready_timeout` passed for the channel joined at `joinGeneration` (§B3).
        case replicationTimeout(topic: String, joinGeneration: Int)
    }

    enum Action: Equatable, Sendable {
        case send(String)
        /// A binary frame (vsn 2.0.0 kind 4, §B4).
        case sendBinary([UInt8])
        /// Check the broadcast read policy (and run the replay query) off the session; feed the outcome to
        /// ``authorized(topic:generation:outcome:now:)``.
        case authorize(AuthorizationRequest)
        case schedule(TimerID, after: Duration)
        case close(code: UInt16, reason: String)
    }

    struct Channel {
        var topic: String
        var name: String
        var joinRef: LocalJSON
        var bindings: [Binding]
        var resolved: [ResolvedBinding] = []
        var live = false
        var generation: Int
        var token: String?
        var expiresAt: Int64
        /// `config.private` (§B2).
        var isPrivate = false
        /// `config.broadcast.replication_ready` was truthy (§B3).
        var wantsReplicationReady = false
        /// The generation of the join itself (refreshes bump ``generation`` only).
        var joinGeneration = 0
        /// Whether live broadcasts stream to this channel (the replication connection exists, §B3).
        var broadcastLive = false
        /// Ids replayed at this join; their live copies are dropped (§B5 "Server dedupe").
        var replayedIDs: Set<String> = []
    }

    let version: RealtimeVersion
    let table: TableDescriptor
    var verifier: TokenVerifier
    let socketToken: String?
    var policy = SessionPolicy()
    var channels: [String: Channel] = [:]
    private(set) var order: [String] = []
    private var generation = 0
    private var deferred: [Int: ([ServerFrame], closeSocket: Bool)] = [:]
    private var nextDeferred = 0
    /// Private joins waiting for their read check (§B2), by topic.
    var pendingJoins: [String: PendingJoin] = [:]

    init(version: RealtimeVersion, table: TableDescriptor, verifier: TokenVerifier, socketToken: String?) {
        self.version = version
        self.table = table
        self.verifier = verifier
        self.socketToken = socketToken
    }

    /// Number of joined channels.
    var channelCount: Int { self.channels.count }

    // MARK: Inbound text frames

    mutating func receive(text: String, now: LocalTimestamp) -> [Action] {
        // Malformed frames are dropped and the socket kept (§2.2).
        guard let frame = ClientFrame.decode(text, version: self.version) else { return [] }
        if frame.topic == "phoenix" {
            guard frame.event == "heartbeat" else { return [] }
            let reply = ServerFrame.reply(
                joinRef: .null, ref: frame.ref, topic: "phoenix", status: "ok", response: "{}")
            switch self.policy.heartbeat {
            case .normal: return [.send(reply.encoded(self.version))]
            case .withheld: return []
            case .delayed(let delay): return self.hold([reply], after: delay, closeSocket: false)
            }
        }
        switch frame.event {
        case "phx_join":
            return self.join(frame, now: now)
        case "phx_leave":
            return self.leave(frame)
        default:
            guard let channel = self.channels[frame.topic] else {
                // §4.1, §15.2: pushes to topics that are not joined get `unmatched topic`, join_ref null.
                return [
                    .send(
                        ServerFrame.errorReply(
                            joinRef: .null, ref: frame.ref, topic: frame.topic,
                            reason: "unmatched topic"
                        ).encoded(self.version))
                ]
            }
            // §15.1: a push carrying another join's ref is ignored.
            if !frame.joinRef.isNull, frame.joinRef != channel.joinRef { return [] }
            if frame.event == "access_token" { return self.accessToken(frame, channel: channel, now: now) }
            return []
        }
    }

    mutating func hold(_ frames: [ServerFrame], after delay: Duration, closeSocket: Bool) -> [Action] {
        if delay <= .zero {
            var actions = frames.map { Action.send($0.encoded(self.version)) }
            if closeSocket { actions.append(.close(code: 1000, reason: "")) }
            return actions
        }
        let id = self.nextDeferred
        self.nextDeferred += 1
        self.deferred[id] = (frames, closeSocket)
        return [.schedule(.deferred(id), after: delay)]
    }

    private mutating func join(_ frame: ClientFrame, now: LocalTimestamp) -> [Action] {
        guard frame.topic.hasPrefix("realtime:") else {
            return [
                .send(
                    ServerFrame.errorReply(
                        joinRef: .null, ref: frame.ref, topic: frame.topic,
                        reason: "unmatched topic"
                    ).encoded(self.version))
            ]
        }
        let name = String(frame.topic.dropFirst("realtime:".count))
        // Duplicate join: the old channel goes away; its phx_close follows the new reply (§15.3).
        var trailing: [ServerFrame] = []
        // A private join still waiting for its read check is superseded (its outcome will be ignored).
        self.pendingJoins.removeValue(forKey: frame.topic)
        if let old = self.channels.removeValue(forKey: frame.topic) {
            self.order.removeAll { $0 == frame.topic }
            trailing.append(.channelEnd("phx_close", joinRef: old.joinRef, topic: frame.topic))
        }
        func refuse(_ reason: String, after delay: Duration, closeSocket: Bool = false) -> [Action] {
            let reply = ServerFrame.errorReply(
                joinRef: frame.joinRef, ref: frame.ref, topic: frame.topic, reason: reason)
            return self.hold([reply] + trailing, after: delay, closeSocket: closeSocket)
        }
        if name.isEmpty {
            return refuse("TopicNameRequired: You must provide a topic name", after: self.policy.joinErrorDelay)
        }
        if let forced = self.policy.forcedJoinError {
            // These two also drop the whole socket on the real server (§4.4).
            let disconnects =
                forced.reason.hasPrefix("ClientJoinRateLimitReached") || forced.reason.hasPrefix("TenantNotFound")
            return refuse(forced.reason, after: forced.delay, closeSocket: disconnects)
        }
        if self.channels.count >= self.policy.maxChannels {
            return refuse("ChannelRateLimitReached: Too many channels", after: self.policy.joinErrorDelay)
        }
        var token = self.socketToken
        for key in ["access_token", "user_token"] {
            if let given = frame.payload[key]?.stringValue, !given.hasPrefix("sb_") {
                token = given
                break
            }
        }
        let claims: JWTClaims
        switch self.verifier.verify(token, now: now) {
        case .failure(let failure):
            return refuse(JWTTexts.joinReason(failure), after: self.policy.joinErrorDelay)
        case .success(let verified):
            claims = verified
        }
        let config = frame.payload["config"] ?? .null
        let rawBindings = config["postgres_changes"]?.arrayValue ?? []
        let bindings = rawBindings.compactMap { $0.objectValue }.map(Binding.init(raw:))
        let broadcastOptions: BroadcastJoinOptions
        switch BroadcastJoinOptions.parse(config) {
        case .failure(let refusal):
            return refuse(refusal.reason, after: self.policy.joinErrorDelay)
        case .success(let options):
            broadcastOptions = options
        }
        self.generation += 1
        var channel = Channel(
            topic: frame.topic, name: name, joinRef: frame.joinRef, bindings: bindings,
            generation: self.generation, token: token, expiresAt: claims.expiresAt
        )
        channel.isPrivate = broadcastOptions.isPrivate
        channel.wantsReplicationReady = broadcastOptions.replicationReady
        channel.joinGeneration = self.generation
        let echo = "{\"postgres_changes\":[" + bindings.map(\.echoJSON).joined(separator: ",") + "]}"
        let pending = PendingJoin(channel: channel, ref: frame.ref, trailing: trailing, echo: echo)
        guard broadcastOptions.isPrivate else {
            return self.completeJoin(pending, replayed: [], now: now)
        }
        // §B2: private joins wait for the read check (and the replay query, §B5) before any reply.
        self.pendingJoins[frame.topic] = pending
        return [
            .authorize(
                AuthorizationRequest(
                    topic: frame.topic, subTopic: name, generation: self.generation,
                    reader: BroadcastReader(role: claims.role, claims: claims.raw),
                    replay: broadcastOptions.replay, purpose: .join))
        ]
    }

    /// Adds the channel, replies ok, sends replayed rows, then schedules subscriptions and readiness.
    mutating func completeJoin(_ pending: PendingJoin, replayed: [BroadcastRow], now: LocalTimestamp) -> [Action] {
        var channel = pending.channel
        channel.replayedIDs = Set(replayed.map(\.id))
        self.channels[channel.topic] = channel
        self.order.removeAll { $0 == channel.topic }
        self.order.append(channel.topic)
        let reply = ServerFrame.reply(
            joinRef: channel.joinRef, ref: pending.ref, topic: channel.topic, status: "ok",
            response: pending.echo)
        var actions = ([reply] + pending.trailing).map { Action.send($0.encoded(self.version)) }
        // §B4/§B5: replayed rows follow the ok and precede the readiness message.
        actions += replayed.compactMap { self.broadcastAction($0, channel: channel, replayed: true) }
        actions += self.startSubscription(topic: channel.topic, now: now)
        actions += self.startReplication(topic: channel.topic)
        return actions
    }

    /// Schedules the `system` message and the token check for the channel's current generation.
    private mutating func startSubscription(topic: String, now: LocalTimestamp) -> [Action] {
        guard let channel = self.channels[topic] else { return [] }
        var actions: [Action] = []
        if !channel.bindings.isEmpty, let delay = self.policy.systemOkDelay {
            if delay <= .zero {
                actions += self.subscribe(topic: topic, generation: channel.generation)
            } else {
                actions.append(.schedule(.subscribe(topic: topic, generation: channel.generation), after: delay))
            }
        }
        actions.append(
            .schedule(
                .tokenCheck(topic: topic, generation: channel.generation),
                after: self.tokenCheckDelay(channel, now: now)))
        return actions
    }

    private func tokenCheckDelay(_ channel: Channel, now: LocalTimestamp) -> Duration {
        let left = Duration.microseconds(channel.expiresAt * 1_000_000 - now.microsecondsSinceEpoch)
        return max(.zero, min(self.policy.tokenCheckInterval, left))
    }

    private mutating func subscribe(topic: String, generation: Int) -> [Action] {
        guard var channel = self.channels[topic], channel.generation == generation else { return [] }
        var resolved: [ResolvedBinding] = []
        for binding in channel.bindings {
            switch BindingResolver.resolve(binding, table: self.table) {
            case .success(let value):
                resolved.append(value)
            case .failure(let error):
                channel.live = false
                channel.resolved = []
                self.channels[topic] = channel
                return [
                    .send(
                        ServerFrame.system(
                            joinRef: channel.joinRef, topic: topic, channel: channel.name,
                            extension: "postgres_changes", message: error.message,
                            status: "error"
                        ).encoded(self.version))
                ]
            }
        }
        channel.resolved = resolved
        channel.live = true
        self.channels[topic] = channel
        return [
            .send(
                ServerFrame.system(
                    joinRef: channel.joinRef, topic: topic, channel: channel.name,
                    extension: "postgres_changes", message: "Subscribed to PostgreSQL",
                    status: "ok"
                ).encoded(self.version))
        ]
    }

    private mutating func leave(_ frame: ClientFrame) -> [Action] {
        let reply = ServerFrame.reply(
            joinRef: frame.joinRef, ref: frame.ref, topic: frame.topic, status: "ok",
            response: "{}")
        self.pendingJoins.removeValue(forKey: frame.topic)
        guard let channel = self.channels[frame.topic],
            frame.joinRef.isNull || frame.joinRef == channel.joinRef
        else {
            // A leave for a topic that is not joined still gets ok (§9.1).
            return [.send(reply.encoded(self.version))]
        }
        self.remove(frame.topic)
        return [
            .send(reply.encoded(self.version)),
            .send(
                ServerFrame.channelEnd("phx_close", joinRef: channel.joinRef, topic: frame.topic)
                    .encoded(self.version)),
        ]
    }

    private mutating func remove(_ topic: String) {
        self.channels.removeValue(forKey: topic)
        self.order.removeAll { $0 == topic }
    }

    /// `system` error with extension `system`, then `phx_close`; the channel ends (§4.5, §8.2).
    mutating func shutdown(_ channel: Channel, message: String) -> [Action] {
        self.remove(channel.topic)
        return [
            .send(
                ServerFrame.system(
                    joinRef: channel.joinRef, topic: channel.topic, channel: channel.name,
                    extension: "system", message: message, status: "error"
                ).encoded(self.version)),
            .send(
                ServerFrame.channelEnd("phx_close", joinRef: channel.joinRef, topic: channel.topic)
                    .encoded(self.version)),
        ]
    }

    private mutating func accessToken(_ frame: ClientFrame, channel: Channel, now: LocalTimestamp) -> [Action] {
        // §8.1: no reply on success; `sb_` keys, null and the token in use are ignored.
        guard let token = frame.payload["access_token"]?.stringValue, !token.hasPrefix("sb_"), token != channel.token
        else { return [] }
        switch self.verifier.verify(token, now: now) {
        case .failure(let failure):
            return self.shutdown(channel, message: JWTTexts.channelMessage(failure))
        case .success(let claims):
            var updated = channel
            self.generation += 1
            updated.generation = self.generation
            updated.token = token
            updated.expiresAt = claims.expiresAt
            self.channels[channel.topic] = updated
            var actions = self.startSubscription(topic: channel.topic, now: now)
            if updated.isPrivate {
                // §B2: each `access_token` push re-checks the read policies.
                actions.append(
                    .authorize(
                        AuthorizationRequest(
                            topic: channel.topic, subTopic: channel.name, generation: updated.generation,
                            reader: BroadcastReader(role: claims.role, claims: claims.raw), replay: nil,
                            purpose: .refresh)))
            }
            return actions
        }
    }

    // MARK: Timers

    mutating func timerFired(_ id: TimerID, now: LocalTimestamp) -> [Action] {
        switch id {
        case .subscribe(let topic, let generation):
            return self.subscribe(topic: topic, generation: generation)
        case .tokenCheck(let topic, let generation):
            guard let channel = self.channels[topic], channel.generation == generation else { return [] }
            if case .failure(let failure) = self.verifier.verify(channel.token, now: now) {
                return self.shutdown(channel, message: JWTTexts.channelMessage(failure))
            }
            return [
                .schedule(
                    .tokenCheck(topic: topic, generation: generation),
                    after: self.tokenCheckDelay(channel, now: now))
            ]
        case .deferred(let id):
            guard let (frames, closeSocket) = self.deferred.removeValue(forKey: id) else { return [] }
            var actions = frames.map { Action.send($0.encoded(self.version)) }
            if closeSocket { actions.append(.close(code: 1000, reason: "")) }
            return actions
        case .replicationReady(let topic, let joinGeneration):
            return self.replicationReady(topic: topic, joinGeneration: joinGeneration)
        case .replicationTimeout(let topic, let joinGeneration):
            guard let channel = self.channels[topic], channel.joinGeneration == joinGeneration,
                !channel.broadcastLive
            else { return [] }
            return self.shutdown(channel, message: "Replication connection was not established in time")
        }
    }

    // MARK: Changes and faults

    /// One frame per live channel whose bindings match, ids in reverse binding order (§5.1, §15.5).
    func deliver(_ change: TableChange, maxRecordBytes: Int) -> [Action] {
        var actions: [Action] = []
        for topic in self.order {
            guard let channel = self.channels[topic], channel.live else { continue }
            let ids = channel.resolved.filter { $0.matches(change) }.map(\.id)
            guard !ids.isEmpty else { continue }
            let payload = ChangePayload.render(
                change: change, columns: self.table.columns, ids: ids.reversed(),
                maxRecordBytes: maxRecordBytes)
            let frame = ServerFrame(
                joinRef: .null, ref: .null, topic: topic, event: "postgres_changes", payload: payload)
            actions.append(.send(frame.encoded(self.version)))
        }
        return actions
    }

    /// Every channel gets `Token has expired N seconds ago` and `phx_close` (fault: expire tokens now).
    mutating func expireTokens(now: LocalTimestamp) -> [Action] {
        let nowSeconds = now.microsecondsSinceEpoch / 1_000_000
        var actions: [Action] = []
        for topic in self.order {
            guard let channel = self.channels[topic] else { continue }
            actions += self.shutdown(
                channel, message: "Token has expired \(max(0, nowSeconds - channel.expiresAt)) seconds ago")
        }
        return actions
    }

    /// `phx_error` for every channel (fault: channel crash); channels are removed.
    mutating func crashChannels() -> [Action] {
        var actions: [Action] = []
        for topic in self.order {
            guard let channel = self.channels[topic] else { continue }
            actions.append(
                .send(
                    ServerFrame.channelEnd("phx_error", joinRef: channel.joinRef, topic: topic)
                        .encoded(self.version)))
        }
        self.channels.removeAll()
        self.order.removeAll()
        self.pendingJoins.removeAll()
        return actions
    }
}
