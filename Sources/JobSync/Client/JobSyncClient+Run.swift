import JobSyncCore
import Logging
import ServiceLifecycle
import SupabaseREST
import NIOConcurrencyHelpers

extension JobSyncClient {
    /// Inputs of the run loop.
    enum Input: Sendable {
        case subscriptionsRestarted(generation: Int, channels: Int)
        case channelAdded(generation: Int, channel: Int, ids: [JobID])
        case feed(generation: Int, channel: Int, live: Bool, reason: String)
        /// A channel's subscription ended (it failed or was closed); it is subscribed again after a delay.
        case feedEnded(generation: Int, channel: Int)
        case pollTimer(token: Int)
        case auditTimer(token: Int)
        case catchUpFinished(SyncStateMachine.CatchUp, Result<CatchUpResult, JobSyncError>)
        /// Ids were added to `pendingFetch`.
        case watchChanged
        case fetchFinished(Result<Void, JobSyncError>)
        case fetchRetryTimer(token: Int)
        /// A merge outside the loop's catch-ups (a feed change, a re-fetch) may have opened a job while none was.
        case jobsMayHaveOpened
    }

    /// Runs the client until cancelled (or graceful shutdown, as a `Service`).
    ///
    /// When it returns, every ``transportModes()`` sequence finishes and every ``waitForTransportMode(_:)`` returns
    /// `false` (the transport mode keeps its last value).
    ///
    /// - Throws: ``JobSyncError/Code/invalidConfiguration`` when called while already running.
    public func run() async throws {
        let alreadyRunning = self.shared.withLockedValue { shared -> Bool in
            guard shared.run != .running else { return true }
            shared.run = .running
            return false
        }
        guard !alreadyRunning else {
            throw JobSyncError(code: .invalidConfiguration, message: "run() is already running")
        }
        defer { self.runEnded() }
        await cancelWhenGracefulShutdown {
            await self.runLoop()
        }
    }

    private func send(_ input: Input) {
        self.inputContinuation.yield(input)
    }

