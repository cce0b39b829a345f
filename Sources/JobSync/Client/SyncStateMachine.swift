/// How the client currently learns about changes.
public enum TransportMode: String, Sendable, Hashable {
    /// Realtime is live and a reconciliation succeeded since: changes arrive over the socket.
    case live
    /// Realtime is not live (or not reconciled yet): REST polling with backoff.
    case polling
    /// Realtime is not live and the last REST request failed: retrying with backoff.
    case offline
}

/// The transport-mode state machine of ``JobSyncClient``: when to reconcile, poll and audit.
///
/// Synchronous, no I/O, no clock: the driver feeds events (feed live/not live, timers fired, catch-up results)
/// and executes the returned actions. Delays are returned as ranges; the driver picks a uniformly random delay
/// inside (full jitter).
struct SyncStateMachine: Sendable {
    /// Settings (all documented on ``JobSyncClient/Configuration``).
    struct Configuration: Sendable, Hashable {
        var realtimeEnabled: Bool
        var initialPollDelay: Duration = .seconds(1)
        var maximumPollDelay: Duration = .seconds(30)
        var auditInterval: Duration = .seconds(30)
        var deletionSweepInterval: Duration = .seconds(300)

        /// Every how many audits one is a deletion sweep (at least every audit).
        var auditsPerSweep: Int {
            max(1, Int((self.deletionSweepInterval / self.auditInterval).rounded(.down)))
        }
    }

    /// What a catch-up request is for.
    enum CatchUp: Sendable, Hashable {
        /// The catch-up after the feed became live (by ids, or by watermark in all-jobs mode).
        case reconcile
        /// A poll while the feed is not live.
        case poll
        /// The periodic safety poll while live (one watermark request).
        case audit
        /// An audit that reads the unfinished jobs by id instead (every ``Configuration/deletionSweepInterval``):
        /// the only read that finds a deletion the feed dropped, since a watermark read cannot see a deleted row.
        case sweep
    }

    /// What the driver must do.
    enum Action: Sendable, Hashable {
        /// Run a catch-up now and report its result.
        case startCatchUp(CatchUp)
        /// Sleep a random delay in `minimum...maximum`, then report ``pollTimerFired(token:)``.
        case schedulePoll(token: Int, minimum: Duration, maximum: Duration)
        /// Sleep `delay`, then report ``auditTimerFired(token:)``.
        case scheduleAudit(token: Int, delay: Duration)
        /// The transport mode changed.
        case modeChanged(TransportMode)
    }

    let configuration: Configuration
    private(set) var mode: TransportMode = .polling
    private(set) var feedLive = false
    private(set) var reconciled = false
    private(set) var inFlight: CatchUp?
    /// Whether the in-flight catch-up started after the latest `live` and the feed stayed live since (only then does
    /// it count as reconciliation).
    private var inFlightStartedWhileLive = false
    /// Whether the feed was lost while the in-flight catch-up ran (its poll timer was scheduled at the loss).
    private var inFlightOutlivedFeed = false
    private var reconcileWanted = false
    /// Whether the poll timer fired while a catch-up was in flight: the poll starts when that one finishes.
    private var pollWanted = false
    private(set) var attempt = 0
    private var lastFailed = false
    private var pollToken: Int?
    private var auditToken: Int?
    /// Audits to go before the next one is a deletion sweep.
    private var auditsUntilSweep: Int
    private var nextToken = 0

    init(configuration: Configuration) {
        self.configuration = configuration
        self.auditsUntilSweep = configuration.auditsPerSweep
    }

    /// The driver started.
    mutating func start() -> [Action] {
        if !self.configuration.realtimeEnabled {
            // No realtime at all: poll at once.
            return self.begin(.poll) + self.updateMode()
        }
        return [self.schedulePoll(minimum: .zero, maximum: self.configuration.initialPollDelay)] + self.updateMode()
    }

    /// Every subscription of the feed is live.
    mutating func feedBecameLive() -> [Action] {
        guard self.configuration.realtimeEnabled, !self.feedLive else { return [] }
        self.feedLive = true
        self.reconciled = false
        self.pollWanted = false
        // Subscribe first, then reconcile: only a catch-up started now covers the gap before `live`.
        if self.inFlight == nil { return self.begin(.reconcile) + self.updateMode() }
        self.reconcileWanted = true
        return self.updateMode()
    }

    /// Some subscription of the feed is not live: changes may be missed.
    mutating func feedBecameNotLive() -> [Action] {
        guard self.feedLive else { return [] }
        self.feedLive = false
        self.reconciled = false
        self.reconcileWanted = false
        self.auditToken = nil
        self.attempt = 0
        if self.inFlight != nil {
            // Its read may predate the loss: it neither reconciles nor replaces the first poll.
            self.inFlightStartedWhileLive = false
            self.inFlightOutlivedFeed = true
        }
        // The first poll within `initialPollDelay` of the loss, whatever poll was pending (it supersedes it).
        return [self.schedulePoll(minimum: .zero, maximum: self.configuration.initialPollDelay)] + self.updateMode()
    }

