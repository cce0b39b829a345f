import Testing

@testable import JobSync

@Suite("SyncStateMachine: reconcile, poll, backoff, audit")
struct SyncStateMachineTests {
    func machine(realtime: Bool = true) -> SyncStateMachine {
        SyncStateMachine(configuration: .init(realtimeEnabled: realtime))
    }

    func pollToken(_ actions: [SyncStateMachine.Action]) -> (Int, Duration, Duration)? {
        for case .schedulePoll(let token, let minimum, let maximum) in actions { return (token, minimum, maximum) }
        return nil
    }

    func auditToken(_ actions: [SyncStateMachine.Action]) -> Int? {
        for case .scheduleAudit(let token, _) in actions { return token }
        return nil
    }

    @Test("a read stopped at the row cap is continued at once, in every state; an uncapped one waits for its timer")
    func cappedReadContinues() throws {
        var m = self.machine(realtime: false)
        #expect(m.start() == [.startCatchUp(.poll)])
        #expect(m.catchUpSucceeded(changesSeen: true, moreToRead: true) == [.startCatchUp(.poll)])
        #expect(self.pollToken(m.catchUpSucceeded(changesSeen: true)) != nil)

        var live = self.machine()
        _ = live.start()
        #expect(live.feedBecameLive() == [.startCatchUp(.reconcile)])
        #expect(live.catchUpSucceeded(changesSeen: true, moreToRead: true) == [.startCatchUp(.reconcile)])
        #expect(live.mode != .live)  // not caught up until a read ends below the cap
        let audit = try #require(self.auditToken(live.catchUpSucceeded(changesSeen: true)))
        #expect(live.mode == .live)
        #expect(live.auditTimerFired(token: audit) == [.startCatchUp(.audit)])
        #expect(live.catchUpSucceeded(changesSeen: true, moreToRead: true) == [.startCatchUp(.audit)])
        #expect(self.auditToken(live.catchUpSucceeded(changesSeen: false)) != nil)
    }

    @Test("realtime disabled: the first poll starts at once")
    func disabledPollsAtOnce() {
        var m = self.machine(realtime: false)
        #expect(m.start() == [.startCatchUp(.poll)])
        #expect(m.mode == .polling)
    }

    @Test("realtime enabled: the first poll is scheduled within 1 s (full jitter over 0…1 s)")
    func firstPollWithinOneSecond() throws {
        var m = self.machine()
        let (_, minimum, maximum) = try #require(self.pollToken(m.start()))
        #expect(minimum == .zero)
        #expect(maximum == .seconds(1))
    }

