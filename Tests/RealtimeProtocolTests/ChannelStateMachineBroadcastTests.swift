import JobSyncCore
import Synchronization
import Testing

@testable import RealtimeProtocol

/// A replay watermark the tests move between joins.
final class Watermark: Sendable {
    private let value: Mutex<Int?>
    init(_ value: Int?) { self.value = Mutex(value) }
    func set(_ value: Int?) { self.value.withLock { $0 = value } }
    var current: Int? { self.value.withLock { $0 } }
    /// Reads the watermark and counts the reads.
    var reads: Int { self.readCount.withLock { $0 } }
    private let readCount = Mutex(0)
    var closure: @Sendable () -> Int? {
        { [self] in
            self.readCount.withLock { $0 += 1 }
            return self.current
        }
    }
}

/// Fixtures for broadcast channels (broadcast-from-database.md §B).
enum BroadcastFixtures {
    typealias F = ChannelFixtures
    typealias Action = ChannelStateMachine.Action

    static func machine(window: Int = 1_000) -> ChannelStateMachine {
        var configuration = ChannelStateMachine.Configuration()
        configuration.rejoin.jitter = 0
        configuration.broadcastDeduplicationWindow = window
        return ChannelStateMachine(
            topic: F.topic, accessToken: "user-jwt", socketOpen: true, configuration: configuration,
            random: SplitMix64(seed: 7))
    }

    static func options(
        _ events: [String] = ["*"], isPrivate: Bool = true, watermark: Watermark? = nil, limit: Int? = nil
    ) -> ChannelStateMachine.BroadcastOptions {
        .init(
            events: BroadcastEventFilter(events), isPrivate: isPrivate, replaySince: watermark?.closure,
            replayLimit: limit)
    }

    /// `{"response":{},"status":"ok"}` for a channel without postgres bindings.
    static func ok(_ joinRef: Ref) -> PhoenixMessage {
        F.reply(joinRef: joinRef, ref: joinRef, status: "ok", response: ["postgres_changes": .array([])])
    }

    /// §B3 readiness: `{"extension":"system","message":"Replication connection established","status":"ok"}`.
    static func replicationOK(_ joinRef: Ref?) -> PhoenixMessage {
        F.system(joinRef: joinRef, extension: "system", status: "ok", message: "Replication connection established")
    }

    static func systemError(_ joinRef: Ref?, _ message: String) -> PhoenixMessage {
        F.system(joinRef: joinRef, extension: "system", status: "error", message: message)
    }

    /// A broadcast push (§B4): replayed ones carry the join ref.
    static func broadcast(
        _ event: String = "UPDATE", id: String?, replayedBy joinRef: Ref? = nil, payload: JSONValue = .object([:])
    ) -> PhoenixMessage {
        var meta: JSONObject = [:]
        if let id { meta["id"] = .string(id) }
        if joinRef != nil { meta["replayed"] = .bool(true) }
        return PhoenixMessage(
            joinRef: joinRef, ref: nil, topic: F.topic, event: .broadcast,
            payload: .object([
                "event": .string(event), "meta": .object(meta), "payload": payload, "type": .string("broadcast"),
            ]))
    }

    /// The ids of the broadcast messages notified, with their subscribers.
    static func delivered(_ actions: [Action]) -> [(subscribers: [ChannelStateMachine.SubscriberID], id: String?)] {
        actions.compactMap { action in
            if case .notify(let subscribers, .broadcast(let message)) = action { return (subscribers, message.id) }
            return nil
        }
    }

    /// Subscribes subscriber 1 and completes the join (reply ok, replication ok); returns the join ref.
    static func joinLive(
        _ machine: inout ChannelStateMachine, _ options: ChannelStateMachine.BroadcastOptions, refs: inout RefCounter
    ) throws -> Ref {
        let joinRef = try F.joinRef(machine.subscribe(F.subscriber(1), toBroadcast: options, refs: &refs))
        _ = machine.receive(ok(joinRef), refs: &refs)
        _ = machine.receive(replicationOK(joinRef), refs: &refs)
        #expect(machine.isLive)
        return joinRef
    }