    /// A poll timer fired.
    mutating func pollTimerFired(token: Int) -> [Action] {
        guard token == self.pollToken else { return [] }  // cancelled or superseded
        self.pollToken = nil
        guard !(self.feedLive && self.reconciled) else { return [] }
        guard self.inFlight == nil else {
            self.pollWanted = !self.feedLive
            return []
        }
        return self.begin(self.feedLive ? .reconcile : .poll)
    }

    /// An audit timer fired.
    mutating func auditTimerFired(token: Int) -> [Action] {
        guard token == self.auditToken else { return [] }
        self.auditToken = nil
        guard self.feedLive, self.reconciled else { return [] }
        guard self.inFlight == nil else { return [self.scheduleAudit()] }
        self.auditsUntilSweep -= 1
        guard self.auditsUntilSweep <= 0 else { return self.begin(.audit) }
        self.auditsUntilSweep = self.configuration.auditsPerSweep
        return self.begin(.sweep)
    }

    /// The in-flight catch-up succeeded; `changesSeen` when it advanced some job.
    mutating func catchUpSucceeded(changesSeen: Bool) -> [Action] {
        guard self.inFlight != nil else { return [] }
        let startedWhileLive = self.inFlightStartedWhileLive
        let outlivedFeed = self.inFlightOutlivedFeed
        self.inFlight = nil
        self.inFlightOutlivedFeed = false
        self.lastFailed = false
        if self.feedLive {
            if startedWhileLive {
                // Live and caught up: polling stops, audits start.
                self.reconciled = true
                self.reconcileWanted = false
                self.pollToken = nil
                self.attempt = 0
                return [self.scheduleAudit()] + self.updateMode()
            }
            if self.reconcileWanted {
                self.reconcileWanted = false
                return self.begin(.reconcile) + self.updateMode()
            }
            return self.updateMode()
        }
        if self.pollWanted {
            self.pollWanted = false
            return self.begin(.poll) + self.updateMode()
        }
        if outlivedFeed {
            return self.updateMode()  // the poll timer scheduled at the loss starts the first poll
        }
        // Polling: back off while nothing changes, start over when something did.
        self.attempt = changesSeen ? 0 : self.attempt + 1
        return [self.schedulePoll(minimum: .zero, maximum: self.backoff())] + self.updateMode()
    }

    /// The in-flight catch-up failed; `retryAfter` is the server's hint (429/503), if any.
    mutating func catchUpFailed(retryAfter: Duration?) -> [Action] {
        guard let failed = self.inFlight else { return [] }
        self.inFlight = nil
        self.inFlightOutlivedFeed = false
        self.pollWanted = false
        self.attempt += 1
        self.lastFailed = true
        if failed == .audit || failed == .sweep, self.feedLive, self.reconciled {
            self.lastFailed = false  // the socket is still live: an audit failure does not change the mode
            if failed == .sweep { self.auditsUntilSweep = 1 }  // the next audit sweeps again
            return [self.scheduleAudit(atLeast: retryAfter)]
        }
        let minimum = retryAfter ?? .zero
        let maximum = max(minimum, self.backoff())
        return [self.schedulePoll(minimum: minimum, maximum: maximum)] + self.updateMode()
    }

    /// A change arrived over the feed: the backoff starts over.
    mutating func changeSeen() {
        self.attempt = 0
    }

    // MARK: Helpers

    private mutating func begin(_ kind: CatchUp) -> [Action] {
        self.inFlight = kind
        self.inFlightStartedWhileLive = self.feedLive
        return [.startCatchUp(kind)]
    }

    private mutating func schedulePoll(minimum: Duration, maximum: Duration) -> Action {
        self.nextToken += 1
        self.pollToken = self.nextToken
        return .schedulePoll(token: self.nextToken, minimum: minimum, maximum: maximum)
    }

    private mutating func scheduleAudit(atLeast minimum: Duration? = nil) -> Action {
        self.nextToken += 1
        self.auditToken = self.nextToken
        return .scheduleAudit(token: self.nextToken, delay: max(self.configuration.auditInterval, minimum ?? .zero))
    }

    /// The backoff ceiling for the current attempt: 1 s, 2 s, 4 s, … capped at 30 s.
    func backoff() -> Duration {
        let exponent = min(self.attempt, 20)
        let ceiling = self.configuration.initialPollDelay * (1 << exponent)
        return min(ceiling, self.configuration.maximumPollDelay)
    }

    private mutating func updateMode() -> [Action] {
        let mode: TransportMode = self.feedLive && self.reconciled ? .live : (self.lastFailed ? .offline : .polling)
        guard mode != self.mode else { return [] }
        self.mode = mode
        return [.modeChanged(mode)]
    }
}
