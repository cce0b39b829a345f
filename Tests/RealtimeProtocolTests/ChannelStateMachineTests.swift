import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Shared fixtures for the channel state machine tests.
enum ChannelFixtures {
    static let topic: Topic = "realtime:jobs-1"
    static let allJobs = PostgresChangeBinding(event: .all, schema: "public", table: "jobs")
    static let inserts = PostgresChangeBinding(event: .insert, schema: "public", table: "jobs", filter: "id=in.(1,2)")
    static let updates = PostgresChangeBinding(event: .update, schema: "public", table: "jobs", filter: "id=in.(1,2)")

    /// An empty machine with rejoin jitter off, so delays equal the schedule.
    static func machine(token: String? = "token-1", socketOpen: Bool = true) -> ChannelStateMachine {
        var configuration = ChannelStateMachine.Configuration()
        configuration.rejoin.jitter = 0
        return ChannelStateMachine(
            topic: topic, accessToken: token, socketOpen: socketOpen, configuration: configuration,
            random: SplitMix64(seed: 7))
    }

    /// Subscriber `n` (the fixtures number them from 1, in binding order).
    static func subscriber(_ n: UInt64) -> ChannelStateMachine.SubscriberID {
        ChannelStateMachine.SubscriberID(rawValue: n)
    }

    /// Subscribes subscribers 1, 2, … to `bindings`, one each; returns the actions of the last subscription.
    @discardableResult
    static func subscribe(
        _ machine: inout ChannelStateMachine,
        _ bindings: [PostgresChangeBinding] = [allJobs],
        refs: inout RefCounter
    ) -> [ChannelStateMachine.Action] {
        var actions: [ChannelStateMachine.Action] = []
        for (index, binding) in bindings.enumerated() {
            actions = machine.subscribe(subscriber(UInt64(index + 1)), to: binding, refs: &refs)
        }
        return actions
    }

    static func pushes(_ actions: [ChannelStateMachine.Action]) -> [PhoenixMessage] {
        actions.compactMap { action in
            if case .push(let message) = action { return message }
            return nil
        }
    }

    static func joinRef(_ actions: [ChannelStateMachine.Action]) throws -> Ref {
        let join = try #require(pushes(actions).last { $0.event == .join })
        return try #require(join.joinRef)
    }

    static func scheduled(_ actions: [ChannelStateMachine.Action], _ timer: ChannelStateMachine.Timer) -> Duration? {
        for case .scheduleTimer(let scheduled, let after) in actions where scheduled == timer { return after }
        return nil
    }

    /// What the system ok makes the machine say when subscriber 1 is its only subscriber.
    static let live: [ChannelStateMachine.Action] = [.reportStatus(.live), .notify([subscriber(1)], .live)]

    /// `{"response":{"postgres_changes":[{"id":…, …binding}]},"status":"ok"}` echoing the bindings.
    static func okReply(joinRef: Ref, ids: [Int], bindings: [PostgresChangeBinding]) -> PhoenixMessage {
        let echoed: [JSONValue] = zip(ids, bindings).map { id, binding in
            var object: JSONObject = ["id": .number(JSONNumber(id))]
            if case .object(let fields) = binding.jsonValue { object.members += fields.members }
            return .object(object)
        }
        return reply(joinRef: joinRef, ref: joinRef, status: "ok", response: ["postgres_changes": .array(echoed)])
    }

    static func reply(joinRef: Ref?, ref: Ref, status: String, response: JSONObject = [:]) -> PhoenixMessage {
        PhoenixMessage(
            joinRef: joinRef, ref: ref, topic: topic, event: .reply,
            payload: .object(["response": .object(response), "status": .string(status)]))
    }

    static func errorReply(joinRef: Ref, reason: String) -> PhoenixMessage {
        reply(joinRef: joinRef, ref: joinRef, status: "error", response: ["reason": .string(reason)])
    }

    static func system(joinRef: Ref?, extension ext: String, status: String, message: String) -> PhoenixMessage {
        PhoenixMessage(
            joinRef: joinRef, ref: nil, topic: topic, event: .system,
            payload: .object([
                "channel": .string("jobs-1"), "extension": .string(ext), "message": .string(message),
                "status": .string(status),
            ]))
    }

    static func subscribedOK(joinRef: Ref?) -> PhoenixMessage {
        system(joinRef: joinRef, extension: "postgres_changes", status: "ok", message: "Subscribed to PostgreSQL")
    }

    static func close(joinRef: Ref?, ref: Ref?) -> PhoenixMessage {
        PhoenixMessage(joinRef: joinRef, ref: ref, topic: topic, event: .close, payload: .object([:]))
    }

    static func change(type: String, ids: [Int], id: Int = 1) -> PhoenixMessage {
        let data: JSONObject = [
            "columns": .array([]), "commit_timestamp": .string("2026-08-21T10:15:03.412Z"), "errors": .null,
            "record": .object(["id": .number(JSONNumber(id))]), "schema": .string("public"), "table": .string("jobs"),
            "type": .string(type),
        ]
        return PhoenixMessage(
            joinRef: nil, ref: nil, topic: topic, event: .postgresChanges,
            payload: .object(["data": .object(data), "ids": .array(ids.map { .number(JSONNumber($0)) })]))
    }