    private func runLoop() async {
        var machine = SyncStateMachine(
            configuration: .init(
                realtimeEnabled: self.configuration.feed != nil,
                initialPollDelay: self.configuration.initialPollDelay,
                maximumPollDelay: self.configuration.maximumPollDelay,
                auditInterval: self.configuration.auditInterval,
                // Without a watermark an audit reads every unfinished job by id: no short interval then.
                openAuditInterval: self.configuration.source.supportsWatermark
                    ? self.configuration.openAuditInterval : self.configuration.auditInterval,
                deletionSweepInterval: self.configuration.deletionSweepInterval))
        var liveness = FeedLiveness()
        _ = self.reportJobsOpen(to: &machine)  // idle: no action yet
        await withDiscardingTaskGroup { group in
            if let feed = self.configuration.feed {
                group.addTask { await self.manageSubscriptions(feed) }
            }
            let fetchWanted = self.shared.withLockedValue { !$0.pendingFetch.isEmpty }
            self.execute(machine.start(fetchWanted: fetchWanted), in: &group)
            for await input in self.inputs {
                var actions: [SyncStateMachine.Action] = []
                switch input {
                case .subscriptionsRestarted(let generation, let count):
                    liveness = FeedLiveness(generation: generation, channels: count)
                    if count == 0 {
                        // No channel to wait for (nothing watched yet): live at once.
                        if !machine.feedLive { self.count(.liveTransitions) }
                        actions = machine.feedBecameLive()
                    } else {
                        actions = machine.feedBecameNotLive()
                    }
                case .channelAdded(let generation, let channel, let ids):
                    guard generation == liveness.generation else { break }
                    // A channel added while live does not take the others down: its ids are fetched once it is
                    // live (and were fetched when watched), which covers the gap before its subscription.
                    liveness.add(channel, ids: ids, late: machine.feedLive)
                case .feed(let generation, let channel, let live, let reason):
                    guard generation == liveness.generation else { break }  // an old subscription set
                    if live {
                        if let lateIDs = liveness.markLive(channel) {
                            self.shared.withLockedValue { $0.pendingFetch.formUnion(lateIDs) }
                            actions += machine.fetchWanted()
                        }
                        if liveness.allLive, !machine.feedLive {
                            self.count(.liveTransitions)
                            actions += machine.feedBecameLive()
                        }
                    } else if liveness.markNotLive(channel) {
                        self.configuration.logger.debug("feed not live", metadata: ["jobsync.reason": "\(reason)"])
                        actions = machine.feedBecameNotLive()
                        liveness.establishAll()
                    }
                case .feedEnded(let generation, let channel):
                    // Even a channel added while live (still joining) no longer covers its ids: poll until it is back.
                    guard generation == liveness.generation, liveness.markEnded(channel) else { break }
                    self.configuration.logger.debug("feed not live", metadata: ["jobsync.reason": "subscription ended"])
                    actions = machine.feedBecameNotLive()
                    liveness.establishAll()
                case .pollTimer(let token):
                    actions = machine.pollTimerFired(token: token)
                case .auditTimer(let token):
                    actions = machine.auditTimerFired(token: token)
                case .catchUpFinished(let kind, .success(let result)):
                    // First what is open now, so that the next audit is scheduled at the interval that applies.
                    actions = self.reportJobsOpen(to: &machine)
                    switch kind {
                    case .reconcile: self.count(.reconciliations)
                    case .poll: self.count(.polls)
                    case .audit: self.count(.audits)
                    case .sweep:
                        self.count(.audits)
                        self.count(.deletionSweeps)
                    }
                    actions += machine.catchUpSucceeded(
                        changesSeen: result.changesSeen, moreToRead: result.moreToRead)
                case .catchUpFinished(_, .failure(let error)):
                    self.count(.restFailures)
                    self.configuration.logger.debug("catch-up failed", metadata: ["jobsync.error": "\(error)"])
                    actions = self.reportJobsOpen(to: &machine)
                    actions += machine.catchUpFailed(retryAfter: error.restError?.retryAfter)
                case .watchChanged:
                    actions = self.reportJobsOpen(to: &machine) + machine.fetchWanted()
                case .jobsMayHaveOpened:
                    actions = self.reportJobsOpen(to: &machine)
                case .fetchFinished(.success):
                    actions = self.reportJobsOpen(to: &machine) + machine.fetchSucceeded()
                case .fetchFinished(.failure(let error)):
                    self.count(.fetchFailures)
                    self.configuration.logger.debug("fetch failed", metadata: ["jobsync.error": "\(error)"])
                    actions = machine.fetchFailed(retryAfter: error.restError?.retryAfter)
                case .fetchRetryTimer(let token):
                    actions = machine.fetchRetryTimerFired(token: token)
                }
                self.execute(actions, in: &group)
            }
        }
    }

    /// Tells the machine whether some job is open now (it picks the audit interval from it). In jobs mode before
    /// any read gave a watermark (a catch-up's checkpoint or the fetches' ``FetchCoverage``), an audit reads every
    /// unfinished watched job by id (one request per 100): not cheap, so it keeps the long interval until then.
    private func reportJobsOpen(to machine: inout SyncStateMachine) -> [SyncStateMachine.Action] {
        let cheap =
            self.configuration.mode == .allJobs
            || self.shared.withLockedValue { $0.catchUpWatermark != nil || $0.fetchCoverage.point != nil }
        let open = cheap && self.jobsOpen()
        self.shared.withLockedValue { $0.jobsOpenReported = open }
        return machine.jobsOpenChanged(open)
    }

    /// Whether some job is open: in jobs mode, a watched job neither finished nor deleted (one not read yet counts);
    /// in all-jobs mode, an unfinished job in the store. Stops at the first open job found.
    func jobsOpen() -> Bool {
        switch self.configuration.mode {
        case .allJobs:
            let (total, finished) = self.store.jobsInMemory
            return total > finished
        case .jobs:
            let watched = self.shared.withLockedValue { Array($0.watchers.keys) }
            return watched.contains { !self.store.isFinished($0) && !self.store.isDeleted($0) }
        }
    }

