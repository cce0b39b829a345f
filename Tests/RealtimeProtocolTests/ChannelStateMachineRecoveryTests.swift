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
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.join(refs: &refs))
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
        // A stale join-timeout timer for the old attempt does nothing.
        #expect(machine.timerFired(.joinTimeout(joinRef), refs: &refs).isEmpty)
    }

    @Test("§9.3 rejoin schedule 1, 2, 5, 10, 10 s on repeated join errors; reset by a successful join")
    func rejoinSchedule() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        var joinRef = try F.joinRef(machine.join(refs: &refs))
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
            var machine = try #require(Machine(
                topic: F.topic, bindings: [F.allJobs], socketOpen: true, random: JitterGenerator(seed: seed)))
            var refs = RefCounter()
            let joinRef = try F.joinRef(machine.join(refs: &refs))
            let refusal = F.errorReply(joinRef: joinRef, reason: "Unknown Error on Channel")
            let actions = machine.receive(refusal, refs: &refs)
            let delay = try #require(F.scheduled(actions, .rejoin))
            #expect(delay >= .milliseconds(800) && delay <= .milliseconds(1_200))
        }
    }

    @Test("§4.4 join error reply: errored with the reason, rejoin scheduled")
    func joinErrorReply() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.join(refs: &refs))
        let reason = "Unauthorized: You do not have permissions to read from this Channel topic: jobs-1"
        let actions = machine.receive(F.errorReply(joinRef: joinRef, reason: reason), refs: &refs)
        #expect(Self.statuses(actions) == [.errored(.joinRejected(ErrorReason(reason)))])
        #expect(actions.first == .cancelTimer(.joinTimeout(joinRef)))
        #expect(F.scheduled(actions, .rejoin) == .seconds(1))
    }

    @Test("§9.1 phx_error: errored and rejoin; live again only after the new system ok")
    func phxErrorThenRejoin() throws {
        var machine = try F.machine()
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
        #expect(machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs) == [.reportStatus(.live)])
    }

    @Test("§9.3 socket loss: errored, no timer; rejoin at once when the socket reopens; live after system ok")
    func socketLossRejoin() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let lost = machine.socketClosed()
        #expect(lost == [.reportStatus(.errored(.socketLost))])
        #expect(machine.receive(F.change(type: "INSERT", ids: [1]), refs: &refs) == [.ignored(.notJoined)])
        let reopened = machine.socketOpened(refs: &refs)
        let newRef = try F.joinRef(reopened)
        #expect(newRef != joinRef)
        _ = machine.receive(F.okReply(joinRef: newRef, ids: [1], bindings: [F.allJobs]), refs: &refs)
        #expect(!machine.isLive)
        #expect(machine.receive(F.subscribedOK(joinRef: newRef), refs: &refs) == [.reportStatus(.live)])
    }

    @Test("§9.3 an errored channel waiting on its timer rejoins at once when the socket comes back")
    func erroredWaitsForSocket() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.join(refs: &refs))
        _ = machine.receive(F.errorReply(joinRef: joinRef, reason: "Unknown Error on Channel"), refs: &refs)
        #expect(machine.socketClosed() == [.cancelTimer(.rejoin)])
        #expect(machine.timerFired(.rejoin, refs: &refs).isEmpty, "no join while the socket is down")
        let reopened = machine.socketOpened(refs: &refs)
        #expect(F.pushes(reopened).map(\.event) == [.join])
    }

    @Test("§9.3 phx_close from the server: closed, no blind rejoin")
    func phxCloseNoRejoin() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let actions = machine.receive(F.close(joinRef: joinRef, ref: joinRef), refs: &refs)
        #expect(actions == [.reportStatus(.closed(.serverClosed(systemError: nil)))])
        #expect(machine.isClosed)
        #expect(machine.timerFired(.rejoin, refs: &refs).isEmpty)
        #expect(machine.socketOpened(refs: &refs).isEmpty, "a closed channel does not rejoin on reconnect")
    }

    @Test("§8.2 token expiry: system error + phx_close → refresh token, then rejoin with the new token")
    func tokenExpiryRefreshRejoin() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        let expired = F.system(joinRef: joinRef, extension: "system", status: "error",
                               message: "Token has expired 0 seconds ago")
        let systemActions = machine.receive(expired, refs: &refs)
        #expect(systemActions == [.reportSystemError(ErrorReason("Token has expired 0 seconds ago"))])
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
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.join(refs: &refs))
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
            var machine = try #require(Machine(
                topic: F.topic, bindings: [F.allJobs], socketOpen: true, random: JitterGenerator(seed: seed)))
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
        var machine = try F.machine()
        var refs = RefCounter()
        let joinRef = try F.joinRef(machine.join(refs: &refs))
        let actions = machine.receive(
            F.errorReply(joinRef: joinRef, reason: "ChannelRateLimitReached: Too many channels"), refs: &refs)
        let delay = try #require(F.scheduled(actions, .rejoin))
        #expect(delay >= .seconds(10) && delay <= .seconds(30))
    }

    @Test("§15.3 duplicate join: the phx_close for the OLD join ref is ignored (V2 and V1 forms)")
    func duplicateJoinOldCloseIgnored() throws {
        var machine = try F.machine([F.inserts])
        var refs = RefCounter()
        let oldRef = try F.joinLive(&machine, refs: &refs, ids: [1])
        // Adding a binding rejoins the same topic with a new join ref.
        let rebind = try #require(machine.updateBindings([F.inserts, F.updates], refs: &refs))
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
        var machine = try F.machine()
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

    @Test("a leave while the socket is down closes at once")
    func leaveWhileSocketDown() throws {
        var machine = try F.machine()
        var refs = RefCounter()
        _ = try F.joinLive(&machine, refs: &refs, ids: [1])
        _ = machine.socketClosed()
        #expect(machine.leave(refs: &refs) == [.cancelTimer(.rejoin), .reportStatus(.closed(.left))])
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