    /// The server closes the current join with a `system` error then `phx_close` (§B2, §B3, §B6); returns the
    /// actions of the close.
    static func closeWithSystemError(
        _ machine: inout ChannelStateMachine, _ joinRef: Ref, _ message: String, refs: inout RefCounter
    ) -> (error: [Action], close: [Action]) {
        let error = machine.receive(systemError(joinRef, message), refs: &refs)
        let close = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
        return (error, close)
    }

    static func finishes(_ actions: [Action]) -> Bool {
        actions.contains { if case .finishSubscribers = $0 { true } else { false } }
    }
}

@Suite("ChannelStateMachine: Broadcast from Database (§B2, §B3, §B5, §B6)")
struct ChannelStateMachineBroadcastTests {
    typealias F = ChannelFixtures
    typealias B = BroadcastFixtures

    @Test("§B3 join payload: private, replication_ready, replay.since asked from the closure at every (re)join")
    func joinPayloadAtEveryJoin() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let watermark = Watermark(1_760_000_000_000)
        let actions = machine.subscribe(F.subscriber(1), toBroadcast: B.options(watermark: watermark), refs: &refs)
        let join = try #require(F.pushes(actions).first)
        let config = join.payload["config"]
        #expect(config?["private"] == .bool(true))
        #expect(config?["broadcast"]?["replication_ready"] == .bool(true))
        #expect(config?["broadcast"]?["replay"] == .object(["since": .number(JSONNumber(1_760_000_000_000))]))
        #expect(join.payload["access_token"] == .string("user-jwt"))
        // The channel crashes; the rejoin asks for the watermark again and sends the new one.
        watermark.set(1_760_000_123_456)
        _ = machine.receive(B.ok(try #require(join.joinRef)), refs: &refs)
        let crash = PhoenixMessage(
            joinRef: join.joinRef, ref: join.joinRef, topic: F.topic, event: .error, payload: .object([:]))
        _ = machine.receive(crash, refs: &refs)
        let rejoin = try #require(F.pushes(machine.timerFired(.rejoin, refs: &refs)).first)
        #expect(rejoin.event == .join && rejoin.joinRef != join.joinRef)
        #expect(rejoin.payload["config"]?["broadcast"]?["replay"]?["since"] == .number(JSONNumber(1_760_000_123_456)))
        #expect(watermark.reads == 2)
        // No watermark: no replay key at all.
        watermark.set(nil)
        _ = machine.receive(PhoenixMessage(
            joinRef: rejoin.joinRef, ref: rejoin.joinRef, topic: F.topic, event: .error, payload: .object([:])),
            refs: &refs)
        let third = try #require(F.pushes(machine.timerFired(.rejoin, refs: &refs)).first)
        #expect(third.payload["config"]?["broadcast"]?["replay"] == nil)
        #expect(third.payload["config"]?["broadcast"]?["replication_ready"] == .bool(true))
    }

    @Test("§B3 live only after the replication ok; replayed rows before it are delivered")
    func liveOnlyAfterReplicationOK() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.subscribe(F.subscriber(1), toBroadcast: B.options(), refs: &refs))
        let joined = machine.receive(B.ok(joinRef), refs: &refs)
        #expect(joined == [.cancelTimer(.joinTimeout(joinRef)), .reportStatus(.joined)])
        #expect(machine.status == .joined && !machine.isLive)
        let replayed = machine.receive(B.broadcast(id: "r-1", replayedBy: joinRef), refs: &refs)
        #expect(B.delivered(replayed).map(\.id) == ["r-1"])
        #expect(!machine.isLive)
        #expect(machine.receive(B.replicationOK(joinRef), refs: &refs) == F.live)
        #expect(machine.status == .live)
        // A second ok for the same join changes nothing.
        #expect(machine.receive(B.replicationOK(joinRef), refs: &refs).allSatisfy {
            if case .ignored = $0 { true } else { false }
        })
    }

    @Test("§B3 a channel with postgres bindings and broadcasts is live only after both oks, in either order")
    func liveAfterBothOKs() throws {
        var machine = B.machine()
        var refs = RefCounter()
        _ = machine.subscribe(F.subscriber(1), to: F.allJobs, refs: &refs)
        let actions = machine.subscribe(F.subscriber(2), toBroadcast: B.options(), refs: &refs)
        let joinRef = try F.joinRef(actions)
        _ = machine.receive(F.okReply(joinRef: joinRef, ids: [11], bindings: machine.bindings), refs: &refs)
        #expect(machine.receive(B.replicationOK(joinRef), refs: &refs) == [])
        #expect(!machine.isLive)
        let live = machine.receive(F.subscribedOK(joinRef: joinRef), refs: &refs)
        #expect(live == [.reportStatus(.live), .notify([F.subscriber(1), F.subscriber(2)], .live)])
    }

    @Test("§B3 readiness timeout: system error then phx_close → errored(replicationNotReady), rejoin after 1 s")
    func readinessTimeout() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.subscribe(F.subscriber(1), toBroadcast: B.options(), refs: &refs))
        _ = machine.receive(B.ok(joinRef), refs: &refs)
        let text = "Replication connection was not established in time"
        let (error, close) = B.closeWithSystemError(&machine, joinRef, text, refs: &refs)
        #expect(error == [.notify([F.subscriber(1)], .channelError(ErrorReason(text)))])
        let reason = ChannelStateMachine.Reason.replicationNotReady(ErrorReason(text))
        #expect(machine.status == .errored(reason))
        #expect(F.scheduled(close, .rejoin) == .seconds(1))
        #expect(!B.finishes(close))
        #expect(close.contains(.notify([F.subscriber(1)], .notLive(.errored(reason)))))
        #expect(F.pushes(machine.timerFired(.rejoin, refs: &refs)).first?.event == .join)
    }

    @Test("§B2 refused join (Unauthorized …) is typed and backs off 1, 2, 5, 10, 10 s: never a hot loop")
    func refusalBacksOff() throws {
        var machine = B.machine()
        var refs = RefCounter()
        var joinRef = try F.joinRef(machine.subscribe(F.subscriber(1), toBroadcast: B.options(), refs: &refs))
        let text = "Unauthorized: You do not have permissions to read from this Channel topic: jobs-1"
        var delays: [Duration] = []
        for _ in 0..<5 {
            let refused = machine.receive(F.errorReply(joinRef: joinRef, reason: text), refs: &refs)
            // The refusal pushes nothing: the next join waits for the rejoin timer.
            #expect(F.pushes(refused).isEmpty)
            #expect(machine.status == .errored(.joinRejected(ErrorReason(text))))
            #expect(ErrorReason(text).kind == .unauthorized)
            delays.append(try #require(F.scheduled(refused, .rejoin)))
            joinRef = try F.joinRef(machine.timerFired(.rejoin, refs: &refs))
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(10)])
        // Access granted: the next join succeeds and the schedule restarts.
        _ = machine.receive(B.ok(joinRef), refs: &refs)
        _ = machine.receive(B.replicationOK(joinRef), refs: &refs)
        #expect(machine.isLive)
        let crashed = machine.receive(
            PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: F.topic, event: .error, payload: .object([:])),
            refs: &refs)
        #expect(F.scheduled(crashed, .rejoin) == .seconds(1))
    }

    @Test("§B2 revocation on token refresh: system error + phx_close → errored(accessRevoked), backed-off rejoin")
    func revocation() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let joinRef = try B.joinLive(&machine, B.options(), refs: &refs)
        let pushed = F.pushes(machine.updateAccessToken("jwt-2", refs: &refs))
        #expect(pushed.map(\.event) == [.accessToken])
        let text = "You no longer have permission to read from this Channel topic: jobs-1"
        let (error, close) = B.closeWithSystemError(&machine, joinRef, text, refs: &refs)
        #expect(error == [.notify([F.subscriber(1)], .channelError(ErrorReason(text)))])
        let reason = ChannelStateMachine.Reason.accessRevoked(ErrorReason(text))
        #expect(machine.status == .errored(reason))
        #expect(close.contains(.notify([F.subscriber(1)], .notLive(.errored(reason)))))
        #expect(!B.finishes(close))
        #expect(F.scheduled(close, .rejoin) == .seconds(1))
        let rejoin = try #require(F.pushes(machine.timerFired(.rejoin, refs: &refs)).first)
        #expect(rejoin.payload["access_token"] == .string("jwt-2"))
        let refused = machine.receive(
            F.errorReply(
                joinRef: try #require(rejoin.joinRef),
                reason: "Unauthorized: You do not have permissions to read from this Channel topic: jobs-1"),
            refs: &refs)
        #expect(F.scheduled(refused, .rejoin) == .seconds(2))
    }

    @Test("§B2 the same close on a public (postgres_changes) channel still ends it for good")
    func unauthorizedCloseOnPublicChannel() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [5])
        let (_, close) = B.closeWithSystemError(
            &machine, joinRef, "You do not have permissions to read from this Channel topic: jobs-1", refs: &refs)
        #expect(B.finishes(close))
    }

    @Test("§B6 rate limit: Too many messages per second + phx_close → errored(rateLimited), rejoin after 10–30 s")
    func rateLimit() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let joinRef = try B.joinLive(&machine, B.options(), refs: &refs)
        let text = "Too many messages per second"
        let (_, close) = B.closeWithSystemError(&machine, joinRef, text, refs: &refs)
        #expect(machine.status == .errored(.rateLimited(ErrorReason(text))))
        let delay = try #require(F.scheduled(close, .rejoin))
        #expect(delay >= .seconds(10) && delay <= .seconds(30))
        #expect(!B.finishes(close))
    }

    @Test("§B5 dedupe across a rejoin: replayed duplicates suppressed, new ids delivered, id-less always delivered")
    func dedupeAcrossRejoin() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let first = try F.joinRef(
            machine.subscribe(F.subscriber(1), toBroadcast: B.options(watermark: Watermark(1)), refs: &refs))
        _ = machine.receive(B.ok(first), refs: &refs)
        #expect(B.delivered(machine.receive(B.broadcast(id: "a", replayedBy: first), refs: &refs)).count == 1)
        #expect(B.delivered(machine.receive(B.broadcast(id: "b", replayedBy: first), refs: &refs)).count == 1)
        _ = machine.receive(B.replicationOK(first), refs: &refs)
        #expect(B.delivered(machine.receive(B.broadcast(id: "c"), refs: &refs)).map(\.id) == ["c"])
        #expect(B.delivered(machine.receive(B.broadcast(id: nil), refs: &refs)).count == 1)
        // Socket loss, reopen: the rejoin replays b and c again, then d is new.
        _ = machine.socketClosed(refs: &refs)
        let second = try F.joinRef(machine.socketOpened(refs: &refs))
        _ = machine.receive(B.ok(second), refs: &refs)
        for id in ["b", "c"] {
            let again = machine.receive(B.broadcast(id: id, replayedBy: second), refs: &refs)
            #expect(again == [.ignored(.duplicateBroadcast(id: id))])
        }
        #expect(B.delivered(machine.receive(B.broadcast(id: "d", replayedBy: second), refs: &refs)).map(\.id) == ["d"])
        _ = machine.receive(B.replicationOK(second), refs: &refs)
        // A live copy of a replayed row (the server dedupes only within one join) is dropped too.
        #expect(machine.receive(B.broadcast(id: "d"), refs: &refs) == [.ignored(.duplicateBroadcast(id: "d"))])
        #expect(B.delivered(machine.receive(B.broadcast(id: nil), refs: &refs)).count == 1)
        // A replay stamped with the old join ref is stale.
        #expect(machine.receive(B.broadcast(id: "z", replayedBy: first), refs: &refs) == [.ignored(.staleJoinRef)])
    }

    @Test("§B5 dedupe memory is bounded by the configured window: an id older than the window is delivered again")
    func dedupeBounded() throws {
        var machine = B.machine(window: 2)
        var refs = RefCounter()
        _ = try B.joinLive(&machine, B.options(), refs: &refs)
        for id in ["a", "b", "c"] {
            #expect(B.delivered(machine.receive(B.broadcast(id: id), refs: &refs)).count == 1)
        }
        #expect(machine.receive(B.broadcast(id: "c"), refs: &refs) == [.ignored(.duplicateBroadcast(id: "c"))])
        // "a" fell out of the two-id window.
        #expect(B.delivered(machine.receive(B.broadcast(id: "a"), refs: &refs)).count == 1)
        #expect(machine.broadcastFanOut[0].seen.count == 2)
    }

    @Test("§B7 routing by event, case-insensitive, per subscriber; each subscriber dedupes on its own")
    func routingByEvent() throws {
        var machine = B.machine()
        var refs = RefCounter()
        _ = try B.joinLive(&machine, B.options(["update"]), refs: &refs)
        let second = machine.subscribe(F.subscriber(2), toBroadcast: B.options(["*"]), refs: &refs)
        #expect(second == [.notify([F.subscriber(2)], .live)])  // shares the join: no rejoin, told live at once
        #expect(B.delivered(machine.receive(B.broadcast("UPDATE", id: "u"), refs: &refs)).map(\.subscribers)
            == [[F.subscriber(1), F.subscriber(2)]])
        #expect(B.delivered(machine.receive(B.broadcast("INSERT", id: "i"), refs: &refs)).map(\.subscribers)
            == [[F.subscriber(2)]])
        var only = B.machine()
        _ = try B.joinLive(&only, B.options(["UPDATE"]), refs: &refs)
        let delete = only.receive(B.broadcast("DELETE", id: "x"), refs: &refs)
        #expect(delete == [.ignored(.unroutableBroadcast(event: "DELETE"))])
    }

    @Test("§B4 malformed broadcast payload is ignored with a typed reason; broadcasts before the join reply too")
    func malformedAndNotJoined() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.subscribe(F.subscriber(1), toBroadcast: B.options(), refs: &refs))
        #expect(machine.receive(B.broadcast(id: "early"), refs: &refs) == [.ignored(.notJoined)])
        _ = machine.receive(B.ok(joinRef), refs: &refs)
        let bad = PhoenixMessage(
            joinRef: nil, ref: nil, topic: F.topic, event: .broadcast,
            payload: .object(["event": .number(JSONNumber(1))]))
        guard case .ignored(.malformedPayload)? = machine.receive(bad, refs: &refs).first else {
            Issue.record("expected a malformed payload to be ignored")
            return
        }
        #expect(machine.status == .joined)
    }

    @Test("§B5 a later subscriber asking for replay rejoins the channel; the last broadcast subscriber leaves it")
    func replaySubscriberRejoinsAndLastLeaves() throws {
        var machine = B.machine()
        var refs = RefCounter()
        let first = try B.joinLive(&machine, B.options(), refs: &refs)
        let watermark = Watermark(42)
        let actions = machine.subscribe(F.subscriber(2), toBroadcast: B.options(watermark: watermark), refs: &refs)
        let rejoin = try #require(F.pushes(actions).first)
        #expect(rejoin.joinRef != first)
        #expect(rejoin.payload["config"]?["broadcast"]?["replay"]?["since"] == .number(JSONNumber(42)))
        #expect(actions.contains(.notify([F.subscriber(1), F.subscriber(2)], .notLive(.rejoining))))
        #expect(machine.unsubscribe(F.subscriber(1), refs: &refs) == [])
        let leave = machine.unsubscribe(F.subscriber(2), refs: &refs)
        #expect(F.pushes(leave).map(\.event) == [.leave])
    }
}
