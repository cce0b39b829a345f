/// How the client currently learns about changes.
public enum TransportMode: String, Sendable, Hashable {
    /// Realtime is live and a reconciliation succeeded since: changes arrive over the socket.
    case live
    /// Realtime is not live (or not reconciled yet): REST polling with backoff.
    case polling
    /// Realtime is not live and the last REST request failed: retrying with backoff.
    case offline
}

/// The decisions of ``JobSyncClient``'s run loop: when to reconcile, poll, audit, and fetch newly watched ids.
///
/// Synchronous, no I/O, no clock: the driver feeds events (feed live/not live, timers fired, request results) and
/// executes the returned actions in order. Delays are returned as ranges; the driver picks a delay inside (full
/// jitter). Timers carry tokens: a timer whose token the machine no longer expects is ignored (cancelled or
/// superseded), so the driver never cancels one.
///
/// Two independent parts:
/// - the transport (``State``): `polling` while the feed is not live, `reconciling` while it is live but not caught
///   up, `live` once a catch-up started after `live` succeeded; each case holds only what is meaningful there;
/// - the fetch of newly watched ids (``FetchState``): one request at a time, retried with backoff while it fails.
///
/// The audit while live is adaptive: every ``Configuration/openAuditInterval`` while some job is open (the driver
/// reports it with ``jobsOpenChanged(_:)``), every ``Configuration/auditInterval`` while none is. Watching a new job
/// while the long timer is pending replaces it with a short one at once; when the last job finishes, the pending
/// short timer still fires (one more short audit) and the long interval applies from then on.
struct SyncStateMachine: Sendable {
    /// Settings (all documented on ``JobSyncClient/Configuration``).
    struct Configuration: Sendable, Hashable {
        var realtimeEnabled: Bool
        var initialPollDelay: Duration = .seconds(1)
        var maximumPollDelay: Duration = .seconds(30)
        /// The audit interval while no job is open.
        var auditInterval: Duration = .seconds(30)
        /// The audit interval while some job is open.
        var openAuditInterval: Duration = .seconds(5)
        var deletionSweepInterval: Duration = .seconds(300)
    }

    /// What a catch-up request is for.
    enum CatchUp: Sendable, Hashable {
        /// The catch-up after the feed became live (by ids, or by watermark in all-jobs mode).
        case reconcile
        /// A poll while the feed is not live.
        case poll
        /// The periodic safety poll while live: a cheap watermark read (`id` and `updated_at` only), then full rows
        /// only for the ids the store has older.
        case audit
        /// An audit that reads the unfinished jobs by id instead (every ``Configuration/deletionSweepInterval``):
        /// the only read that finds a deletion the feed dropped, since a watermark read cannot see a deleted row.
        case sweep
    }

    /// What the driver must do.
    enum Action: Sendable, Hashable {
        /// Run a catch-up now and report ``catchUpSucceeded(changesSeen:)`` or ``catchUpFailed(retryAfter:)``.
        case startCatchUp(CatchUp)
        /// Sleep a random delay in `minimum...maximum`, then report ``pollTimerFired(token:)``.
        case schedulePoll(token: Int, minimum: Duration, maximum: Duration)
        /// Sleep `delay`, then report ``auditTimerFired(token:)``.
        case scheduleAudit(token: Int, delay: Duration)
        /// The transport mode changed.
        case modeChanged(TransportMode)
        /// Fetch every pending newly watched id now (none pending: report success at once) and report
        /// ``fetchSucceeded()`` or ``fetchFailed(retryAfter:)``.
        case startFetch
        /// Sleep a random delay in `minimum...maximum`, then report ``fetchRetryTimerFired(token:)``.
        case scheduleFetchRetry(token: Int, minimum: Duration, maximum: Duration)
    }