    /// After a merge outside the run loop's catch-ups: if the loop last found no open job and `id` is not finished,
    /// ask it to look again (once: the flag is set until it has looked).
    private func noteMaybeOpened(_ id: JobID) {
        guard !self.shared.withLockedValue({ $0.jobsOpenReported }), !self.store.isFinished(id) else { return }
        let ask = self.shared.withLockedValue { shared -> Bool in
            defer { shared.jobsOpenReported = true }
            return !shared.jobsOpenReported
        }
        if ask { self.send(.jobsMayHaveOpened) }
    }

    private func execute(_ actions: [SyncStateMachine.Action], in group: inout DiscardingTaskGroup) {
        for action in actions {
            switch action {
            case .startCatchUp(let kind):
                group.addTask {
                    let result: Result<CatchUpResult, JobSyncError>
                    do throws(JobSyncError) {
                        result = .success(try await self.catchUp(kind))
                    } catch {
                        result = .failure(error)
                    }
                    self.send(.catchUpFinished(kind, result))
                }
            case .schedulePoll(let token, let minimum, let maximum):
                let timer = ClockTimer(
                    self.configuration.clock, delay: minimum + self.configuration.jitter(maximum - minimum))
                group.addTask {
                    guard (try? await timer.wait()) != nil else { return }
                    self.send(.pollTimer(token: token))
                }
            case .scheduleAudit(let token, let delay):
                let timer = ClockTimer(self.configuration.clock, delay: delay)
                group.addTask {
                    guard (try? await timer.wait()) != nil else { return }
                    self.send(.auditTimer(token: token))
                }
            case .modeChanged(let mode):
                self.setMode(mode)
                self.configuration.logger.debug("transport mode", metadata: ["jobsync.mode": "\(mode.rawValue)"])
            case .startFetch:
                group.addTask {
                    self.send(.fetchFinished(await self.fetchPending()))
                }
            case .scheduleFetchRetry(let token, let minimum, let maximum):
                let timer = ClockTimer(
                    self.configuration.clock, delay: minimum + self.configuration.jitter(maximum - minimum))
                group.addTask {
                    guard (try? await timer.wait()) != nil else { return }
                    self.send(.fetchRetryTimer(token: token))
                }
            }
        }
    }

    // MARK: Subscriptions

    /// Keeps one feed subscription per binding of a ``ChannelPlan``, adding channels or starting a new generation as
    /// the plan decides when the watched set changes.
    private func manageSubscriptions(_ feed: any JobChangeFeed) async {
        var changes = self.bindingsChanged.makeAsyncIterator()
        var generation = 0
        while !Task.isCancelled {
            generation += 1
            var plan = self.channelPlan()
            self.send(.subscriptionsRestarted(generation: generation, channels: plan.bindings.count))
            let thisGeneration = generation
            let ended = await withDiscardingTaskGroup { group -> Bool in
                defer { group.cancelAll() }
                for (channel, binding) in plan.bindings.enumerated() {
                    group.addTask {
                        await self.keepSubscribed(feed, binding, generation: thisGeneration, channel: channel)
                    }
                }
                while true {
                    guard await changes.next() != nil else { return true }
                    switch plan.watchedChanged(self.shared.withLockedValue { $0.watched }) {
                    case .keep:
                        continue
                    case .rebuild:
                        return false
                    case .add(let first, let bindings):
                        for (offset, binding) in bindings.enumerated() {
                            let channel = first + offset
                            self.send(
                                .channelAdded(generation: thisGeneration, channel: channel, ids: binding.ids ?? []))
                            group.addTask {
                                await self.keepSubscribed(feed, binding, generation: thisGeneration, channel: channel)
                            }
                        }
                    }
                }
            }
            if ended { return }
        }
    }

