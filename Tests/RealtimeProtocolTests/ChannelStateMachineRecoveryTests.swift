import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Errors, timeouts, closes, stale refs and rejoin schedules of the channel state machine.
@Suite("ChannelStateMachine: errors and recovery")
struct ChannelStateMachineRecoveryTests {
    typealias F = ChannelFixtures
    typealias Machine = ChannelStateMachine

    static func statuses(_ actions: [Machine.Action]) -> [Machine.Status] {
        actions.compactMap { action in
            if case .reportStatus(let status) = action { return status }
            return nil
        }
    }

    @Test("§9.3 join timeout: phx_leave for that attempt, errored, rejoin after 1 s; the late reply is stale")
    func joinTimeout() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let actions = machine.timerFired(.joinTimeout(joinRef), refs: &refs)
        let leave = try #require(F.pushes(actions).first)
        #expect(leave.event == .leave && leave.joinRef == joinRef)
        #expect(Self.statuses(actions) == [.errored(.joinTimedOut)])
        #expect(F.scheduled(actions, .rejoin) == .seconds(1))
        // The reply to the abandoned join arrives late: ignored.
        let late = machine.receive(F.okReply(joinRef: joinRef, ids: [1], bindings: [F.allJobs]), refs: &refs)
        #expect(late == [.ignored(.staleJoinRef)])
        // The rejoin uses a new join ref.
        let rejoin = machine.timerFired(.rejoin, refs: &refs)
        #expect(try F.joinRef(rejoin) != joinRef)
    }

    @Test("§9.3 rejoin schedule 1, 2, 5, 10, 10 s on repeated join errors; reset by a successful join")
    func rejoinSchedule() throws {
        var machine = F.machine()
        var refs = RefCounter()
        var joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        var delays: [Duration] = []
        for _ in 0..<5 {
            let refused = machine.receive(
                F.errorReply(joinRef: joinRef, reason: "UnableToConnectToProject: Realtime was unable to connect"),
                refs: &refs)
            delays.append(try #require(F.scheduled(refused, .rejoin)))
            joinRef = try F.joinRef(machine.timerFired(.rejoin, refs: &refs))
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(10)])
        _ = machine.receive(F.okReply(joinRef: joinRef, ids: [1], bindings: [F.allJobs]), refs: &refs)
        let crashed = machine.receive(F.close(joinRef: joinRef, ref: joinRef).with(event: .error), refs: &refs)
        #expect(F.scheduled(crashed, .rejoin) == .seconds(1), "a successful join resets the schedule")
    }

    @Test("§9.3 rejoin jitter stays within ±20 %")
    func rejoinJitter() throws {
        for seed in 0..<200 as Range<UInt64> {
            var machine = Machine(topic: F.topic, socketOpen: true, random: SplitMix64(seed: seed))
            var refs = RefCounter()
            let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
            let refusal = F.errorReply(joinRef: joinRef, reason: "Unknown Error on Channel")
            let actions = machine.receive(refusal, refs: &refs)
            let delay = try #require(F.scheduled(actions, .rejoin))
            #expect(delay >= .milliseconds(800) && delay <= .milliseconds(1_200))
        }
    }

    @Test("§4.4 join error reply: errored with the reason, rejoin scheduled")
    func joinErrorReply() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let reason = "Unauthorized: You do not have permissions to read from this Channel topic: jobs-1"
        let actions = machine.receive(F.errorReply(joinRef: joinRef, reason: reason), refs: &refs)
        #expect(Self.statuses(actions) == [.errored(.joinRejected(ErrorReason(reason)))])
        #expect(actions.first == .cancelTimer(.joinTimeout(joinRef)))
        #expect(F.scheduled(actions, .rejoin) == .seconds(1))
    }

    @Test("§9.1 phx_error: errored and rejoin; live again only after the new system ok")
    func phxErrorThenRejoin() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let error = PhoenixMessage(joinRef: joinRef, ref: joinRef, topic: F.topic, event: .error, payload: .object([:]))
        let actions = machine.receive(error, refs: &refs)
        #expect(Self.statuses(actions) == [.errored(.serverError)])
        #expect(!machine.isLive)
        let newRef = try F.joinRef(machine.timerFired(.rejoin, refs: &refs))
        let reply = machine.receive(F.okReply(joinRef: newRef, ids: [1], bindings: [F.allJobs]), refs: &refs)
        #expect(Self.statuses(reply) == [.joined])
        #expect(!machine.isLive, "joined is not live (§4.3)")
        // A system ok still tagged with the old join ref does not make the new join live.
        #expect(machine.receive(F.subscribedOK(joinRef: joinRef), refs: &refs) == [.ignored(.staleJoinRef)])
        #expect(machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs) == F.live)
    }

    @Test("§9.3 socket loss: errored, no timer; rejoin at once when the socket reopens; live after system ok")
    func socketLossRejoin() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let lost = machine.socketClosed(refs: &refs)
        #expect(lost == [
            .reportStatus(.errored(.socketLost)), .notify([F.subscriber(1)], .notLive(.errored(.socketLost))),
        ])
        #expect(machine.receive(F.change(type: "INSERT", ids: [1]), refs: &refs) == [.ignored(.notJoined)])
        let reopened = machine.socketOpened(refs: &refs)
        let newRef = try F.joinRef(reopened)
        #expect(newRef != joinRef)
        _ = machine.receive(F.okReply(joinRef: newRef, ids: [1], bindings: [F.allJobs]), refs: &refs)
        #expect(!machine.isLive)
        #expect(machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs) == F.live)
    }

    @Test("§9.3 an errored channel waiting on its timer rejoins at once when the socket comes back")
    func erroredWaitsForSocket() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        _ = machine.receive(F.errorReply(joinRef: joinRef, reason: "Unknown Error on Channel"), refs: &refs)
        #expect(machine.socketClosed(refs: &refs) == [.cancelTimer(.rejoin)], "no join while the socket is down")
        let reopened = machine.socketOpened(refs: &refs)
        #expect(F.pushes(reopened).map(\.event) == [.join])
    }

    @Test("§9.3 phx_close from the server: closed, no blind rejoin")
    func phxCloseNoRejoin() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let actions = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
        let closed = ChannelStateMachine.Reason.serverClosed(systemError: nil)
        #expect(actions == [
            .reportStatus(.closed(closed)), .notify([F.subscriber(1)], .notLive(.closed(closed))),
            .finishSubscribers([F.subscriber(1)], closed), .removeChannel,
        ])
        #expect(machine.isClosed && machine.subscribers.isEmpty)
        #expect(F.scheduled(actions, .rejoin) == nil)
        #expect(machine.socketOpened(refs: &refs).isEmpty, "a closed channel does not rejoin on reconnect")
    }

    @Test("§8.2 token expiry: system error + phx_close → refresh token, then rejoin with the new token")
    func tokenExpiryRefreshRejoin() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let expired = F.system(joinRef: joinRef, extension: "system", status: "error",
                               message: "Token has expired 0 seconds ago")
        let systemActions = machine.receive(expired, refs: &refs)
        let reason = ErrorReason("Token has expired 0 seconds ago")
        #expect(systemActions == [.notify([F.subscriber(1)], .channelError(reason))])
        let closed = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
        #expect(closed.contains(.refreshTokenThenRejoin))
        #expect(F.scheduled(closed, .rejoin) == nil, "waits for the token, not a timer")
        let rejoin = machine.updateAccessToken("token-fresh", refs: &refs)
        let join = try #require(F.pushes(rejoin).first)
        #expect(join.event == .join)
        #expect(join.payload["access_token"] == .string("token-fresh"))
    }

    @Test("§4.4 a join refused with \"Token has expired\" asks for a token refresh")
    func joinRefusedTokenExpired() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let actions = machine.receive(
            F.errorReply(joinRef: joinRef, reason: "InvalidJWTToken: Token has expired 12 seconds ago"), refs: &refs)
        #expect(actions.contains(.refreshTokenThenRejoin))
        // The refresh fails: rejoin later on the schedule instead of hanging.
        let failed = machine.tokenRefreshFailed()
        #expect(F.scheduled(failed, .rejoin) == .seconds(1))
    }

    @Test("§7.2 rate-limit system error + phx_close: rejoin after a long backoff (10–30 s)")
    func rateLimitedCloseBackoff() throws {
        for seed in 0..<50 as Range<UInt64> {
            var machine = Machine(topic: F.topic, socketOpen: true, random: SplitMix64(seed: seed))
            var refs = RefCounter()
            let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
            let tooMany = F.system(
                joinRef: joinRef, extension: "system", status: "error", message: "Too many messages per second")
            _ = machine.receive(tooMany, refs: &refs)
            let closed = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
            let delay = try #require(F.scheduled(closed, .rejoin))
            #expect(delay >= .seconds(10) && delay <= .seconds(30))
            #expect(Self.statuses(closed) == [.errored(.rateLimited(ErrorReason("Too many messages per second")))])
        }
    }

    @Test("§4.4 a join refused for a rate limit backs off 10–30 s")
    func rateLimitedJoin() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(F.subscribe(&machine, refs: &refs))
        let actions = machine.receive(
            F.errorReply(joinRef: joinRef, reason: "ChannelRateLimitReached: Too many channels"), refs: &refs)
        let delay = try #require(F.scheduled(actions, .rejoin))
        #expect(delay >= .seconds(10) && delay <= .seconds(30))
    }

    @Test("§15.3 duplicate join: the phx_close for the OLD join ref is ignored (V2 and V1 forms)")
    func duplicateJoinOldCloseIgnored() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let oldRef = try F.joinLive(&machine, [F.inserts], refs: &refs, ids: [1])
        // A subscriber with another binding rejoins the same topic with a new join ref.
        let rebind = machine.subscribe(F.subscriber(2), to: F.updates, refs: &refs)
        let newRef = try F.joinRef(rebind)
        #expect(newRef != oldRef)
        // Server: reply to the new join first, then phx_close for the old join (§15.3).
        let reply = machine.receive(F.okReply(joinRef: newRef, ids: [1, 2], bindings: machine.bindings), refs: &refs)
        #expect(Self.statuses(reply) == [.joined])
        #expect(machine.receive(F.close(joinRef: oldRef, ref: oldRef), refs: &refs) == [.ignored(.staleJoinRef)])
        // V1 frames carry no join_ref: the ref (== old join ref) identifies it.
        #expect(machine.receive(F.close(joinRef: nil, ref: oldRef), refs: &refs) == [.ignored(.staleJoinRef)])
        #expect(machine.currentJoinRef == newRef)
        // A V1 close for the current join still closes.
        let v1Close = machine.receive(F.close(joinRef: nil, ref: newRef), refs: &refs)
        #expect(Self.statuses(v1Close) == [.closed(.serverClosed(systemError: nil))])
    }

    @Test("§9.1 stale join_ref guard on replies, system messages and phx_error")
    func staleJoinRefGuard() throws {
        var machine = F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let stale: Ref = "999"
        let error = PhoenixMessage(joinRef: stale, ref: stale, topic: F.topic, event: .error, payload: .object([:]))
        #expect(machine.receive(error, refs: &refs) == [.ignored(.staleJoinRef)])
        let system = F.system(joinRef: stale, extension: "system", status: "error", message: "Token has expired")
        #expect(machine.receive(system, refs: &refs) == [.ignored(.staleJoinRef)])
        #expect(machine.receive(F.errorReply(joinRef: stale, reason: "x"), refs: &refs) == [.ignored(.staleJoinRef)])
        #expect(machine.currentJoinRef == joinRef && machine.isLive)
    }

    @Test("the last subscriber leaving while the socket is down closes at once")
    func leaveWhileSocketDown() throws {
        var machine = F.machine()
        var refs = RefCounter()
        _ = try F.joinLive(&machine, refs: &refs, ids: [1])
        _ = machine.socketClosed(refs: &refs)
        let left = machine.unsubscribe(F.subscriber(1), refs: &refs)
        #expect(left == [.cancelTimer(.rejoin), .reportStatus(.closed(.left)), .removeChannel])
        #expect(machine.isClosed)
    }
}

extension PhoenixMessage {
    /// A copy with another event (test helper).
    func with(event: PhoenixEvent) -> PhoenixMessage {
        var copy = self
        copy.event = event
        return copy
    }
}