    /// The transport: what is known about the feed, and the catch-up or timer that follows from it.
    enum State: Sendable, Hashable {
        /// Not started yet.
        case idle
        /// The feed is not live (or realtime is disabled): REST polling with backoff.
        case polling(Polling)
        /// The feed is live but no catch-up started since has succeeded: changes before `live` may be missing.
        case reconciling(Reconciling)
        /// The feed is live and caught up: changes arrive over it; an audit runs every
        /// ``Configuration/openAuditInterval`` while jobs are open, else every ``Configuration/auditInterval``.
        case live(Live)
    }

    /// The backoff shared by polling and reconciling: it carries over when the feed becomes live, so a failing
    /// REST side keeps backing off (and the mode stays offline) until a request succeeds.
    struct Backoff: Sendable, Hashable {
        /// Requests since the last reset (a change seen, a loss of the feed, or live): the next delay's exponent.
        var attempt = 0
        /// Whether the last catch-up failed (mode ``TransportMode/offline``).
        var lastFailed = false
    }

    struct Polling: Sendable, Hashable {
        var backoff: Backoff
        var step: Step

        enum Step: Sendable, Hashable {
            /// A poll timer is pending.
            case waiting(pollTimer: Int)
            /// A poll started while not live is in flight: its result schedules the next poll.
            case polling
            /// A catch-up started before the feed was lost is in flight. Its read may predate the loss, so it neither
            /// reconciles nor replaces the first poll: that is the timer set at the loss (`nil` once it fired: the
            /// poll starts when this catch-up finishes).
            case outlived(CatchUp, pollTimer: Int?)
        }
    }

    struct Reconciling: Sendable, Hashable {
        var backoff: Backoff
        var step: Step

        enum Step: Sendable, Hashable {
            /// The last reconciliation failed; it is retried when this poll timer fires.
            case waiting(pollTimer: Int)
            /// A reconciliation started while live is in flight: its success means caught up.
            case reconciling
            /// A catch-up started before `live` is in flight: it is worth nothing, a reconciliation follows it.
            case stale(CatchUp)
        }
    }

    enum Live: Sendable, Hashable {
        /// The next audit is pending, `delay` after the previous one ended; `minimum` is the server's `Retry-After`
        /// after a failed one (else zero): a shorter interval never brings the audit before it.
        case waiting(auditTimer: Int, delay: Duration, minimum: Duration)
        /// An audit (``CatchUp/audit`` or ``CatchUp/sweep``) is in flight.
        case auditing(CatchUp)
    }

    /// The fetch of newly watched ids, independent of the transport: one request at a time; ids watched while one
    /// runs are fetched by it or by the next.
    enum FetchState: Sendable, Hashable {
        /// Nothing to fetch.
        case idle
        /// A fetch is in flight; `again` when more ids were watched since it started. `failures` in a row before it.
        case fetching(failures: Int, again: Bool)
        /// The last fetch failed; the retry timer is pending (ids watched meanwhile wait for it).
        case retrying(fetchRetryTimer: Int, failures: Int)
    }

    let configuration: Configuration
    private(set) var state: State = .idle
    private(set) var fetch: FetchState = .idle
    /// Whether some job is open (the driver's last ``jobsOpenChanged(_:)``): audits use the short interval.
    private(set) var jobsOpen: Bool
    /// Audit time to go before the next audit is a deletion sweep: the delays of the audit timers that fired are
    /// subtracted (the machine has no clock). Kept across losses of the feed, so that a feed flapping more often
    /// than the sweep interval still gets its sweeps.
    private var untilSweep: Duration
    private var nextToken = 0

    init(configuration: Configuration, jobsOpen: Bool = false) {
        self.configuration = configuration
        self.jobsOpen = jobsOpen
        self.untilSweep = configuration.deletionSweepInterval
    }

    /// The transport mode the actions returned so far announced.
    var mode: TransportMode {
        switch self.state {
        case .idle: return .polling
        case .polling(let polling): return polling.backoff.lastFailed ? .offline : .polling
        case .reconciling(let reconciling): return reconciling.backoff.lastFailed ? .offline : .polling
        case .live: return .live
        }
    }