    private func keepSubscribed(_ feed: any JobChangeFeed, _ binding: JobFeedBinding, generation: Int, channel: Int)
        async
    {
        // Where the store may be missing changes, asked by the feed at every (re)join (a replaying feed starts there).
        let store = self.store
        let skew = self.configuration.watermarkSkew
        let context = JobFeedContext(watermark: { store.watermark?.advanced(by: .zero - skew) })
        while !Task.isCancelled {
            do {
                try await feed.subscribe(binding, context: context) { event in
                    await self.handle(event, generation: generation, channel: channel)
                }
            } catch {
                self.configuration.logger.debug(
                    "feed subscription failed",
                    metadata: ["jobsync.channel": "\(channel)", "jobsync.error": "\(error)"])
            }
            self.send(.feedEnded(generation: generation, channel: channel))
            guard (try? await self.configuration.clock.sleep(for: self.configuration.resubscribeDelay)) != nil else {
                return
            }
        }
    }

    private func handle(_ event: JobFeedEvent, generation: Int, channel: Int) async {
        switch event {
        case .live:
            self.send(.feed(generation: generation, channel: channel, live: true, reason: ""))
        case .notLive(let reason):
            self.send(.feed(generation: generation, channel: channel, live: false, reason: reason))
        case .change(let change):
            await self.apply(change)
        }
    }

    /// Merges one feed change; re-fetches the row when the server truncated it (§5.4).
    func apply(_ change: JobChange) async {
        self.count(.changesReceived)
        switch change.type {
        case .delete:
            guard let raw = change.oldRecord?["id"]?.stringValue, let id = try? JobID(raw) else {
                self.count(.malformedChanges)
                return
            }
            guard self.isWatched(id) else {
                self.count(.changesIgnored)
                return
            }
            self.store.merge(
                JobObservation(jobID: id, kind: .deleted, commitTimestamp: change.commitTimestamp, source: .realtime))
        case .insert, .update:
            let truncated = change.isTruncated
            guard let record = change.record, !record.isEmpty,
                let observation = try? JobObservation.row(
                    record, complete: !truncated, commitTimestamp: change.commitTimestamp, source: .realtime)
            else {
                self.count(.malformedChanges)
                return
            }
            guard self.isWatched(observation.jobID) else {
                self.count(.changesIgnored)
                return
            }
            // A truncated record (§5.4) lacks long values such as `result`: merge the full row instead, so that
            // subscribers never see a state without its long values (a terminal one would then reach them twice,
            // without and with its result). If the re-fetch fails, fetch it again with backoff until it succeeds.
            if truncated {
                if await self.refetch(observation.jobID) {
                    self.noteMaybeOpened(observation.jobID)
                    return
                }
                self.shared.withLockedValue { _ = $0.pendingFetch.insert(observation.jobID) }
                self.send(.watchChanged)
                return
            }
            if case .ignored = self.store.merge(observation) { return }
            self.noteMaybeOpened(observation.jobID)
        }
    }

    /// Re-fetches one row over REST and merges it; `false` when the request failed.
    private func refetch(_ id: JobID) async -> Bool {
        self.count(.refetches)
        do {
            let rows = try await self.configuration.source.fetch(ids: [id])
            self.mergeFetched(rows, requested: [id], source: .refetch)
            return true
        } catch {
            self.configuration.logger.debug(
                "re-fetch failed", metadata: ["jobsync.job": "\(id)", "jobsync.error": "\(error)"])
            return false
        }
    }

    // MARK: REST catch-up

    /// Fetches the newly watched ids pending now (none: succeeds at once); on failure they are pending again.
    private func fetchPending() async -> Result<Void, JobSyncError> {
        let ids = self.shared.withLockedValue { shared -> [JobID] in
            defer { shared.pendingFetch = [] }
            return Array(shared.pendingFetch)
        }
        guard !ids.isEmpty else { return .success(()) }
        let started = self.store.watermark
        do {
            let rows = try await self.configuration.source.fetch(ids: ids)
            self.mergeFetched(rows, requested: ids, source: .reconciliation)
            self.noteCoverage(started: started, rows: rows)
            return .success(())
        } catch {
            self.shared.withLockedValue { $0.pendingFetch.formUnion(ids) }
            return .failure(error)
        }
    }

