import Hummingbird

extension SupabaseLocalStack {
    func statsJSON() -> String {
        let statistics = self.faults.statistics
        return LocalJSON.object([
            "open_sockets": .int(self.registry.count),
            "accepted_sockets": .int(self.registry.acceptedTotal),
            "delivered_changes": .int(self.faults.deliveredChangeCount),
            "dropped_changes": .int(self.faults.droppedChangeCount),
            "delivered_broadcasts": .int(statistics.broadcastsDelivered),
            "dropped_broadcasts": .int(statistics.broadcastsDropped),
            "rate_limited_broadcasts": .int(statistics.broadcastsRateLimited),
            "rate_limited_broadcast_channels": .int(statistics.broadcastChannelsRateLimited),
            "broadcast_reads_refused_by_rule": .int(statistics.broadcastReadsRefusedByRule),
            "replication_ready_withheld": .int(statistics.replicationReadyWithheld),
        ]).encoded()
    }

    /// `POST /admin/v1/<action>` with a JSON body; service key required. Durations are in milliseconds.
    func admin(_ request: Request, action: String) async throws -> Response {
        try self.requireServiceKey(request)
        let buffer = try await request.body.collect(upTo: 1 << 20)
        let body =
            buffer.readableBytes == 0
            ? LocalJSON.object([:]) : ((try? LocalJSON(parsing: Array(buffer: buffer))) ?? .null)
        guard body.objectValue != nil else {
            throw RESTError(status: 400, body: "{\"message\":\"body must be a JSON object\"}")
        }
        func int(_ key: String) -> Int? {
            guard case .number(let text) = body[key] ?? .null else { return nil }
            return Int(text) ?? Double(text).map { Int($0) }
        }
        func double(_ key: String) -> Double? {
            guard case .number(let text) = body[key] ?? .null else { return nil }
            return Double(text)
        }
        func millis(_ key: String) -> Duration? { int(key).map { .milliseconds($0) } }
        let faults = self.faults
        switch action {
        case "drop-connections":
            if body["abrupt"] == .bool(true) {
                faults.dropAllConnections(code: nil)
            } else {
                faults.dropAllConnections(
                    code: UInt16(clamping: int("code") ?? 1000), reason: body["reason"]?.stringValue ?? "")
            }
        case "stall":
            faults.stall(for: millis("ms") ?? .seconds(5))
        case "refuse-connections":
            if body["clear"] == .bool(true) {
                faults.acceptConnections()
            } else {
                faults.refuseConnections(
                    ConnectionRefusal(
                        status: int("status") ?? 503, retryAfterSeconds: int("retry_after"),
                        message: body["message"]?.stringValue),
                    for: millis("ms")
                )
            }
        case "system-ok":
            if body["withhold"] == .bool(true) {
                faults.withholdSystemOk()
            } else {
                faults.setSystemOkDelay(millis("delay_ms"))
            }
        case "join-error":
            if let reason = body["reason"]?.stringValue {
                faults.failJoins(ForcedJoinError(reason: reason, delay: millis("delay_ms") ?? .zero))
            } else {
                faults.failJoins(nil)
            }
        case "heartbeat":
            switch body["mode"]?.stringValue {
            case "withhold": faults.setHeartbeatReplies(.withheld)
            case "delay": faults.setHeartbeatReplies(.delayed(millis("ms") ?? .seconds(1)))
            default: faults.setHeartbeatReplies(.normal)
            }
        case "drop-changes":
            faults.dropChanges(fraction: double("fraction") ?? 0)
        case "delay-changes":
            faults.delayChanges(by: millis("ms") ?? .zero)
        case "drop-broadcasts":
            faults.dropBroadcasts(fraction: double("fraction") ?? 0)
        case "rate-limit-broadcasts":
            faults.rateLimitBroadcasts(body["tripped"] != .bool(false))
        case "broadcast-read-rule":
            guard let rule = BroadcastReadRule.admin(body) else {
                throw RESTError(status: 400, body: "{\"message\":\"unknown broadcast read rule\"}")
            }
            faults.setBroadcastReadRule(rule)
        case "replication-ready":
            if body["withhold"] == .bool(true) {
                faults.withholdReplicationReady()
            } else {
                faults.setReplicationReadyDelay(millis("delay_ms"))
            }
        case "rest-failure":
            faults.failREST(int("status").map { RESTFailure(status: $0, retryAfterSeconds: int("retry_after")) })
        case "rest-latency":
            faults.setRESTLatency(millis("ms") ?? .zero)
        case "expire-tokens":
            faults.expireTokens()
        case "crash-channels":
            faults.crashChannels()
        case "max-record-bytes":
            faults.setMaxRecordBytes(int("bytes"))
        case "delete-jobs":
            let ids = body["ids"]?.arrayValue?.compactMap(\.stringValue) ?? []
            let count = try await faults.deleteJobs(ids: ids)
            return self.json(200, "{\"deleted\":\(count)}")
        case "restart":
            faults.restart(refuseFor: millis("refuse_ms") ?? .seconds(1))
        case "simulate":
            var settings = JobSimulator.Configuration()
            if let seed = int("seed") { settings.seed = UInt64(clamping: seed) }
            if let rate = double("failure_rate") { settings.failureRate = rate }
            if let interval = millis("page_ms") { settings.pageInterval = interval }
            if let delay = millis("queue_ms") { settings.queueDelay = delay }
            if body["mixed_case"] == .bool(true) { settings.mixedCaseStatuses = true }
            let plans = try await self.startSimulation(count: int("jobs") ?? 5, configuration: settings)
            return self.json(200, LocalJSON.object(["ids": .array(plans.map { .string($0.id) })]).encoded())
        case "reset":
            faults.reset()
        default:
            throw RESTError(status: 404, body: "{\"message\":\"unknown admin action\"}")
        }
        return self.json(200, self.statsJSON())
    }
}

extension BroadcastReadRule {
    /// The rule of `POST /admin/v1/broadcast-read-rule`: `{"rule":"jobs_migration"|"deny_all"|"backend"}` or
    /// `{"policies":[{"roles":["authenticated"],"topic_like":"jobs%"}]}`. `.some(nil)` restores the backend's
    /// policies; nil is an unknown body.
    static func admin(_ body: LocalJSON) -> BroadcastReadRule?? {
        if let policies = body["policies"]?.arrayValue {
            var parsed: [Policy] = []
            for policy in policies {
                guard let roles = policy["roles"]?.arrayValue?.compactMap(\.stringValue),
                    let like = policy["topic_like"]?.stringValue
                else { return nil }
                parsed.append(Policy(roles: Set(roles), topicLike: like))
            }
            return .some(BroadcastReadRule(policies: parsed))
        }
        switch body["rule"]?.stringValue {
        case "jobs_migration": return .some(.jobsMigration)
        case "deny_all": return .some(.denyAll)
        case "backend", nil: return .some(nil)
        default: return nil
        }
    }
}