    /// Whether the feed is live (caught up or not).
    var feedLive: Bool {
        switch self.state {
        case .idle, .polling: return false
        case .reconciling, .live: return true
        }
    }

    // MARK: Transport events

    /// The driver started; `fetchWanted` when ids are already waiting to be fetched.
    mutating func start(fetchWanted: Bool = false) -> [Action] {
        guard case .idle = self.state else {
            assertionFailure("start() in state \(self.state)")
            return []
        }
        let fetch = fetchWanted ? self.fetchWanted() : []
        if !self.configuration.realtimeEnabled {
            // No realtime at all: poll at once.
            self.state = .polling(Polling(backoff: Backoff(), step: .polling))
            return fetch + [.startCatchUp(.poll)]
        }
        let (token, action) = self.schedulePoll(minimum: .zero, maximum: self.configuration.initialPollDelay)
        self.state = .polling(Polling(backoff: Backoff(), step: .waiting(pollTimer: token)))
        return fetch + [action]
    }

    /// Every subscription of the feed is live. Nothing happens when it already was.
    mutating func feedBecameLive() -> [Action] {
        let before = self.mode
        let actions: [Action]
        switch self.state {
        case .idle:
            assertionFailure("feedBecameLive() in state \(self.state)")
            actions = []
        case .polling(let polling):
            guard self.configuration.realtimeEnabled else {
                assertionFailure("feedBecameLive() with realtime disabled, in state \(self.state)")
                return []
            }
            // Subscribe first, then reconcile: only a catch-up started now covers the gap before `live`. A pending
            // poll timer is dropped (it fires into a state that no longer expects it).
            switch polling.step {
            case .waiting:
                self.state = .reconciling(Reconciling(backoff: polling.backoff, step: .reconciling))
                actions = [.startCatchUp(.reconcile)]
            case .polling:
                self.state = .reconciling(Reconciling(backoff: polling.backoff, step: .stale(.poll)))
                actions = []
            case .outlived(let kind, _):
                self.state = .reconciling(Reconciling(backoff: polling.backoff, step: .stale(kind)))
                actions = []
            }
        case .reconciling, .live:
            actions = []  // already live (e.g. a new subscription set with no channel)
        }
        return self.announcingMode(since: before, actions)
    }

    /// Some subscription of the feed is not live: changes may be missed. Nothing happens when it already was not.
    mutating func feedBecameNotLive() -> [Action] {
        let before = self.mode
        let inFlight: CatchUp?
        let lastFailed: Bool
        switch self.state {
        case .idle:
            assertionFailure("feedBecameNotLive() in state \(self.state)")
            return []
        case .polling:
            return []
        case .reconciling(let reconciling):
            lastFailed = reconciling.backoff.lastFailed
            switch reconciling.step {
            case .waiting: inFlight = nil
            case .reconciling: inFlight = .reconcile
            case .stale(let kind): inFlight = kind
            }
        case .live(let live):
            lastFailed = false
            switch live {
            case .waiting: inFlight = nil
            case .auditing(let kind): inFlight = kind
            }
        }
        // The first poll within `initialPollDelay` of the loss, whatever poll was pending (it supersedes it). A
        // catch-up in flight may have read before the loss: it neither reconciles nor replaces that poll.
        let (token, action) = self.schedulePoll(minimum: .zero, maximum: self.configuration.initialPollDelay)
        let step: Polling.Step = inFlight.map { .outlived($0, pollTimer: token) } ?? .waiting(pollTimer: token)
        self.state = .polling(Polling(backoff: Backoff(attempt: 0, lastFailed: lastFailed), step: step))
        return self.announcingMode(since: before, [action])
    }