    /// One catch-up round trip; returns whether some job advanced.
    /// What one catch-up read found.
    struct CatchUpResult: Sendable {
        /// Some job advanced.
        var changesSeen: Bool
        /// The read stopped at the source's row cap (``JobSource/maximumRowsPerRead``): more rows are waiting.
        var moreToRead = false
    }

    func catchUp(_ kind: SyncStateMachine.CatchUp) async throws(JobSyncError) -> CatchUpResult {
        let source = self.configuration.source
        // Read from the watermark as it was when the last successful catch-up started, not from the newest row seen
        // since: a change the server dropped (§5.6) can be older than later changes that did arrive.
        let started = self.store.watermark
        // Before any read set a checkpoint, jobs mode reads by ids (the newest row seen is no safe starting point).
        let (checkpoint, resume, coverage) = self.shared.withLockedValue {
            ($0.catchUpWatermark, $0.catchUpResume, $0.fetchCoverage.point)
        }
        let base = checkpoint ?? coverage ?? (self.configuration.mode == .allJobs ? started : nil)
        let watermark = resume ?? base?.advanced(by: .zero - self.configuration.watermarkSkew)
        let sourceKind: ObservationSource = kind == .reconcile ? .reconciliation : .poll
        let useWatermark: Bool
        switch (self.configuration.mode, kind) {
        case (_, .sweep): useWatermark = false
        case (.allJobs, _): useWatermark = true
        case (.jobs, .reconcile): useWatermark = false
        case (.jobs, _): useWatermark = source.supportsWatermark && watermark != nil
        }
        let advanced: Bool
        var capped = false
        var rows: [JSONObject] = []
        if useWatermark {
            guard source.supportsWatermark else {
                throw JobSyncError(code: .invalidConfiguration, message: "all-jobs mode needs a source with updated_at")
            }
            if kind == .audit {
                // The cheap audit: versions only, then full rows for what the store has older.
                rows = try await source.fetchVersions(since: watermark)
                let stale = self.staleIDs(rows)
                if stale.isEmpty {
                    advanced = false
                } else {
                    self.count(.auditFetches, by: stale.count)
                    let full = try await source.fetch(ids: stale)
                    advanced = self.mergeFetched(full, requested: stale, source: sourceKind)
                }
            } else {
                rows = try await source.fetchUpdated(since: watermark)
                advanced = self.mergeFetched(rows, requested: nil, source: sourceKind)
            }
            // A read stopped at the row cap: the next one continues from its newest row, without the skew (a
            // burst larger than the cap inside the skew window would otherwise be read again forever).
            let newest = rows.last?["updated_at"]?.stringValue.flatMap(JobTimestamp.init)
            let limit = self.store.watermarkLimit()
            let resume = rows.count >= source.maximumRowsPerRead ? newest.map { min($0, limit) } : nil
            self.shared.withLockedValue { $0.catchUpResume = resume }
            // Continue at once only when the next read starts later than this one (a full page of one timestamp
            // would otherwise be read again in a hot loop; it is then read once per timer, as before).
            capped = resume.map { resume in watermark.map { resume > $0 } ?? true } ?? false
        } else {
            // By ids: only jobs that can still change (unknown or not final); in all-jobs mode (a sweep), the
            // unfinished jobs the store holds.
            let candidates =
                self.configuration.mode == .jobs
                ? self.shared.withLockedValue { $0.watched } : Set(self.store.jobs.map(\.id))
            let ids = candidates.filter { !self.store.isFinished($0) }
            if ids.isEmpty {
                advanced = false
            } else {
                rows = try await source.fetch(ids: Array(ids))
                advanced = self.mergeFetched(rows, requested: Array(ids), source: sourceKind)
                self.noteCoverage(started: started, rows: rows)
            }
        }
        // Every change committed after this read is newer than what it returned and than what was seen before it.
        // A row dated beyond the clock limit (see `JobStore.Configuration.maximumClockSkew`) never sets it.
        let limit = self.store.watermarkLimit()
        let newestRead = rows.compactMap { $0["updated_at"]?.stringValue.flatMap(JobTimestamp.init) }
            .filter { $0 <= limit }.max()
        if let checkpoint = [started, newestRead].compactMap({ $0 }).max() {
            self.shared.withLockedValue { $0.catchUpWatermark = max($0.catchUpWatermark ?? checkpoint, checkpoint) }
        }
        return CatchUpResult(changesSeen: advanced, moreToRead: capped)
    }

