import NIOConcurrencyHelpers
/// Fault injection for a running stack; every fault is also reachable over `POST /admin/v1/...`.
public struct SupabaseLocalFaults: Sendable {
    let stack: SupabaseLocalStack

    /// Closes every Realtime socket: with a close frame (`code`, `reason`) or, when `code` is nil, abruptly
    /// (TCP closed with no close frame).
    public func dropAllConnections(code: UInt16? = 1000, reason: String = "") {
        let reached = self.stack.registry.broadcast(.drop(code: code, reason: reason))
        self.count { $0.socketsDropped += reached }
    }

    /// Every open socket stops reading, replying and sending for `duration` (TCP stays open).
    public func stall(for duration: Duration) {
        let reached = self.stack.registry.broadcast(.stall(duration))
        self.count { $0.socketsStalled += reached }
    }

    /// Refuses new WebSocket handshakes with `refusal` (e.g. 503, or 429 with `Retry-After`), for `duration` or
    /// until ``acceptConnections()``.
    public func refuseConnections(_ refusal: ConnectionRefusal, for duration: Duration? = nil) {
        self.stack.faultState.withLockedValue { $0.refusal = refusal }
        if let duration {
            self.stack.schedule(after: duration) { [stack = self.stack] in
                stack.faultState.withLockedValue { if $0.refusal == refusal { $0.refusal = nil } }
            }
        }
    }

    /// Accepts handshakes again.
    public func acceptConnections() {
        self.stack.faultState.withLockedValue { $0.refusal = nil }
    }

    /// Sends `Subscribed to PostgreSQL` after `delay` for new joins (nil restores the configured delay).
    public func setSystemOkDelay(_ delay: Duration?) {
        self.stack.faultState.withLockedValue {
            $0.systemOkDelay = delay
            $0.withholdSystemOk = false
        }
    }

    /// New joins never get `Subscribed to PostgreSQL` (and so never receive changes).
    public func withholdSystemOk(_ withhold: Bool = true) {
        self.stack.faultState.withLockedValue { $0.withholdSystemOk = withhold }
    }

    /// Every join is refused with this §4.4 reason (after its delay); nil restores normal joins.
    public func failJoins(_ error: ForcedJoinError?) {
        self.stack.faultState.withLockedValue { $0.forcedJoinError = error }
    }

    /// How heartbeats are answered.
    public func setHeartbeatReplies(_ mode: HeartbeatReplyMode) {
        self.stack.faultState.withLockedValue { $0.heartbeat = mode }
    }

    /// Silently drops this fraction (0…1) of committed changes before fan-out (§5.6).
    public func dropChanges(fraction: Double) {
        self.stack.faultState.withLockedValue { $0.changeDropFraction = min(1, max(0, fraction)) }
    }

    /// Delays every change by `delay` before fan-out (order is kept).
    public func delayChanges(by delay: Duration) {
        self.stack.faultState.withLockedValue { $0.changeDelay = delay }
    }

    /// Silently loses this fraction (0…1) of committed broadcasts before fan-out (an outage of the replication
    /// stream, broadcast-from-database.md §B6): the rows stay stored and replayable. Counted in
    /// ``FaultStatistics/broadcastsDropped``.
    public func dropBroadcasts(fraction: Double) {
        self.stack.faultState.withLockedValue { $0.broadcastDropFraction = min(1, max(0, fraction)) }
    }

    /// Trips (or clears) the tenant's messages-per-second limit (§B6): committed broadcasts are dropped at the
    /// source (still replayable), and every channel that would receive one gets `system` `Too many messages per
    /// second` and `phx_close`. Counted in ``FaultStatistics/broadcastsRateLimited`` and
    /// ``FaultStatistics/broadcastChannelsRateLimited``.
    public func rateLimitBroadcasts(_ tripped: Bool = true) {
        self.stack.faultState.withLockedValue { $0.broadcastsRateLimited = tripped }
    }

    /// Replaces the read policies on `realtime.messages` for every backend (§B2): the next private join or
    /// `access_token` push is checked against `rule`; nil restores the backend's own policies.
    public func setBroadcastReadRule(_ rule: BroadcastReadRule?) {
        self.stack.faultState.withLockedValue { $0.broadcastReadRule = rule }
    }