    /// A poll timer fired.
    mutating func pollTimerFired(token: Int) -> [Action] {
        switch self.state {
        case .idle:
            assertionFailure("pollTimerFired(token:) in state \(self.state)")
            return []
        case .polling(var polling):
            switch polling.step {
            case .waiting(let pollTimer) where pollTimer == token:
                polling.step = .polling
                self.state = .polling(polling)
                return [.startCatchUp(.poll)]
            case .outlived(let kind, let pollTimer?) where pollTimer == token:
                // The poll starts when the catch-up in flight finishes.
                polling.step = .outlived(kind, pollTimer: nil)
                self.state = .polling(polling)
                return []
            case .waiting, .polling, .outlived:
                return []  // cancelled or superseded
            }
        case .reconciling(var reconciling):
            switch reconciling.step {
            case .waiting(let pollTimer) where pollTimer == token:
                reconciling.step = .reconciling
                self.state = .reconciling(reconciling)
                return [.startCatchUp(.reconcile)]
            case .waiting, .reconciling, .stale:
                return []
            }
        case .live:
            return []  // polling stopped when the feed caught up
        }
    }

    /// An audit timer fired.
    mutating func auditTimerFired(token: Int) -> [Action] {
        switch self.state {
        case .idle:
            assertionFailure("auditTimerFired(token:) in state \(self.state)")
            return []
        case .polling, .reconciling:
            return []  // audits stopped when the feed was lost
        case .live(.waiting(let auditTimer, let delay, _)) where auditTimer == token:
            self.untilSweep -= delay
            guard self.untilSweep <= .zero else {
                self.state = .live(.auditing(.audit))
                return [.startCatchUp(.audit)]
            }
            self.untilSweep = self.configuration.deletionSweepInterval
            self.state = .live(.auditing(.sweep))
            return [.startCatchUp(.sweep)]
        case .live(.waiting), .live(.auditing):
            return []  // superseded
        }
    }

    /// The catch-up in flight succeeded; `changesSeen` when it advanced some job, `moreToRead` when its read stopped
    /// at the source's row cap: then the next read of the same kind starts at once (it continues where this one
    /// stopped), so a backlog larger than the cap is read in consecutive bounded reads, not one per timer.
    mutating func catchUpSucceeded(changesSeen: Bool, moreToRead: Bool = false) -> [Action] {
        let before = self.mode
        let actions: [Action]
        switch self.state {
        case .idle:
            assertionFailure("catchUpSucceeded(changesSeen:) in state \(self.state)")
            return []
        case .polling(var polling):
            polling.backoff.lastFailed = false
            switch polling.step {
            case .waiting:
                assertionFailure("catchUpSucceeded(changesSeen:) with no catch-up in flight, in state \(self.state)")
                return []
            case .polling where moreToRead:
                polling.backoff.attempt = 0
                actions = [.startCatchUp(.poll)]
            case .polling:
                // Back off while nothing changes, start over when something did.
                polling.backoff.attempt = changesSeen ? 0 : polling.backoff.attempt + 1
                let (token, action) = self.schedulePoll(
                    minimum: .zero, maximum: self.backoff(attempt: polling.backoff.attempt))
                polling.step = .waiting(pollTimer: token)
                actions = [action]
            case .outlived(_, let pollTimer?):
                // The poll timer set at the loss starts the first poll (no backoff from this catch-up).
                polling.step = .waiting(pollTimer: pollTimer)
                actions = []
            case .outlived(_, nil):
                polling.step = .polling
                actions = [.startCatchUp(.poll)]
            }
            self.state = .polling(polling)
        case .reconciling(var reconciling):
            switch reconciling.step {
            case .waiting:
                assertionFailure("catchUpSucceeded(changesSeen:) with no catch-up in flight, in state \(self.state)")
                return []
            case .reconciling where moreToRead:
                reconciling.backoff.lastFailed = false
                self.state = .reconciling(reconciling)
                actions = [.startCatchUp(.reconcile)]
            case .reconciling:
                // Live and caught up: polling stops, audits start.
                let (timer, action) = self.scheduleAudit(atLeast: nil)
                self.state = .live(timer)
                actions = [action]
            case .stale:
                reconciling.backoff.lastFailed = false
                reconciling.step = .reconciling
                self.state = .reconciling(reconciling)
                actions = [.startCatchUp(.reconcile)]
            }
        case .live(.waiting):
            assertionFailure("catchUpSucceeded(changesSeen:) with no catch-up in flight, in state \(self.state)")
            return []
        case .live(.auditing) where moreToRead:
            self.state = .live(.auditing(.audit))
            actions = [.startCatchUp(.audit)]
        case .live(.auditing):
            let (timer, action) = self.scheduleAudit(atLeast: nil)
            self.state = .live(timer)
            actions = [action]
        }
        return self.announcingMode(since: before, actions)
    }