    @Test("§10 live → reconcile; success → live mode, polling stops, audit every 30 s")
    func liveReconcileThenAudit() throws {
        var m = self.machine()
        let (token, _, _) = try #require(self.pollToken(m.start()))
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])
        let done = m.catchUpSucceeded(changesSeen: false)
        #expect(done.contains(.modeChanged(.live)))
        guard case .scheduleAudit(let auditToken, let delay)? = done.first else {
            Issue.record("expected an audit")
            return
        }
        #expect(delay == .seconds(30))
        #expect(m.pollTimerFired(token: token) == [])  // the old poll timer no longer polls
        #expect(m.auditTimerFired(token: auditToken) == [.startCatchUp(.audit)])
        guard case .scheduleAudit? = m.catchUpSucceeded(changesSeen: false).first else {
            Issue.record("the audit repeats")
            return
        }
    }

    @Test("every deletion-sweep interval one audit reads by id (a dropped DELETE); a failed sweep is retried next")
    func deletionSweep() throws {
        var m = SyncStateMachine(
            configuration: .init(realtimeEnabled: true, auditInterval: .seconds(30), deletionSweepInterval: .seconds(90)))
        _ = m.start()
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])
        var audit = try #require(self.auditToken(m.catchUpSucceeded(changesSeen: false)))
        var kinds: [SyncStateMachine.CatchUp] = []
        for _ in 0..<6 {
            for case .startCatchUp(let kind) in m.auditTimerFired(token: audit) { kinds.append(kind) }
            audit = try #require(self.auditToken(m.catchUpSucceeded(changesSeen: false)))
        }
        #expect(kinds == [.audit, .audit, .sweep, .audit, .audit, .sweep])
        for kind in [SyncStateMachine.CatchUp.audit, .audit] {
            #expect(m.auditTimerFired(token: audit) == [.startCatchUp(kind)])
            audit = try #require(self.auditToken(m.catchUpSucceeded(changesSeen: false)))
        }
        #expect(m.auditTimerFired(token: audit) == [.startCatchUp(.sweep)])
        audit = try #require(self.auditToken(m.catchUpFailed(retryAfter: nil)))  // still live: audits go on
        #expect(m.mode == .live)
        #expect(m.auditTimerFired(token: audit) == [.startCatchUp(.sweep)])
    }

    func auditDelay(_ actions: [SyncStateMachine.Action]) -> (Int, Duration)? {
        for case .scheduleAudit(let token, let delay) in actions { return (token, delay) }
        return nil
    }

    /// A machine that is live and caught up, with `open` reported before the feed became live.
    func liveMachine(open: Bool, sweep: Duration = .seconds(300)) throws -> (SyncStateMachine, Int, Duration) {
        var m = SyncStateMachine(configuration: .init(realtimeEnabled: true, deletionSweepInterval: sweep))
        #expect(m.jobsOpenChanged(open) == [])  // idle: nothing to do yet
        _ = m.start()
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])
        let (token, delay) = try #require(self.auditDelay(m.catchUpSucceeded(changesSeen: false)))
        return (m, token, delay)
    }

    @Test("adaptive audit: every 5 s while a job is open, every 30 s while none is; the same report again is no event")
    func auditIntervalFollowsOpenJobs() throws {
        var (open, token, delay) = try self.liveMachine(open: true)
        #expect(delay == .seconds(5))
        #expect(open.jobsOpenChanged(true) == [])
        for _ in 0..<3 {
            #expect(open.auditTimerFired(token: token) == [.startCatchUp(.audit)])
            (token, delay) = try #require(self.auditDelay(open.catchUpSucceeded(changesSeen: false)))
            #expect(delay == .seconds(5))
        }
        // A failed audit is retried at the same interval (at least Retry-After).
        #expect(open.auditTimerFired(token: token) == [.startCatchUp(.audit)])
        #expect(self.auditDelay(open.catchUpFailed(retryAfter: nil))?.1 == .seconds(5))

        var (quiet, quietToken, quietDelay) = try self.liveMachine(open: false)
        #expect(quietDelay == .seconds(30))
        #expect(quiet.auditTimerFired(token: quietToken) == [.startCatchUp(.audit)])
        (quietToken, quietDelay) = try #require(self.auditDelay(quiet.catchUpSucceeded(changesSeen: false)))
        #expect(quietDelay == .seconds(30))
        #expect(quiet.jobsOpenChanged(false) == [])
    }

    @Test("a job watched while none is open replaces the pending 30 s audit with a 5 s one at once")
    func openingShortensPendingAudit() throws {
        let (quiet, long, delay) = try self.liveMachine(open: false)
        var m = quiet
        #expect(delay == .seconds(30))
        let (short, shortDelay) = try #require(self.auditDelay(m.jobsOpenChanged(true)))
        #expect(shortDelay == .seconds(5))
        #expect(m.state == .live(.waiting(auditTimer: short, delay: .seconds(5), minimum: .zero)))
        #expect(m.auditTimerFired(token: long) == [])  // superseded
        #expect(m.auditTimerFired(token: short) == [.startCatchUp(.audit)])
        // Opening while an audit is in flight changes nothing now: the audit after it is short.
        let (idle, busyToken, _) = try self.liveMachine(open: false)
        var busy = idle
        #expect(busy.auditTimerFired(token: busyToken) == [.startCatchUp(.audit)])
        #expect(busy.jobsOpenChanged(true) == [])
        #expect(self.auditDelay(busy.catchUpSucceeded(changesSeen: false))?.1 == .seconds(5))
        // After a failed audit with Retry-After, opening never brings the audit before it.
        let (quiet2, failing, _) = try self.liveMachine(open: false)
        var limited = quiet2
        #expect(limited.auditTimerFired(token: failing) == [.startCatchUp(.audit)])
        #expect(self.auditDelay(limited.catchUpFailed(retryAfter: .seconds(10)))?.1 == .seconds(30))
        #expect(self.auditDelay(limited.jobsOpenChanged(true))?.1 == .seconds(10))
        let (quiet3, failing3, _) = try self.liveMachine(open: false)
        var capped = quiet3
        #expect(capped.auditTimerFired(token: failing3) == [.startCatchUp(.audit)])
        #expect(self.auditDelay(capped.catchUpFailed(retryAfter: .seconds(60)))?.1 == .seconds(60))
        #expect(capped.jobsOpenChanged(true) == [])  // the 60 s timer stays
        // Opening while not live: the first audit after the reconciliation is short.
        var polling = self.machine()
        _ = polling.start()
        #expect(polling.jobsOpenChanged(true) == [])
        _ = polling.feedBecameLive()
        #expect(self.auditDelay(polling.catchUpSucceeded(changesSeen: false))?.1 == .seconds(5))
    }

    @Test("when the last job finishes the pending 5 s audit still runs; the audits after it are every 30 s")
    func closingLengthensNextAudit() throws {
        let (open, short, delay) = try self.liveMachine(open: true)
        var m = open
        #expect(delay == .seconds(5))
        #expect(m.jobsOpenChanged(false) == [])  // the short timer stays
        #expect(m.state == .live(.waiting(auditTimer: short, delay: .seconds(5), minimum: .zero)))
        #expect(m.auditTimerFired(token: short) == [.startCatchUp(.audit)])
        let (long, longDelay) = try #require(self.auditDelay(m.catchUpSucceeded(changesSeen: false)))
        #expect(longDelay == .seconds(30))
        // A new job watched again: short at once.
        let (again, againDelay) = try #require(self.auditDelay(m.jobsOpenChanged(true)))
        #expect(againDelay == .seconds(5))
        #expect(m.auditTimerFired(token: long) == [])
        #expect(m.auditTimerFired(token: again) == [.startCatchUp(.audit)])
    }

    @Test("the deletion sweep follows audit time, not audit count: the 60th 5 s audit; after a switch to 30 s, the audit that passes 300 s")
    func sweepByAuditTime() throws {
        var (m, token, _) = try self.liveMachine(open: true)
        var kinds: [SyncStateMachine.CatchUp] = []
        for _ in 0..<120 {
            for case .startCatchUp(let kind) in m.auditTimerFired(token: token) { kinds.append(kind) }
            (token, _) = try #require(self.auditDelay(m.catchUpSucceeded(changesSeen: false)))
        }
        #expect(kinds.indices.filter { kinds[$0] == .sweep } == [59, 119])  // the 60th and the 120th audit
        // Mixed: 30 audits of 5 s (150 s), then none open: the fifth 30 s audit is at 300 s.
        var (mixed, mixedToken, _) = try self.liveMachine(open: true)
        var mixedKinds: [SyncStateMachine.CatchUp] = []
        for n in 0..<36 {
            if n == 30 { #expect(mixed.jobsOpenChanged(false) == []) }
            for case .startCatchUp(let kind) in mixed.auditTimerFired(token: mixedToken) { mixedKinds.append(kind) }
            (mixedToken, _) = try #require(self.auditDelay(mixed.catchUpSucceeded(changesSeen: false)))
        }
        // Audit 31 (index 30) still had the 5 s timer: 155 s; then 185, 215, 245, 275, 305 s.
        #expect(mixedKinds.indices.filter { mixedKinds[$0] == .sweep } == [35])
    }

    @Test("a poll in flight when the feed becomes live does not count as the reconciliation")
    func reconcileAfterInFlightPoll() throws {
        var m = self.machine()
        let (token, _, _) = try #require(self.pollToken(m.start()))
        #expect(m.pollTimerFired(token: token) == [.startCatchUp(.poll)])
        #expect(m.feedBecameLive() == [])
        #expect(m.catchUpSucceeded(changesSeen: true) == [.startCatchUp(.reconcile)])
        #expect(m.catchUpSucceeded(changesSeen: false).contains(.modeChanged(.live)))
    }

    @Test("backoff while nothing changes: 1, 2, 4, 8, 16, 30, 30 s; reset when a change is seen")
    func backoff() throws {
        var m = self.machine(realtime: false)
        _ = m.start()
        var ceilings: [Duration] = []
        for _ in 0..<7 {
            let (token, _, maximum) = try #require(self.pollToken(m.catchUpSucceeded(changesSeen: false)))
            ceilings.append(maximum)
            #expect(m.pollTimerFired(token: token) == [.startCatchUp(.poll)])
        }
        #expect(
            ceilings == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30), .seconds(30)])
        let (_, _, reset) = try #require(self.pollToken(m.catchUpSucceeded(changesSeen: true)))
        #expect(reset == .seconds(1))
    }

    @Test("§11.2 429 with Retry-After: the next poll waits at least that long; mode offline")
    func retryAfterHonoured() throws {
        var m = self.machine(realtime: false)
        _ = m.start()
        let actions = m.catchUpFailed(retryAfter: .seconds(42))
        let (_, minimum, maximum) = try #require(self.pollToken(actions))
        #expect(minimum == .seconds(42))
        #expect(maximum == .seconds(42))
        #expect(actions.contains(.modeChanged(.offline)))
    }

    @Test("losing the feed after live schedules a poll within 1 s and leaves live mode")
    func notLiveAgain() throws {
        var m = self.machine()
        _ = m.start()
        _ = m.feedBecameLive()
        _ = m.catchUpSucceeded(changesSeen: false)
        let actions = m.feedBecameNotLive()
        let (_, _, maximum) = try #require(self.pollToken(actions))
        #expect(maximum == .seconds(1))
        #expect(actions.contains(.modeChanged(.polling)))
    }

    @Test("a reconciliation in flight across a loss and a new live does not count: the next one does")
    func reconcileAcrossLoss() {
        var m = self.machine()
        _ = m.start()
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])
        _ = m.feedBecameNotLive()
        #expect(m.feedBecameLive() == [])
        // Its read may predate the loss: changes in the gap are only covered by a reconciliation started now.
        #expect(m.catchUpSucceeded(changesSeen: false) == [.startCatchUp(.reconcile)])
        #expect(m.mode == .polling)
        #expect(m.catchUpSucceeded(changesSeen: false).contains(.modeChanged(.live)))
    }

    @Test("losing the feed during an audit: the poll timer set at the loss starts the first poll, after the audit")
    func lossDuringAudit() throws {
        var m = self.machine()
        _ = m.start()
        _ = m.feedBecameLive()
        let audit = try #require(self.auditToken(m.catchUpSucceeded(changesSeen: false)))
        #expect(m.auditTimerFired(token: audit) == [.startCatchUp(.audit)])
        let (token, _, maximum) = try #require(self.pollToken(m.feedBecameNotLive()))
        #expect(maximum == .seconds(1))
        // The audit finishing first keeps that timer (no backoff from it) …
        #expect(m.catchUpSucceeded(changesSeen: false) == [])
        #expect(m.pollTimerFired(token: token) == [.startCatchUp(.poll)])

        // … and finishing after it fired starts the poll at once.
        var late = self.machine()
        _ = late.start()
        _ = late.feedBecameLive()
        let audit2 = try #require(self.auditToken(late.catchUpSucceeded(changesSeen: false)))
        #expect(late.auditTimerFired(token: audit2) == [.startCatchUp(.audit)])
        let (token2, _, _) = try #require(self.pollToken(late.feedBecameNotLive()))
        #expect(late.pollTimerFired(token: token2) == [])
        #expect(late.catchUpSucceeded(changesSeen: false) == [.startCatchUp(.poll)])
    }

    @Test("losing the feed supersedes a long pending poll: the first poll still comes within 1 s")
    func lossSupersedesPendingPoll() throws {
        var m = self.machine()
        var (old, _, oldMaximum) = try #require(self.pollToken(m.start()))
        for _ in 0..<5 {  // nothing changes: back off to a long pending poll
            #expect(m.pollTimerFired(token: old) == [.startCatchUp(.poll)])
            (old, _, oldMaximum) = try #require(self.pollToken(m.catchUpSucceeded(changesSeen: false)))
        }
        #expect(oldMaximum == .seconds(30))
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])  // the long poll is still pending
        let (token, _, maximum) = try #require(self.pollToken(m.feedBecameNotLive()))
        #expect(maximum == .seconds(1))
        #expect(m.pollTimerFired(token: old) == [])
        #expect(m.catchUpSucceeded(changesSeen: false) == [])  // the reconciliation outlived the feed
        #expect(m.pollTimerFired(token: token) == [.startCatchUp(.poll)])
    }

    @Test("a failed reconciliation keeps polling (as reconciliation) until one succeeds")
    func failedReconcileRetries() throws {
        var m = self.machine()
        _ = m.start()
        _ = m.feedBecameLive()
        let (token, _, _) = try #require(self.pollToken(m.catchUpFailed(retryAfter: nil)))
        #expect(m.pollTimerFired(token: token) == [.startCatchUp(.reconcile)])
        #expect(m.catchUpSucceeded(changesSeen: false).contains(.modeChanged(.live)))
    }

    @Test("each state holds only what it means: polling → reconciling → live → polling (outlived audit)")
    func stateShapes() throws {
        var m = self.machine()
        let (poll, _, _) = try #require(self.pollToken(m.start()))
        #expect(m.state == .polling(.init(backoff: .init(), step: .waiting(pollTimer: poll))))
        _ = m.feedBecameLive()
        #expect(m.state == .reconciling(.init(backoff: .init(), step: .reconciling)))
        let audit = try #require(self.auditToken(m.catchUpSucceeded(changesSeen: false)))
        #expect(m.state == .live(.waiting(auditTimer: audit, delay: .seconds(30), minimum: .zero)))
        _ = m.auditTimerFired(token: audit)
        #expect(m.state == .live(.auditing(.audit)))
        let (lossPoll, _, _) = try #require(self.pollToken(m.feedBecameNotLive()))
        #expect(m.state == .polling(.init(backoff: .init(), step: .outlived(.audit, pollTimer: lossPoll))))
        #expect(m.feedBecameLive() == [])
        #expect(m.state == .reconciling(.init(backoff: .init(), step: .stale(.audit))))
        #expect(m.feedLive)
    }

    @Test("a failing REST side keeps its backoff and offline mode across live, until a request succeeds")
    func backoffCarriesIntoReconciling() throws {
        var m = self.machine()
        let (token, _, _) = try #require(self.pollToken(m.start()))
        _ = m.pollTimerFired(token: token)
        let (retry, _, first) = try #require(self.pollToken(m.catchUpFailed(retryAfter: nil)))
        #expect(first == .seconds(2))
        #expect(m.mode == .offline)
        #expect(m.feedBecameLive() == [.startCatchUp(.reconcile)])
        #expect(m.mode == .offline)
        let (_, _, second) = try #require(self.pollToken(m.catchUpFailed(retryAfter: nil)))
        #expect(second == .seconds(4))
        #expect(m.pollTimerFired(token: retry) == [])  // superseded
    }

    // MARK: Fetch of newly watched ids

    func fetchRetry(_ actions: [SyncStateMachine.Action]) -> (Int, Duration, Duration)? {
        for case .scheduleFetchRetry(let token, let minimum, let maximum) in actions {
            return (token, minimum, maximum)
        }
        return nil
    }

    @Test("newly watched ids: one fetch at a time; ids watched meanwhile are fetched right after it")
    func fetchOneAtATime() {
        var m = self.machine(realtime: false)
        #expect(m.start(fetchWanted: true) == [.startFetch, .startCatchUp(.poll)])
        #expect(m.fetchWanted() == [])
        #expect(m.fetchWanted() == [])
        #expect(m.fetchSucceeded() == [.startFetch])
        #expect(m.fetchSucceeded() == [])
        #expect(m.fetch == .idle)
        #expect(m.fetchWanted() == [.startFetch])
    }

    @Test("a failed fetch is retried after 2, 4, 8 … 30 s (at least Retry-After); ids watched meanwhile wait for it")
    func fetchBackoff() throws {
        var m = self.machine()
        _ = m.start()
        #expect(m.fetchWanted() == [.startFetch])
        var ceilings: [Duration] = []
        var token = 0
        for _ in 0..<6 {
            let (next, minimum, maximum) = try #require(self.fetchRetry(m.fetchFailed(retryAfter: nil)))
            #expect(minimum == .zero)
            ceilings.append(maximum)
            #expect(m.fetchWanted() == [])  // waits for the retry
            #expect(m.fetchRetryTimerFired(token: token) == [])  // an old timer does nothing
            #expect(m.fetchRetryTimerFired(token: next) == [.startFetch])
            token = next
        }
        #expect(ceilings == [.seconds(2), .seconds(4), .seconds(8), .seconds(16), .seconds(30), .seconds(30)])
        let (_, minimum, maximum) = try #require(self.fetchRetry(m.fetchFailed(retryAfter: .seconds(42))))
        #expect(minimum == .seconds(42))
        #expect(maximum == .seconds(42))
        #expect(m.mode == .polling)  // the fetch never changes the transport mode
        // A success starts the backoff over.
        var fresh = self.machine()
        _ = fresh.start(fetchWanted: true)
        let (retry, _, _) = try #require(self.fetchRetry(fresh.fetchFailed(retryAfter: nil)))
        #expect(fresh.fetchRetryTimerFired(token: retry) == [.startFetch])
        #expect(fresh.fetchSucceeded() == [])
        #expect(fresh.fetchWanted() == [.startFetch])
        let (_, _, reset) = try #require(self.fetchRetry(fresh.fetchFailed(retryAfter: nil)))
        #expect(reset == .seconds(2))
    }
}