    /// Subscribes to `bindings`, then receives the join's ok reply and the system ok; returns the join ref.
    static func joinLive(
        _ machine: inout ChannelStateMachine,
        _ bindings: [PostgresChangeBinding] = [allJobs],
        refs: inout RefCounter,
        ids: [Int]
    ) throws -> Ref {
        let joinRef = try joinRef(subscribe(&machine, bindings, refs: &refs))
        _ = machine.receive(okReply(joinRef: joinRef, ids: ids, bindings: machine.bindings), refs: &refs)
        _ = machine.receive(subscribedOK(joinRef: joinRef), refs: &refs)
        return joinRef
    }
}

@Suite("ChannelStateMachine: join, live, routing")
struct ChannelStateMachineJoinTests {
    typealias F = ChannelFixtures

    @Test("§4.2 phx_join carries config.postgres_changes and access_token; join_ref == ref; 10 s timeout")
    func joinPush() throws {
        var machine = F.machine(socketOpen: false)
        var refs = RefCounter()
        F.subscribe(&machine, [F.inserts, F.updates], refs: &refs)
        let actions = machine.socketOpened(refs: &refs)
        let join = try #require(F.pushes(actions).first)
        #expect(join.event == .join && join.topic == F.topic)
        #expect(join.joinRef == "1" && join.ref == "1")
        #expect(join.payload == JoinPayload(postgresChanges: [F.inserts, F.updates], accessToken: "token-1").jsonValue)
        #expect(actions.last == .reportStatus(.joining), "the status follows the push and its timer")
        #expect(F.scheduled(actions, .joinTimeout("1")) == .seconds(10))
    }

    @Test("a join requested before the socket opens is sent when it opens")
    func joinWaitsForSocket() throws {
        var machine = F.machine(socketOpen: false)
        var refs = RefCounter()
        #expect(F.subscribe(&machine, refs: &refs) == [.reportStatus(.joining)])
        let opened = machine.socketOpened(refs: &refs)
        #expect(F.pushes(opened).map(\.event) == [.join])
    }