    /// The catch-up in flight failed; `retryAfter` is the server's hint (429/503), if any.
    mutating func catchUpFailed(retryAfter: Duration?) -> [Action] {
        let before = self.mode
        let action: Action
        switch self.state {
        case .idle:
            assertionFailure("catchUpFailed(retryAfter:) in state \(self.state)")
            return []
        case .polling(var polling):
            switch polling.step {
            case .waiting:
                assertionFailure("catchUpFailed(retryAfter:) with no catch-up in flight, in state \(self.state)")
                return []
            case .polling, .outlived:
                let token: Int
                (token, action) = self.retry(after: &polling.backoff, retryAfter: retryAfter)
                polling.step = .waiting(pollTimer: token)
                self.state = .polling(polling)
            }
        case .reconciling(var reconciling):
            switch reconciling.step {
            case .waiting:
                assertionFailure("catchUpFailed(retryAfter:) with no catch-up in flight, in state \(self.state)")
                return []
            case .reconciling, .stale:
                // Retried as a reconciliation when the timer fires.
                let token: Int
                (token, action) = self.retry(after: &reconciling.backoff, retryAfter: retryAfter)
                reconciling.step = .waiting(pollTimer: token)
                self.state = .reconciling(reconciling)
            }
        case .live(.waiting):
            assertionFailure("catchUpFailed(retryAfter:) with no catch-up in flight, in state \(self.state)")
            return []
        case .live(.auditing(let kind)):
            // The socket is still live: an audit failure does not change the mode.
            if kind == .sweep { self.untilSweep = .zero }  // the next audit sweeps again
            let timer: Live
            (timer, action) = self.scheduleAudit(atLeast: retryAfter)
            self.state = .live(timer)
        }
        return self.announcingMode(since: before, [action])
    }

    // MARK: Open jobs

    /// Whether some job is open changed (driver: in jobs mode, a watched job neither finished nor deleted; in
    /// all-jobs mode, an unfinished job in the store). Reporting the same value again does nothing.
    ///
    /// Opening while a long audit timer is pending replaces it with one of ``Configuration/openAuditInterval``
    /// (the old timer's token is superseded), never earlier than a `Retry-After` the pending one honours (counted
    /// again from now: the machine has no clock). Closing keeps a pending short timer: the next audit after it uses
    /// ``Configuration/auditInterval``.
    mutating func jobsOpenChanged(_ open: Bool) -> [Action] {
        guard open != self.jobsOpen else { return [] }
        self.jobsOpen = open
        guard open, case .live(.waiting(_, let delay, let minimum)) = self.state,
            delay > max(self.configuration.openAuditInterval, minimum)
        else { return [] }
        let (timer, action) = self.scheduleAudit(atLeast: minimum)
        self.state = .live(timer)
        return [action]
    }

    /// The audit interval that applies now.
    var auditInterval: Duration {
        self.jobsOpen ? self.configuration.openAuditInterval : self.configuration.auditInterval
    }

