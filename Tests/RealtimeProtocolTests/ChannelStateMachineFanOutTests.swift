import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Subscribers of one channel: join on the first, share equal bindings, rebind, leave on the last, the
/// leave/subscribe race, and what subscribers are told.
@Suite("ChannelStateMachine: subscribers and fan-out")
struct ChannelStateMachineFanOutTests {
    typealias F = ChannelFixtures
    typealias Machine = ChannelStateMachine

    static let first = F.subscriber(1)
    static let second = F.subscriber(2)

    /// The events each subscriber was notified of, in order.
    static func notified(_ actions: [Machine.Action]) -> [Machine.SubscriberID: [Machine.SubscriberEvent]] {
        var events: [Machine.SubscriberID: [Machine.SubscriberEvent]] = [:]
        for case .notify(let subscribers, let event) in actions {
            for subscriber in subscribers { events[subscriber, default: []].append(event) }
        }
        return events
    }

    @Test("equal bindings share one server binding; a subscriber joining a live channel hears live at once")
    func equalBindingsShare() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, [F.inserts], refs: &refs, ids: [7])
        let shared = machine.subscribe(Self.second, to: F.inserts, refs: &refs)
        #expect(shared == [.notify([Self.second], .live)], "no rejoin, no push")
        #expect(machine.bindings == [F.inserts] && machine.currentJoinRef == joinRef)
        // Both receive the binding's changes; the first leaving changes nothing on the server.
        let change = machine.receive(F.change(type: "INSERT", ids: [7]), refs: &refs)
        #expect(Self.notified(change).keys.sorted { $0.rawValue < $1.rawValue } == [Self.first, Self.second])
        #expect(machine.unsubscribe(Self.first, refs: &refs).isEmpty)
        #expect(machine.subscribers == [Self.second] && machine.isLive)
    }

    @Test("a new binding rejoins with the longer list; every subscriber hears rejoining, then live")
    func newBindingRejoins() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let oldRef = try F.joinLive(&machine, [F.inserts], refs: &refs, ids: [1])
        let rebind = machine.subscribe(Self.second, to: F.updates, refs: &refs)
        let join = try #require(F.pushes(rebind).first)
        #expect(join.event == .join && join.joinRef != oldRef)
        #expect(join.payload == JoinPayload(postgresChanges: [F.inserts, F.updates], accessToken: "token-1").jsonValue)
        #expect(Self.notified(rebind) == [Self.first: [.notLive(.rejoining)], Self.second: [.notLive(.rejoining)]])
        let newRef = try #require(join.joinRef)
        _ = machine.receive(F.okReply(joinRef: newRef, ids: [1, 2], bindings: machine.bindings), refs: &refs)
        let live = machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs)
        #expect(live == [.reportStatus(.live), .notify([Self.first, Self.second], .live)])
    }

    @Test("the last subscriber of a binding rejoins without it; the last subscriber of the channel leaves")
    func lastSubscriberUnbindsThenLeaves() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, [F.inserts, F.updates], refs: &refs, ids: [1, 2])
        let unbind = machine.unsubscribe(Self.second, refs: &refs)
        let rejoin = try #require(F.pushes(unbind).first)
        #expect(rejoin.event == .join && rejoin.joinRef != joinRef)
        #expect(machine.bindings == [F.inserts])
        #expect(Self.notified(unbind) == [Self.first: [.notLive(.rejoining)]])
        let leave = machine.unsubscribe(Self.first, refs: &refs)
        let rejoinRef = try #require(rejoin.joinRef)
        #expect(F.pushes(leave).map(\.event) == [.leave])
        #expect(leave.first == .cancelTimer(.joinTimeout(rejoinRef)))
        #expect(machine.subscribers.isEmpty && !machine.isClosed, "closed only once the leave completes")
    }

    @Test("a subscriber arriving while a leave is in flight is kept, and the channel rejoins once the leave completes")
    func subscribeDuringLeaveRejoins() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let leave = try #require(F.pushes(machine.unsubscribe(Self.first, refs: &refs)).first)
        let leaveRef = try #require(leave.ref)
        // The new subscriber waits for the leave: nothing is pushed on top of it.
        #expect(machine.subscribe(Self.second, to: F.updates, refs: &refs).isEmpty)
        let done = machine.receive(F.reply(joinRef: joinRef, ref: leaveRef, status: "ok"), refs: &refs)
        #expect(!done.contains(.removeChannel))
        #expect(Array(done.prefix(2)) == [.cancelTimer(.leaveTimeout(leaveRef)), .reportStatus(.closed(.left))])
        let join = try #require(F.pushes(done).first)
        #expect(join.event == .join && join.joinRef != joinRef)
        #expect(join.payload == JoinPayload(postgresChanges: [F.updates], accessToken: "token-1").jsonValue)
        // The first subscriber was told live before it left; the new one was not, and is now told it is rejoining
        // (as every subscriber of a channel that rejoins after live), then live.
        #expect(Self.notified(done) == [Self.second: [.notLive(.rejoining)]])
        let newRef = try #require(join.joinRef)
        _ = machine.receive(F.okReply(joinRef: newRef, ids: [3], bindings: [F.updates]), refs: &refs)
        #expect(machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs)
            == [.reportStatus(.live), .notify([Self.second], .live)])
    }

    @Test("a leave that times out or loses its socket still rejoins for a subscriber that arrived meanwhile")
    func subscribeDuringLeaveOtherEndings() throws {
        var refs = RefCounter()
        var timedOut = F.machine()
        _ = try F.joinLive(&timedOut, refs: &refs, ids: [1])
        let leaveRef = try #require(F.pushes(timedOut.unsubscribe(Self.first, refs: &refs)).first?.ref)
        _ = timedOut.subscribe(Self.second, to: F.allJobs, refs: &refs)
        let afterTimeout = timedOut.timerFired(.leaveTimeout(leaveRef), refs: &refs)
        #expect(F.pushes(afterTimeout).map(\.event) == [.join])

        var lost = F.machine()
        _ = try F.joinLive(&lost, refs: &refs, ids: [1])
        _ = lost.unsubscribe(Self.first, refs: &refs)
        _ = lost.subscribe(Self.second, to: F.allJobs, refs: &refs)
        let afterLoss = lost.socketClosed(refs: &refs)
        #expect(F.pushes(afterLoss).isEmpty, "the socket is down: the join waits for it")
        #expect(afterLoss.contains(.reportStatus(.joining)) && !afterLoss.contains(.removeChannel))
        #expect(F.pushes(lost.socketOpened(refs: &refs)).map(\.event) == [.join])
    }

    @Test("a subscriber that comes and goes during a leave leaves the channel removed when the leave completes")
    func subscribeAndGoDuringLeave() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let leaveRef = try #require(F.pushes(machine.unsubscribe(Self.first, refs: &refs)).first?.ref)
        #expect(machine.subscribe(Self.second, to: F.allJobs, refs: &refs).isEmpty)
        #expect(machine.unsubscribe(Self.second, refs: &refs).isEmpty, "the leave is already in flight")
        let done = machine.receive(F.reply(joinRef: joinRef, ref: leaveRef, status: "ok"), refs: &refs)
        #expect(done == [.cancelTimer(.leaveTimeout(leaveRef)), .reportStatus(.closed(.left)), .removeChannel])
    }

    @Test("phx_close from the server tells and finishes every subscriber, then the channel is removed")
    func serverCloseFinishesSubscribers() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, [F.inserts, F.updates], refs: &refs, ids: [1, 2])
        _ = machine.subscribe(F.subscriber(3), to: F.inserts, refs: &refs)
        let closed = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
        let reason = Machine.Reason.serverClosed(systemError: nil)
        let everyone = [Self.first, F.subscriber(3), Self.second]
        #expect(closed == [
            .reportStatus(.closed(reason)), .notify(everyone, .notLive(.closed(reason))),
            .finishSubscribers(everyone, reason), .removeChannel,
        ])
    }

    @Test("liveness is told once per change: no repeated notLive for the same cause, live again after recovery")
    func announcementsAreNotRepeated() throws {
        var machine = F.machine()
        var refs = RefCounter()
        _ = try F.joinLive(&machine, refs: &refs, ids: [1])
        let lost = machine.socketClosed(refs: &refs)
        #expect(Self.notified(lost) == [Self.first: [.notLive(.errored(.socketLost))]])
        // The rejoin after the reconnect is not news: the subscriber already knows it is not live.
        let reopened = machine.socketOpened(refs: &refs)
        #expect(Self.notified(reopened).isEmpty)
        let joinRef = try F.joinRef(reopened)
        let refused = machine.receive(F.errorReply(joinRef: joinRef, reason: "Unknown Error on Channel"), refs: &refs)
        let rejected = Machine.Reason.joinRejected(ErrorReason("Unknown Error on Channel"))
        #expect(Self.notified(refused) == [Self.first: [.notLive(.errored(rejected))]], "a new cause is told")
        let retry = try F.joinRef(machine.timerFired(.rejoin, refs: &refs))
        let again = machine.receive(F.errorReply(joinRef: retry, reason: "Unknown Error on Channel"), refs: &refs)
        #expect(Self.notified(again).isEmpty, "the same cause twice in a row is told once")
    }

    @Test("a late heartbeat makes live subscribers not live; its reply makes them live again if still live")
    func socketResponsiveness() throws {
        var machine = F.machine()
        var refs = RefCounter()
        #expect(machine.socketUnresponsive().isEmpty, "nobody was told live")
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        #expect(machine.socketUnresponsive() == [.notify([Self.first], .notLive(.socketUnresponsive))])
        #expect(machine.socketUnresponsive().isEmpty)
        #expect(machine.socketResponsive() == [.notify([Self.first], .live)])
        #expect(machine.socketResponsive().isEmpty, "already told live")
        // Stalled, and meanwhile the subscription broke: the reply does not make it live.
        _ = machine.socketUnresponsive()
        let message = "Unable to subscribe to changes with given parameters"
        _ = machine.receive(
            F.system(joinRef: joinRef, extension: "postgres_changes", status: "error", message: message), refs: &refs)
        #expect(machine.socketResponsive().isEmpty)
    }

    @Test("effects come before observations: timers are scheduled before the status and the notifications")
    func effectsBeforeObservations() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let error = PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: F.topic, event: .error, payload: .object([:]))
        let actions = machine.receive(error, refs: &refs)
        #expect(actions == [
            .scheduleTimer(.rejoin, after: .seconds(1)), .reportStatus(.errored(.serverError)),
            .notify([Self.first], .notLive(.errored(.serverError))),
        ])
    }

    @Test("shutdown forgets the subscribers and leaves; the leave's end removes the channel without a rejoin")
    func shutDownLeaves() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let leave = try #require(F.pushes(machine.shutDown(refs: &refs)).first)
        #expect(leave.event == .leave && machine.subscribers.isEmpty)
        let leaveRef = try #require(leave.ref)
        let done = machine.receive(F.reply(joinRef: joinRef, ref: leaveRef, status: "ok"), refs: &refs)
        #expect(done.last == .removeChannel && F.pushes(done).isEmpty)
    }

    #if DEBUG
    @Test("impossible events trap in debug builds: a timer the machine cancelled, an unknown subscriber")
    func impossibleEventsTrap() async {
        await #expect(processExitsWith: .failure) {
            var machine = ChannelStateMachine(topic: "realtime:t", socketOpen: true, random: SplitMix64(seed: 1))
            var refs = RefCounter()
            _ = machine.timerFired(.rejoin, refs: &refs)
        }
        await #expect(processExitsWith: .failure) {
            var machine = ChannelStateMachine(topic: "realtime:t", socketOpen: true, random: SplitMix64(seed: 1))
            var refs = RefCounter()
            _ = machine.unsubscribe(ChannelStateMachine.SubscriberID(rawValue: 9), refs: &refs)
        }
    }
    #endif
}