    /// New joins never get a replication connection: no live broadcasts, and `replication_ready` joins get the
    /// timeout error and `phx_close` after ``SupabaseLocalConfiguration/replicationReadyTimeout`` (§B3).
    public func withholdReplicationReady(_ withhold: Bool = true) {
        self.stack.faultState.withLockedValue { $0.withholdReplicationReady = withhold }
    }

    /// The replication connection of new joins exists after `delay` (nil restores the configured delay, §B3).
    public func setReplicationReadyDelay(_ delay: Duration?) {
        self.stack.faultState.withLockedValue {
            $0.replicationReadyDelay = delay
            $0.withholdReplicationReady = false
        }
    }

    /// Every REST and status-endpoint request fails with this status (nil to stop).
    public func failREST(_ failure: RESTFailure?) {
        self.stack.faultState.withLockedValue { $0.restFailure = failure }
    }

    /// A broken proxy in front of PostgREST: table reads ignore every filter, `order` and `offset` (and `Range`) and
    /// always answer the first `limit` rows of the table, a full page whenever the table is big enough.
    public func ignoreRESTQueries(_ ignore: Bool) {
        self.stack.faultState.withLockedValue { $0.restIgnoresQuery = ignore }
    }

    /// A broken server or proxy: table reads (GET) answer `200` with an oversized body (nil to stop). The bytes
    /// actually written are counted in ``FaultStatistics/oversizedRESTBodyBytesSent``, so a test can prove that
    /// its client stopped reading.
    public func sendOversizedRESTBodies(_ body: OversizedRESTBody?) {
        self.stack.faultState.withLockedValue { $0.oversizedRESTBody = body }
    }

    /// What the faults did so far (counted since the stack started; ``reset()`` keeps them).
    public var statistics: FaultStatistics { self.stack.faultState.withLockedValue { $0.statistics } }

    private func count(_ update: (inout FaultStatistics) -> Void) {
        self.stack.faultState.withLockedValue { update(&$0.statistics) }
    }

    /// Adds latency to every REST and status-endpoint request.
    public func setRESTLatency(_ latency: Duration) {
        self.stack.faultState.withLockedValue { $0.restLatency = latency }
    }

    /// Expires every user token now: joined channels get `Token has expired N seconds ago` then `phx_close`, and
    /// user JWTs issued until now are refused (REST `PGRST303`, joins `InvalidJWTToken`). Project keys keep working.
    public func expireTokens() {
        let now = self.stack.configuration.wallClock.now()
        self.stack.faultState.withLockedValue { $0.tokensRevokedAtOrBefore = now.microsecondsSinceEpoch / 1_000_000 }
        let reached = self.stack.registry.broadcast(.expireTokens)
        self.count { $0.tokenExpiryNotices += reached }
    }

    /// Channels crash: every joined channel gets `phx_error` (§9.1) and is removed.
    public func crashChannels() {
        let reached = self.stack.registry.broadcast(.crashChannels)
        self.count { $0.channelCrashes += reached }
    }

    /// Changes whose record is larger than `bytes` get the 413 treatment (§5.4); nil restores the configuration.
    public func setMaxRecordBytes(_ bytes: Int?) {
        self.stack.faultState.withLockedValue { $0.maxRecordBytesOverride = bytes }
    }

    /// Deletes jobs (retention), producing DELETE changes. Returns how many rows were deleted.
    @discardableResult
    public func deleteJobs(ids: [String]) async throws -> Int {
        var count = 0
        for id in ids where try await self.stack.backend.delete(primaryKey: .string(id)) != nil {
            count += 1
        }
        return count
    }

    /// Restart: drops every socket with 1012 and refuses handshakes with 503 for `refuseFor`.
    public func restart(refuseFor: Duration = .seconds(1)) {
        self.refuseConnections(ConnectionRefusal(status: 503, retryAfterSeconds: 1), for: refuseFor)
        self.dropAllConnections(code: 1012, reason: "restart")
    }

    /// Clears every fault (counters are kept).
    public func reset() {
        self.stack.faultState.withLockedValue { faults in
            let statistics = faults.statistics
            faults = FaultSettings()
            faults.statistics = statistics
        }
    }

    /// Changes dropped by ``dropChanges(fraction:)`` so far.
    public var droppedChangeCount: Int { self.statistics.changesDropped }

    /// Changes fanned out to sockets so far.
    public var deliveredChangeCount: Int { self.statistics.changesDelivered }
}

extension SupabaseLocalStack {
    /// Fault injection for this stack.
    public var faults: SupabaseLocalFaults { SupabaseLocalFaults(stack: self) }
}