    // MARK: Fetch events

    /// Ids were watched (or a truncated change's row must be read again): they wait in the driver's pending set.
    mutating func fetchWanted() -> [Action] {
        switch self.fetch {
        case .idle:
            self.fetch = .fetching(failures: 0, again: false)
            return [.startFetch]
        case .fetching(let failures, _):
            self.fetch = .fetching(failures: failures, again: true)
            return []
        case .retrying:
            return []  // the retry takes them
        }
    }

    /// The fetch in flight succeeded.
    mutating func fetchSucceeded() -> [Action] {
        switch self.fetch {
        case .fetching(_, let again):
            guard again else {
                self.fetch = .idle
                return []
            }
            self.fetch = .fetching(failures: 0, again: false)
            return [.startFetch]
        case .idle, .retrying:
            assertionFailure("fetchSucceeded() with no fetch in flight, in state \(self.fetch)")
            return []
        }
    }

    /// The fetch in flight failed (its ids are pending again); `retryAfter` is the server's hint, if any.
    mutating func fetchFailed(retryAfter: Duration?) -> [Action] {
        switch self.fetch {
        case .fetching(let failures, _):
            let failures = failures + 1
            let minimum = retryAfter ?? .zero
            let maximum = max(minimum, self.backoff(attempt: failures))
            self.nextToken += 1
            self.fetch = .retrying(fetchRetryTimer: self.nextToken, failures: failures)
            return [.scheduleFetchRetry(token: self.nextToken, minimum: minimum, maximum: maximum)]
        case .idle, .retrying:
            assertionFailure("fetchFailed(retryAfter:) with no fetch in flight, in state \(self.fetch)")
            return []
        }
    }

    /// A fetch retry timer fired.
    mutating func fetchRetryTimerFired(token: Int) -> [Action] {
        switch self.fetch {
        case .retrying(let timer, let failures) where timer == token:
            self.fetch = .fetching(failures: failures, again: false)
            return [.startFetch]
        case .idle, .fetching, .retrying:
            return []
        }
    }

    // MARK: Helpers

    /// `actions`, then ``Action/modeChanged(_:)`` when the mode is no longer `before`.
    private func announcingMode(since before: TransportMode, _ actions: [Action]) -> [Action] {
        let after = self.mode
        return after == before ? actions : actions + [.modeChanged(after)]
    }

    private mutating func schedulePoll(minimum: Duration, maximum: Duration) -> (Int, Action) {
        self.nextToken += 1
        return (self.nextToken, .schedulePoll(token: self.nextToken, minimum: minimum, maximum: maximum))
    }

    /// The next audit timer, after the interval that applies now (at least `minimum`, a server's `Retry-After`).
    private mutating func scheduleAudit(atLeast minimum: Duration?) -> (Live, Action) {
        self.nextToken += 1
        let delay = max(self.auditInterval, minimum ?? .zero)
        let token = self.nextToken
        return (
            .waiting(auditTimer: token, delay: delay, minimum: minimum ?? .zero),
            .scheduleAudit(token: token, delay: delay)
        )
    }

    /// After a failed catch-up: the next attempt after the backoff, at least `retryAfter`; mode offline.
    private mutating func retry(after backoff: inout Backoff, retryAfter: Duration?) -> (Int, Action) {
        backoff.attempt += 1
        backoff.lastFailed = true
        let minimum = retryAfter ?? .zero
        return self.schedulePoll(minimum: minimum, maximum: max(minimum, self.backoff(attempt: backoff.attempt)))
    }

    /// The backoff ceiling for an attempt: 1 s, 2 s, 4 s, … capped at 30 s.
    func backoff(attempt: Int) -> Duration {
        let exponent = min(attempt, 20)
        let ceiling = self.configuration.initialPollDelay * (1 << exponent)
        return min(ceiling, self.configuration.maximumPollDelay)
    }
}