    @Test("§4.3/§4.5 joined on the ok reply, live only after system \"Subscribed to PostgreSQL\" ok")
    func liveOnlyAfterSystemOK() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let reply = machine.receive(F.okReply(joinRef: joinRef, ids: [84_421_330], bindings: [F.allJobs]), refs: &refs)
        #expect(reply == [.cancelTimer(.joinTimeout(joinRef)), .reportStatus(.joined)])
        #expect(!machine.isLive)
        let live = machine.receive(F.subscribedOK(joinRef: joinRef), refs: &refs)
        #expect(live == F.live)
        #expect(machine.isLive)
        // §4.5: the ok repeats after a token refresh; it is reported (and told) again.
        #expect(machine.receive(F.subscribedOK(joinRef: joinRef), refs: &refs) == live)
    }

    @Test("§4.3 null and absent filters are equal in the binding check")
    func nullFilterEqualsAbsent() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let echoed: JSONValue = .object([
            "id": .number(JSONNumber(5)), "event": .string("*"), "filter": .null,
            "schema": .string("public"), "table": .string("jobs"),
        ])
        let reply = F.reply(
            joinRef: joinRef, ref: joinRef, status: "ok", response: ["postgres_changes": .array([echoed])])
        #expect(machine.receive(reply, refs: &refs).contains(.reportStatus(.joined)))
    }

    @Test("§4.3 binding mismatch: leave that join, errored with a clear reason, rejoin later")
    func bindingMismatch() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, [F.inserts], refs: &refs))
        let wrong = PostgresChangeBinding(event: .insert, schema: "public", table: "jobs", filter: "id=in.(9)")
        let actions = machine.receive(F.okReply(joinRef: joinRef, ids: [1], bindings: [wrong]), refs: &refs)
        let leave = try #require(F.pushes(actions).first)
        #expect(leave.event == .leave && leave.joinRef == joinRef)
        let status = try #require(actions.compactMap { action -> ChannelStateMachine.Status? in
            if case .reportStatus(let status) = action { return status }
            return nil
        }.first)
        guard case .errored(.bindingMismatch(let detail)) = status else {
            Issue.record("expected bindingMismatch, got \(status)")
            return
        }
        #expect(detail.contains("mismatch between server and client bindings") && detail.contains("index 0"))
        #expect(F.scheduled(actions, .rejoin) == .seconds(1))
        // Count mismatch is reported too.
        var other = F.machine()
        let otherRef = try F.joinRef(F.subscribe(&other, [F.inserts, F.updates], refs: &refs))
        let short = other.receive(F.okReply(joinRef: otherRef, ids: [1], bindings: [F.inserts]), refs: &refs)
        #expect(short.contains { action in
            if case .reportStatus(.errored(.bindingMismatch(let text))) = action { return text.contains("requested 2") }
            return false
        })
    }

    @Test("§5.5/§15.5 routing by ids (any order) AND event, case-insensitive")
    func routingByIdsAndEvent() throws {
        var machine = F.machine()
        var refs = RefCounter()
        _ = try F.joinLive(&machine, [F.inserts, F.updates, F.allJobs], refs: &refs, ids: [11, 22, 33])
        // ids in reverse order of the bindings (§15.5); an UPDATE matches `updates` and `*`, not `inserts`.
        let update = machine.receive(F.change(type: "UPDATE", ids: [33, 22, 11]), refs: &refs)
        guard case .notify(let subscribers, .change(let change))? = update.first, update.count == 1 else {
            Issue.record("no delivery: \(update)")
            return
        }
        #expect(subscribers == [F.subscriber(2), F.subscriber(3)])
        #expect(change.type == .update && change.table == "jobs")
        // Lower-case type still matches the UPDATE binding (§5.5 case-insensitive).
        let lower = machine.receive(F.change(type: "update", ids: [22]), refs: &refs)
        guard case .notify([F.subscriber(2)], .change)? = lower.first, lower.count == 1 else {
            Issue.record("no delivery to subscriber 2: \(lower)")
            return
        }
        // Listed id whose binding event does not match: not delivered.
        #expect(machine.receive(F.change(type: "DELETE", ids: [11, 22]), refs: &refs) == [.ignored(.unroutableChange)])
        // Unknown id.
        #expect(machine.receive(F.change(type: "INSERT", ids: [99]), refs: &refs) == [.ignored(.unroutableChange)])
    }

    @Test("§5.1 a malformed postgres_changes payload is ignored and counted, never a crash")
    func malformedChange() throws {
        var machine = F.machine()
        var refs = RefCounter()
        _ = try F.joinLive(&machine, refs: &refs, ids: [1])
        let bad = PhoenixMessage(joinRef: nil, ref: nil, topic: F.topic, event: .postgresChanges, payload: .array([]))
        let actions = machine.receive(bad, refs: &refs)
        guard case .ignored(.malformedPayload)? = actions.first else {
            Issue.record("expected malformedPayload, got \(actions)")
            return
        }
        #expect(machine.isLive)
    }

    @Test("§4.5 a postgres_changes system error is surfaced; the channel stays joined but not live")
    func postgresChangesSystemError() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let message = "Unable to subscribe to changes with given parameters. Please check Realtime is enabled"
        let actions = machine.receive(
            F.system(joinRef: joinRef, extension: "postgres_changes", status: "error", message: message), refs: &refs)
        #expect(actions == [
            .notify([F.subscriber(1)], .postgresChangesError(message)), .reportStatus(.joined),
            .notify([F.subscriber(1)], .notLive(.subscriptionError)),
        ])
        #expect(machine.currentJoinRef == joinRef)
        #expect(F.pushes(actions).isEmpty)
        let live = machine.receive(F.subscribedOK(joinRef: joinRef), refs: &refs)
        #expect(live == F.live)
    }

    @Test("§8.1 access_token is pushed to a joined channel (no reply expected) and kept for rejoins")
    func accessTokenPush() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let actions = machine.updateAccessToken("token-2", refs: &refs)
        let push = try #require(F.pushes(actions).first)
        #expect(actions.count == 1, "no timer: the server does not reply on success")
        #expect(push.event == .accessToken && push.joinRef == joinRef && push.ref != joinRef)
        #expect(push.payload == .object(["access_token": .string("token-2")]))
        #expect(machine.joinPayload.accessToken == "token-2")
        #expect(machine.updateAccessToken("token-2", refs: &refs).isEmpty, "same token: nothing sent")
        // The next join carries the new token.
        _ = machine.socketClosed(refs: &refs)
        let rejoin = F.pushes(machine.socketOpened(refs: &refs))
        #expect(rejoin.first?.payload["access_token"] == .string("token-2"))
    }

    @Test("§9.1 the last subscriber leaving pushes phx_leave; closed on its reply, or on the leave timeout")
    func leave() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let actions = machine.unsubscribe(F.subscriber(1), refs: &refs)
        let leave = try #require(F.pushes(actions).first)
        #expect(leave.event == .leave && leave.joinRef == joinRef)
        let leaveRef = try #require(leave.ref)
        let done = machine.receive(F.reply(joinRef: joinRef, ref: leaveRef, status: "ok"), refs: &refs)
        #expect(done == [.cancelTimer(.leaveTimeout(leaveRef)), .reportStatus(.closed(.left)), .removeChannel])
        // The phx_close that follows the leave reply is stale now.
        #expect(machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs) == [.ignored(.staleJoinRef)])

        var silent = F.machine()
        _ = try F.joinLive(&silent, refs: &refs, ids: [1])
        let silentLeave = try #require(F.pushes(silent.unsubscribe(F.subscriber(1), refs: &refs)).first?.ref)
        let timedOut = silent.timerFired(.leaveTimeout(silentLeave), refs: &refs)
        #expect(timedOut == [.reportStatus(.closed(.left)), .removeChannel])
        #expect(silent.isClosed)
    }
}