    /// Before the first checkpoint, folds a read of watched ids by id into ``JobSyncClient/FetchCoverage``.
    private func noteCoverage(started: JobTimestamp?, rows: [JSONObject]) {
        let limit = self.store.watermarkLimit()
        let newest = rows.compactMap { $0["updated_at"]?.stringValue.flatMap(JobTimestamp.init) }
            .filter { $0 <= limit }.max()
        let point = [started, newest].compactMap { $0 }.max()
        self.shared.withLockedValue { shared in
            guard shared.catchUpWatermark == nil else { return }
            switch (shared.fetchCoverage, point) {
            case (.broken, _): break
            case (_, nil): shared.fetchCoverage = .broken
            case (.none, let point?): shared.fetchCoverage = .from(point)
            case (.from(let earlier), let point?): shared.fetchCoverage = .from(min(earlier, point))
            }
        }
    }

    /// The watched ids among `versions` (rows holding `id` and `updated_at`) whose version is newer than the store's,
    /// or that the store does not hold, or holds incomplete. Rows without a valid id or `updated_at` are counted as
    /// malformed and skipped.
    func staleIDs(_ versions: [JSONObject]) -> [JobID] {
        var stale: [JobID] = []
        var seen: Set<JobID> = []
        for row in versions {
            guard let text = row["id"]?.stringValue, let id = try? JobID(text),
                let updated = row["updated_at"]?.stringValue.flatMap(JobTimestamp.init)
            else {
                self.count(.malformedChanges)
                continue
            }
            guard self.isWatched(id), seen.insert(id).inserted else { continue }
            if let known = self.store.job(id)?.updatedAt, known >= updated, !self.store.isIncomplete(id) { continue }
            stale.append(id)
        }
        return stale
    }

    /// Merges fetched rows; ids requested but absent vanished. Returns whether some job advanced.
    @discardableResult
    func mergeFetched(_ rows: [JSONObject], requested: [JobID]?, source: ObservationSource) -> Bool {
        var advanced = false
        var seen: Set<JobID> = []
        for row in rows {
            guard let observation = try? JobObservation.row(row, source: source) else {
                self.count(.malformedChanges)
                continue
            }
            seen.insert(observation.jobID)
            guard self.isWatched(observation.jobID) else { continue }
            if case .ignored = self.store.merge(observation) { continue }
            advanced = true
        }
        for id in requested ?? [] where !seen.contains(id) && self.isWatched(id) {
            if case .deleted = self.store.merge(JobObservation(jobID: id, kind: .vanished, source: source)) {
                advanced = true
            }
        }
        return advanced
    }
}

/// A sleep whose deadline is fixed when the timer is made (on the loop), not when the sleeping task starts, so
/// timers are exact with respect to the events that scheduled them.
struct ClockTimer: Sendable {
    private let sleep: @Sendable () async throws -> Void

    init(_ clock: any Clock<Duration>, delay: Duration) {
        self.sleep = Self.make(clock, delay: delay)
    }

    private static func make<C: Clock<Duration>>(_ clock: C, delay: Duration) -> @Sendable () async throws -> Void {
        let deadline = clock.now.advanced(by: delay)
        return { try await clock.sleep(until: deadline, tolerance: nil) }
    }

    /// Sleeps until the deadline; throws when cancelled.
    func wait() async throws {
        try await self.sleep()
    }
}
