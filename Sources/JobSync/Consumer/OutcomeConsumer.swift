public import Foundation
import JobSyncCore
public import Logging
import NIOConcurrencyHelpers
public import ServiceLifecycle
public import SupabaseREST

/// A named, durable consumer of job outcomes: every job of the client's table that completes, fails or is deleted,
/// delivered until acknowledged, across restarts.
///
/// ```swift
/// let consumer = try OutcomeConsumer(
///     client: client, persistence: try SQLiteJobPersistence(path: "state.sqlite"),
///     configuration: .init(name: "billing"))
/// try await withThrowingTaskGroup(of: Void.self) { group in
///     group.addTask { try await client.run() }
///     group.addTask { try await consumer.run() }
///     for await outcome in consumer.outcomes() {
///         try await bill(outcome)  // on error: consumer.reject(outcome, reason: "…")
///         consumer.acknowledge(outcome)
///     }
/// }
/// ```
///
/// ## Guarantees
/// - **At least once.** An outcome is delivered until the consumer acknowledges it, or rejects it
///   ``Configuration/maximumAttempts`` times (then it is a ``DeadLetter``: logged, counted and listed by
///   ``deadLetters()``, never delivered again). One that was delivered but not acknowledged when the process ended
///   is delivered again by the next run.
/// - **Never again once acknowledged.** Acknowledgements are written to the SQLite file in batches (one
///   transaction per batch, not one per outcome); an acknowledged outcome is not delivered to this consumer name
///   again. Only acknowledgements not yet written when the process is killed can be repeated; ``flush()`` (and the
///   end of ``run()``) waits until every one made so far is written.
/// - **Nothing missed while down.** On start, a catch-up reads the table over REST from the consumer's watermark
///   (keyset-paged on `updated_at, id`) and delivers the outcomes that finished while the process was down; then
///   outcomes come live from the client's store. The watermark trails the oldest unacknowledged outcome by
///   ``Configuration/watermarkSkew``, so a change committed up to that long after a newer one is still read.
/// - **Order.** A catch-up delivers in `updated_at, id` order; live outcomes come in the order the store merged
///   them (the commit order of Realtime changes). A rejected outcome is delivered again after its backoff, behind
///   newer ones.
/// - **Deletions** are delivered when seen live; a deletion while no process runs is not (a REST read cannot see a
///   deleted row).
/// - **Bounded.** At most ``Configuration/maximumUnacknowledged`` outcomes are held; more are left on the server
///   and read again by a catch-up once half of them are acknowledged. The file keeps only the acknowledgements
///   within the skew window above the watermark.
///
/// A job that finishes again (retried) after its acknowledgement has left that window is a new outcome.
public final class OutcomeConsumer: Service, Sendable {
    /// Where a consumer name seen for the first time starts; afterwards its watermark in the file decides.
    public enum StartPosition: Sendable, Hashable {
        /// Outcomes from now on (the default).
        case now
        /// Outcomes of jobs updated at or after this time.
        case since(JobTimestamp)
        /// Every outcome of the table.
        case beginning
    }

    /// Which jobs' outcomes a consumer gets.
    public enum Scope: Sendable, Hashable {
        /// Every job of the table (the default).
        case allJobs
        /// The jobs with these ids.
        case jobs(Set<JobID>)
        /// The jobs whose row matches every filter, evaluated on each row as PostgREST would on its text: `eq`,
        /// `neq`, `in` and `is.null` (ordering operators are refused: their result depends on the column's type).
        /// A deletion carries no row, so it is delivered only for a job whose outcome is open here.
        case matching([PostgRESTFilter])

        func includes(_ job: Job) -> Bool {
            switch self {
            case .allJobs: return true
            case .jobs(let ids): return ids.contains(job.id)
            case .matching(let filters): return filters.allSatisfy { Self.matches(job.columns[$0.column], $0.op) }
            }
        }

        /// Whether a deletion of `id` is in scope (`open`: the consumer holds an open outcome of it).
        func includesDeletion(of id: JobID, open: Bool) -> Bool {
            switch self {
            case .allJobs: return true
            case .jobs(let ids): return ids.contains(id)
            case .matching: return open
            }
        }

        private static func matches(_ value: JSONValue?, _ op: PostgRESTFilter.Operator) -> Bool {
            let text: String? =
                switch value {
                case .string(let string): string
                case .number(let number): number.text
                case .bool(let bool): bool ? "true" : "false"
                case .none, .null, .array, .object: nil
                }
            switch op {
            case .eq(let operand): return text == operand
            case .neq(let operand): return text.map { $0 != operand } ?? false  // SQL: null <> x is not true
            case .in(let operands): return text.map(operands.contains) ?? false
            case .isNull: return value == nil || value == .null
            case .gt, .gte, .lt, .lte: return false
            }
        }

        var isValid: Bool {
            guard case .matching(let filters) = self else { return true }
            return filters.allSatisfy { filter in
                switch filter.op {
                case .eq, .neq, .in, .isNull: return true
                case .gt, .gte, .lt, .lte: return false
                }
            }
        }
    }

    /// Settings.
    public struct Configuration: Sendable {
        /// The consumer's name: its state in the file is kept under it.
        public var name: String
        /// Which jobs' outcomes it gets (default ``Scope/allJobs``).
        public var scope: Scope
        /// Where a new consumer starts (default ``StartPosition/now``).
        public var start: StartPosition
        /// Rejections before an outcome becomes a dead letter (default 5).
        public var maximumAttempts: Int
        /// The delay before the first redelivery of a rejected outcome; it doubles per rejection (default 1 s).
        public var retryDelay: Duration
        /// The longest redelivery delay (default 5 min).
        public var maximumRetryDelay: Duration
        /// How far the watermark trails the oldest unacknowledged outcome (default 30 s): late commits within it
        /// are still read; acknowledgements within it are remembered.
        public var watermarkSkew: Duration
        /// The most outcomes held unacknowledged (default 1,000).
        public var maximumUnacknowledged: Int
        /// The clock for redelivery backoff (default `ContinuousClock`).
        public var clock: any Clock<Duration>
        /// The wall clock (start position `now`, dead-letter times).
        public var now: @Sendable () -> Date
        /// Fleet mode (default `nil`: this process handles every outcome).
        public var fleet: Fleet?
        /// The logger (dead letters at warning level, the rest at debug).
        public var logger: Logger

        /// Creates settings with the defaults documented on each property.
        public init(
            name: String, scope: Scope = .allJobs, start: StartPosition = .now, maximumAttempts: Int = 5,
            retryDelay: Duration = .seconds(1),
            maximumRetryDelay: Duration = .seconds(300), watermarkSkew: Duration = .seconds(30),
            maximumUnacknowledged: Int = 1_000, clock: any Clock<Duration> = ContinuousClock(),
            now: @escaping @Sendable () -> Date = { Date() }, fleet: Fleet? = nil,
            logger: Logger = Logger(label: "JobSync.consumer", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
            self.fleet = fleet
            self.scope = scope
            self.name = name
            self.start = start
            self.maximumAttempts = maximumAttempts
            self.retryDelay = retryDelay
            self.maximumRetryDelay = maximumRetryDelay
            self.watermarkSkew = watermarkSkew
            self.maximumUnacknowledged = maximumUnacknowledged
            self.clock = clock
            self.now = now
            self.logger = logger
        }
    }

    /// Fleet mode: several processes share one consumer name, and each outcome is handled by one of them.
    ///
    /// Before delivering an outcome, a replica claims it in the project's own database
    /// (`supabase/migrations/20261202000000_jobsync_claims.sql`: `POST /rest/v1/rpc/jobsync_claim`); only the
    /// replica holding the claim delivers it, renews the claim every third of the lease while the outcome is open,
    /// and acknowledges it there too (`jobsync_ack`). A replica that did not get the claim tries again when the
    /// holder's lease runs out: it then learns that the outcome was acknowledged (handled), or takes it over from a
    /// replica that died. Leases run on the database's clock. The functions are executable by the `authenticated`
    /// and `service_role` roles, not `anon`: use a user's token or a backend's service key.
    public struct Fleet: Sendable {
        /// Where the claim functions are called; `nil`: the client's ``SupabaseTableSource``'s REST client.
        public var rest: PostgRESTClient?
        /// This replica's name in the claims (default: host name, process id and a random suffix).
        public var holder: String
        /// How long a claim lasts without renewal (default 30 s): the time a dead replica's outcomes wait.
        public var lease: Duration
        /// Claim requests in flight at most, and acknowledgement requests in flight at most (default 8 each).
        public var maximumConcurrentClaims: Int

        /// Creates fleet settings with the defaults documented on each property.
        public init(
            rest: PostgRESTClient? = nil, holder: String? = nil, lease: Duration = .seconds(30),
            maximumConcurrentClaims: Int = 8
        ) {
            let process = ProcessInfo.processInfo
            self.rest = rest
            self.holder =
                holder ?? "\(process.hostName)-\(process.processIdentifier)-\(UInt32.random(in: 0...UInt32.max))"
            self.lease = lease
            self.maximumConcurrentClaims = maximumConcurrentClaims
        }
    }

    /// Counters for observability.
    public struct Statistics: Sendable, Hashable {
        /// Deliveries, redeliveries included.
        public var delivered = 0
        /// Deliveries of an outcome delivered before in this process (after a rejection).
        public var redelivered = 0
        /// Outcomes acknowledged.
        public var acknowledged = 0
        /// Rejections.
        public var rejected = 0
        /// Outcomes that became dead letters.
        public var deadLettered = 0
        /// Outcomes held and not yet acknowledged.
        public var unacknowledged = 0
        /// Catch-up reads completed.
        public var catchUps = 0
        /// Rows read by catch-ups.
        public var rowsRead = 0
        /// Failed catch-up reads (each is retried with backoff, 1 s doubling to 30 s).
        public var catchUpFailures = 0
        /// Failed writes of the consumer state (each batch is retried).
        public var writeFailures = 0
        /// Fleet mode: claim requests (renewals included).
        public var claimRequests = 0
        /// Fleet mode: outcomes found held by another replica, or handled by one.
        public var claimedElsewhere = 0
        /// Fleet mode: acknowledgement requests.
        public var acknowledgementRequests = 0
        /// Fleet mode: failed claim or acknowledgement requests.
        public var fleetFailures = 0
    }

    /// The outcomes, each delivered until acknowledged. Several iterators share them (each outcome goes to one).
    public struct Outcomes: AsyncSequence, Sendable {
        public typealias Element = Outcome
        let consumer: OutcomeConsumer

        public func makeAsyncIterator() -> Iterator { Iterator(consumer: self.consumer) }

        /// The iterator.
        public struct Iterator: AsyncIteratorProtocol {
            let consumer: OutcomeConsumer

            /// The next outcome; `nil` once ``OutcomeConsumer/run()`` has ended or the task is cancelled.
            public mutating func next() async -> Outcome? { await self.consumer.nextOutcome() }
        }
    }

    enum Phase {
        case notStarted
        case running(AsyncStream<Input>.Continuation)
        case ended
    }

    enum Input {
        case subscribed
        case catchUpWanted
        case catchUpEnded(succeeded: Bool)
        case retriesChanged
        case timerFired(generation: Int)
        case claimsWanted
        case claimsEnded
        case renew([JobID])
        case fleetAcknowledgementsWanted
        case fleetAcknowledgementSent(answered: Bool)
        case fleetAcknowledgementsResumed
    }

    struct State {
        var machine: ConsumerStateMachine
        var phase = Phase.notStarted
        var waiters: [Int: CheckedContinuation<Outcome?, Never>] = [:]
        var waiterOrder: [Int] = []
        var nextWaiterID = 0
        var statistics = Statistics()
        /// Changes not yet handed to the writer, and whether a drain is queued on it.
        var unwritten: [ConsumerChange] = []
        var draining = false
        /// Fleet mode: a claim was refused for the key's role (reported once).
        var deniedReported = false
    }

    let client: JobSyncClient
    let persistence: SQLiteJobPersistence
    let configuration: Configuration
    let time: MonotonicTime
    let state: NIOLockedValueBox<State>
    /// Fleet mode: the REST client and settings.
    let fleet: (rest: PostgRESTClient, settings: Fleet)?
    /// Writes the consumer's changes, one batch (transaction) per drain.
    private let writer = DispatchQueue(label: "JobSync.consumer.writer")

    /// Creates a consumer, reading its state from `persistence` (or creating it at the start position).
    ///
    /// - Parameters:
    ///   - client: the client whose store delivers outcomes live; in ``JobSyncClient/WatchMode/allJobs`` mode over a
    ///     source with a watermark. Run it beside ``run()``.
    ///   - persistence: the file holding the consumer's state; several consumers (and the client's store) may share
    ///     it.
    /// - Throws: ``JobSyncError/Code/invalidConfiguration`` for a client not in all-jobs mode or bad settings;
    ///   ``JobSyncError/Code/persistence`` when the state cannot be read.
    public init(
        client: JobSyncClient, persistence: SQLiteJobPersistence, configuration: Configuration
    ) throws(JobSyncError) {
        guard client.configuration.mode == .allJobs, client.configuration.source.supportsWatermark else {
            throw JobSyncError(
                code: .invalidConfiguration, message: "an outcome consumer needs a client in all-jobs mode")
        }
        guard !configuration.name.isEmpty, configuration.maximumAttempts >= 1, configuration.retryDelay > .zero,
            configuration.maximumRetryDelay >= configuration.retryDelay, configuration.watermarkSkew >= .zero,
            configuration.maximumUnacknowledged >= 2, configuration.scope.isValid
        else {
            throw JobSyncError(code: .invalidConfiguration, message: "invalid outcome consumer settings")
        }
        let start: JobTimestamp? =
            switch configuration.start {
            case .now: Self.timestamp(configuration.now())
            case .since(let time): time
            case .beginning: nil
            }
        if let fleet = configuration.fleet {
            guard let rest = fleet.rest ?? (client.configuration.source as? SupabaseTableSource)?.client else {
                throw JobSyncError(
                    code: .invalidConfiguration,
                    message: "fleet mode needs a REST client (the client's source is not a SupabaseTableSource)")
            }
            guard !fleet.holder.isEmpty, fleet.lease >= .seconds(3), fleet.maximumConcurrentClaims >= 1 else {
                throw JobSyncError(code: .invalidConfiguration, message: "invalid fleet settings")
            }
            self.fleet = (rest, fleet)
        } else {
            self.fleet = nil
        }
        let saved = try persistence.consumerState(configuration.name, start: start)
        self.client = client
        self.persistence = persistence
        self.configuration = configuration
        self.time = MonotonicTime(clock: configuration.clock)
        self.state = NIOLockedValueBox(
            State(
                machine: ConsumerStateMachine(
                    settings: .init(
                        name: configuration.name, maximumAttempts: configuration.maximumAttempts,
                        retryDelay: configuration.retryDelay, maximumRetryDelay: configuration.maximumRetryDelay,
                        skew: configuration.watermarkSkew, maximumUnacknowledged: configuration.maximumUnacknowledged,
                        lease: configuration.fleet?.lease),
                    state: saved)))
    }

    /// The outcomes, each delivered until acknowledged.
    public func outcomes() -> Outcomes { Outcomes(consumer: self) }

    /// Counters.
    public var statistics: Statistics {
        self.state.withLockedValue { state in
            var statistics = state.statistics
            statistics.unacknowledged = state.machine.unacknowledged
            return statistics
        }
    }

    /// The consumer's watermark: every outcome of a job updated before it is handled (`nil`: none yet).
    public var watermark: JobTimestamp? { self.state.withLockedValue { $0.machine.watermark } }

    /// The consumer's dead letters, oldest first, from the file.
    public func deadLetters() throws(JobSyncError) -> [DeadLetter] {
        try self.persistence.deadLetters(consumer: self.configuration.name)
    }

    /// Marks the outcome handled: it is never delivered to this consumer again once the batch holding this
    /// acknowledgement is written (at once, in the background; ``flush()`` waits for it).
    public func acknowledge(_ outcome: Outcome) {
        let now = Self.timestamp(self.configuration.now())
        self.update { state in
            guard state.machine.acknowledge(outcome.jobID, now: now) else { return }
            state.statistics.acknowledged += 1
        }
    }

    /// Marks the outcome not handled: it is delivered again after a backoff (``Configuration/retryDelay``,
    /// doubling), and becomes a dead letter after ``Configuration/maximumAttempts`` rejections.
    ///
    /// - Returns: the dead letter, when this rejection made one.
    @discardableResult
    public func reject(_ outcome: Outcome, reason: String) -> DeadLetter? {
        let now = self.time.now()
        let date = Self.timestamp(self.configuration.now())
        let result = self.update { state in
            let result = state.machine.reject(outcome.jobID, reason: reason, now: now, date: date)
            if result != .unknown { state.statistics.rejected += 1 }
            if case .deadLettered = result {
                state.statistics.deadLettered += 1
            }
            return result
        }
        switch result {
        case .retry(let at):
            self.configuration.logger.debug(
                "outcome rejected; redelivery scheduled",
                metadata: ["jobsync.job_id": "\(outcome.jobID)", "jobsync.retry_in": "\(at - now)"])
            self.send(.retriesChanged)
            return nil
        case .deadLettered(let letter):
            self.configuration.logger.warning(
                "outcome dead-lettered",
                metadata: [
                    "jobsync.consumer": "\(self.configuration.name)", "jobsync.job_id": "\(letter.jobID)",
                    "jobsync.attempts": "\(letter.attempts)", "jobsync.reason": "\(letter.reason)",
                ])
            return letter
        case .unknown:
            return nil
        }
    }

    /// Waits until every acknowledgement and dead letter made so far is written to the file and, in fleet mode, sent
    /// to `jobsync_ack` (one attempt; a failed one is retried by ``run()``). It completes even when the calling task
    /// is cancelled, so a shutdown path can rely on it.
    public func flush() async {
        await Task {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                // The writer queue is serial: this runs after every drain queued before it.
                self.writer.async {
                    self.drain()
                    continuation.resume()
                }
            }
            if let fleet = self.fleet { await self.sendFleetAcknowledgements(fleet) }
        }.value
    }

    /// Catches up over REST from the watermark, then delivers live outcomes from the client's store, until
    /// cancelled; then ends ``outcomes()`` and writes every acknowledgement made so far. Call it once.
    ///
    /// - Throws: ``JobSyncError/Code/invalidConfiguration`` when called a second time.
    public func run() async throws {
        let (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
        let started = self.state.withLockedValue { state -> Bool in
            guard case .notStarted = state.phase else { return false }
            state.phase = .running(continuation)
            return true
        }
        guard started else {
            throw JobSyncError(code: .invalidConfiguration, message: "OutcomeConsumer.run() was called twice")
        }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.readStore() }
            var timer: (generation: Int, deadline: Duration)?
            var generation = 0
            var failures = 0
            var claiming = false
            // Fleet mode: acknowledgement requests in flight, and whether sending waits for the retry delay (a
            // request got no answer).
            var acknowledgementsInFlight = 0
            var acknowledgementsPaused = false
            for await input in inputs {
                switch input {
                case .subscribed, .catchUpWanted:
                    let from = self.state.withLockedValue { state -> JobTimestamp?? in
                        state.machine.catchUpWanted ? .some(state.machine.catchUpStarted()) : nil
                    }
                    guard case .some(let from) = from else { break }
                    group.addTask {
                        let succeeded = await self.catchUp(from: from)
                        self.send(.catchUpEnded(succeeded: succeeded))
                    }
                case .catchUpEnded(let succeeded):
                    self.update { state in
                        state.machine.catchUpEnded(succeeded: succeeded)
                        if succeeded { state.statistics.catchUps += 1 } else { state.statistics.catchUpFailures += 1 }
                    }
                    failures = succeeded ? 0 : failures + 1
                    if succeeded {
                        self.send(.catchUpWanted)  // another may be owed (refusals during this one)
                    } else {
                        let delay = Self.backoff(failures: failures)
                        let clock = self.configuration.clock
                        group.addTask {
                            guard (try? await clock.sleep(for: delay)) != nil else { return }
                            self.send(.catchUpWanted)
                        }
                    }
                case .retriesChanged:
                    guard let next = self.state.withLockedValue({ $0.machine.nextRetry }) else { break }
                    if let timer, timer.deadline <= next { break }  // the earlier timer re-arms when it fires
                    generation += 1
                    timer = (generation, next)
                    let fired = generation
                    let time = self.time
                    group.addTask {
                        guard (try? await time.sleep(until: next)) != nil else { return }
                        self.send(.timerFired(generation: fired))
                    }
                case .timerFired(let fired):
                    guard fired == timer?.generation else { break }
                    timer = nil
                    let now = self.time.now()
                    let renewals = self.update { state in state.machine.retriesDue(now: now).renewals }
                    if !renewals.isEmpty { self.send(.renew(renewals)) }
                    self.send(.retriesChanged)
                case .claimsWanted:
                    guard let fleet = self.fleet, !claiming else { break }
                    claiming = true
                    group.addTask {
                        await self.claim(fleet)
                        self.send(.claimsEnded)
                    }
                case .claimsEnded:
                    claiming = false
                    if self.state.withLockedValue({ $0.machine.hasClaims }) { self.send(.claimsWanted) }
                    self.send(.retriesChanged)
                case .renew(let ids):
                    guard let fleet = self.fleet else { break }
                    group.addTask {
                        await self.claim(ids, fleet)
                        self.send(.retriesChanged)
                    }
                case .fleetAcknowledgementsWanted:
                    // As many in flight as claims, refilled as each is answered (one at a time, behind a slow
                    // server they fell far behind).
                    guard let fleet = self.fleet, !acknowledgementsPaused else { break }
                    while acknowledgementsInFlight < fleet.settings.maximumConcurrentClaims,
                        let id = self.state.withLockedValue({ $0.machine.nextAcknowledgementToSend() })
                    {
                        acknowledgementsInFlight += 1
                        group.addTask {
                            let answered = await self.sendFleetAcknowledgement(id, fleet)
                            self.send(.fleetAcknowledgementSent(answered: answered))
                        }
                    }
                case .fleetAcknowledgementSent(let answered):
                    acknowledgementsInFlight -= 1
                    if answered {
                        self.send(.fleetAcknowledgementsWanted)
                    } else if !acknowledgementsPaused {
                        acknowledgementsPaused = true
                        let clock = self.configuration.clock
                        let delay = self.configuration.retryDelay
                        group.addTask {
                            guard (try? await clock.sleep(for: delay)) != nil else { return }
                            self.send(.fleetAcknowledgementsResumed)
                        }
                    }
                case .fleetAcknowledgementsResumed:
                    acknowledgementsPaused = false
                    self.update { state in state.machine.retryFailedAcknowledgements() }
                }
            }
            group.cancelAll()
        }
        let waiters = self.state.withLockedValue { state -> [CheckedContinuation<Outcome?, Never>] in
            state.phase = .ended
            defer {
                state.waiters = [:]
                state.waiterOrder = []
            }
            return state.waiterOrder.compactMap { state.waiters[$0] }
        }
        for waiter in waiters { waiter.resume(returning: nil) }
        // Unsent fleet acknowledgements get one more try: another replica would otherwise handle them again.
        await self.flush()
    }

    // MARK: Internals

    /// Subscribes to every store change (before the first catch-up reads, so nothing falls between them) and offers
    /// each; a subscription that overflowed is taken again, with a catch-up owed for what it lost.
    private func readStore() async {
        while !Task.isCancelled {
            do {
                var iterator = self.client.store.allUpdates().makeAsyncIterator()
                self.send(.subscribed)
                while let event = try await iterator.next() {
                    self.offer(event)
                }
                return  // the store was closed
            } catch let error as JobSyncError where error.code == .subscriberTooSlow {
                self.configuration.logger.debug("outcome consumer fell behind the store; catching up over REST")
                self.update { state in state.machine.eventsLost() }
            } catch {
                return  // cancelled
            }
        }
    }

    /// Offers a store event within the scope.
    private func offer(_ event: JobEvent) {
        let scope = self.configuration.scope
        self.update { state in
            switch event {
            case .updated(let job):
                guard scope.includes(job) else { return }
            case .deleted(let id):
                guard scope.includesDeletion(of: id, open: state.machine.isOpen(id)) else { return }
            }
            _ = state.machine.offer(event)
        }
    }

    /// Reads the table from `from` (keyset-paged) and offers every outcome; stops early when the consumer is full.
    private func catchUp(from: JobTimestamp?) async -> Bool {
        let source = self.client.configuration.source
        var since = from
        while !Task.isCancelled {
            let rows: [JSONObject]
            do {
                rows = try await source.fetchUpdated(since: since)
            } catch {
                self.configuration.logger.debug("outcome catch-up failed", metadata: ["jobsync.error": "\(error)"])
                return false
            }
            let jobs = rows.compactMap { try? Job(row: $0) }
            let scope = self.configuration.scope
            let full = self.update { state -> Bool in
                state.statistics.rowsRead += rows.count
                var full = false
                for job in jobs where scope.includes(job) && state.machine.offer(.updated(job)) == .refused {
                    full = true
                }
                return full
            }
            // A short read is the end; a full one continues from its last row (rows at that time are read again
            // and ignored), unless it did not advance. A refusal ends it too: the machine owes the rest.
            guard !full, rows.count >= source.maximumRowsPerRead, let last = jobs.last?.updatedAt, last != since
            else { return true }
            since = last
        }
        return false
    }

    /// The next outcome for an iterator, waiting for one.
    func nextOutcome() async -> Outcome? {
        let id = self.state.withLockedValue { state -> Int in
            state.nextWaiterID += 1
            return state.nextWaiterID
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Outcome?, Never>) in
                let answer = self.state.withLockedValue { state -> Outcome?? in
                    if Task.isCancelled { return .some(nil) }
                    if let outcome = Self.deliver(&state, now: self.time.now()) { return .some(outcome) }
                    if case .ended = state.phase { return .some(nil) }
                    state.waiters[id] = continuation
                    state.waiterOrder.append(id)
                    return nil
                }
                if case .some(let outcome) = answer { continuation.resume(returning: outcome) }
            }
        } onCancel: {
            let waiter = self.state.withLockedValue { state in
                state.waiterOrder.removeAll { $0 == id }
                return state.waiters.removeValue(forKey: id)
            }
            waiter?.resume(returning: nil)
        }
    }

    /// Takes the next delivery from the machine and counts it.
    private static func deliver(_ state: inout State, now: Duration) -> Outcome? {
        guard let outcome = state.machine.nextDelivery(now: now) else { return nil }
        state.statistics.delivered += 1
        if outcome.delivery > 1 { state.statistics.redelivered += 1 }
        return outcome
    }

    /// Changes the machine under the lock, then hands queued outcomes to waiting iterators, queues the machine's
    /// changes for the writer, and asks for a catch-up when one is wanted.
    @discardableResult
    private func update<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, handoffs, drain, input) = self.state.withLockedValue {
            state -> (
                Result, [(CheckedContinuation<Outcome?, Never>, Outcome)], Bool,
                (AsyncStream<Input>.Continuation, [Input])?
            ) in
            let result = body(&state)
            var handoffs: [(CheckedContinuation<Outcome?, Never>, Outcome)] = []
            while !state.waiterOrder.isEmpty, state.machine.hasQueued,
                let outcome = Self.deliver(&state, now: self.time.now())
            {
                let id = state.waiterOrder.removeFirst()
                if let waiter = state.waiters.removeValue(forKey: id) { handoffs.append((waiter, outcome)) }
            }
            state.unwritten += state.machine.takeChanges()
            let drain = !state.unwritten.isEmpty && !state.draining
            if drain { state.draining = true }
            var inputs: [Input] = []
            if state.machine.catchUpWanted { inputs.append(.catchUpWanted) }
            if state.machine.hasClaims { inputs.append(.claimsWanted) }
            if state.machine.hasAcknowledgementsToSend { inputs.append(.fleetAcknowledgementsWanted) }
            guard case .running(let continuation) = state.phase else { return (result, handoffs, drain, nil) }
            return (result, handoffs, drain, inputs.isEmpty ? nil : (continuation, inputs))
        }
        for (waiter, outcome) in handoffs { waiter.resume(returning: outcome) }
        if drain { self.writer.async { self.drain() } }
        if let (continuation, inputs) = input { for input in inputs { continuation.yield(input) } }
        return result
    }

    /// On the writer queue: writes everything unwritten as one transaction, repeating while more arrives. A failed
    /// write is kept and retried with the next batch.
    private func drain() {
        while true {
            let batch = self.state.withLockedValue { state -> [ConsumerChange] in
                defer { state.unwritten = [] }
                if state.unwritten.isEmpty { state.draining = false }
                return state.unwritten
            }
            guard !batch.isEmpty else { return }
            do {
                try self.persistence.writeConsumer(self.configuration.name, batch)
            } catch {
                self.configuration.logger.error(
                    "cannot write the consumer state; retrying", metadata: ["jobsync.error": "\(error)"])
                self.state.withLockedValue { state in
                    state.statistics.writeFailures += 1
                    state.unwritten = batch + state.unwritten
                    state.draining = false
                }
                return
            }
        }
    }

    // MARK: Fleet

    /// Claims every outcome waiting for a claim, a few requests at a time.
    private func claim(_ fleet: (rest: PostgRESTClient, settings: Fleet)) async {
        while !Task.isCancelled {
            let ids = self.update { state in state.machine.takeClaims(limit: fleet.settings.maximumConcurrentClaims) }
            guard !ids.isEmpty else { return }
            await self.claim(ids, fleet)
        }
    }

    /// Claims (or renews) `ids` concurrently and gives the machine each answer.
    private func claim(_ ids: [JobID], _ fleet: (rest: PostgRESTClient, settings: Fleet)) async {
        let lease = Int(fleet.settings.lease.components.seconds)
        let sent = self.time.now()  // a granted lease runs from no earlier than this
        await withTaskGroup(of: (JobID, ConsumerStateMachine.ClaimAnswer).self) { group in
            for id in ids {
                group.addTask {
                    let arguments: JSONObject = [
                        "p_consumer": .string(self.configuration.name), "p_job_id": .string(id.rawValue),
                        "p_holder": .string(fleet.settings.holder), "p_lease_seconds": .number(JSONNumber(lease)),
                    ]
                    do {
                        let answer = try await fleet.rest.rpc("jobsync_claim", arguments: arguments)
                        return (id, self.claimAnswer(answer, lease: fleet.settings.lease))
                    } catch {
                        self.claimFailed(id, error)
                        return (id, .failed)
                    }
                }
            }
            for await (id, answer) in group {
                let now = sent
                let date = Self.timestamp(self.configuration.now())
                let result = self.update { state in
                    state.statistics.claimRequests += 1
                    if answer == .failed { state.statistics.fleetFailures += 1 }
                    let result = state.machine.claimAnswered(id, answer, now: now, date: date)
                    switch result {
                    case .handledElsewhere, .lost: state.statistics.claimedElsewhere += 1
                    case .waiting where answer != .failed: state.statistics.claimedElsewhere += 1
                    default: break
                    }
                    return result
                }
                if result == .lost {
                    self.configuration.logger.warning(
                        "fleet claim lost to another replica while the outcome was open",
                        metadata: ["jobsync.consumer": "\(self.configuration.name)", "jobsync.job_id": "\(id)"])
                }
            }
        }
    }

    /// Logs a failed claim: a role without EXECUTE (`anon`) is a setup error, reported once at error level.
    private func claimFailed(_ id: JobID, _ error: any Error) {
        let status = (error as? RESTError)?.httpStatus
        let denied = status == 401 || status == 403
        let first =
            denied
            && self.state.withLockedValue { state in
                defer { state.deniedReported = true }
                return !state.deniedReported
            }
        let message: Logger.Message =
            denied
            ? "fleet claim refused: the key's role may not execute jobsync_claim (use a user token or a service key)"
            : "fleet claim failed"
        self.configuration.logger.log(
            level: first ? .error : .debug, message,
            metadata: ["jobsync.job_id": "\(id)", "jobsync.error": "\(error)"])
    }

    /// Reads `jobsync_claim`'s answer: `{"claimed", "holder", "lease_until", "acked"}`.
    private func claimAnswer(_ answer: JSONValue, lease: Duration) -> ConsumerStateMachine.ClaimAnswer {
        guard let object = answer.objectValue, let claimed = object["claimed"]?.boolValue else { return .failed }
        if claimed { return .claimed }
        if object["acked"]?.boolValue == true { return .acknowledged }
        // The holder's lease, on the database's clock; read against ours only to wait about that long.
        var remaining = lease
        if let text = object["lease_until"]?.stringValue, let until = JobTimestamp(text) {
            let now = Self.timestamp(self.configuration.now())
            remaining = min(.microseconds(max(until.microsecondsSinceEpoch - now.microsecondsSinceEpoch, 0)), lease)
        }
        return .heldElsewhere(remaining: remaining)
    }

    /// ``flush()``'s one attempt: sends the acknowledgements waiting for `jobsync_ack` (those ``run()`` has not
    /// taken, failed ones first), ``Fleet/maximumConcurrentClaims`` at a time; those that fail wait for the next try.
    private func sendFleetAcknowledgements(_ fleet: (rest: PostgRESTClient, settings: Fleet)) async {
        self.state.withLockedValue { $0.machine.retryFailedAcknowledgements() }
        await withTaskGroup(of: Void.self) { group in
            var inFlight = 0
            while true {
                while inFlight < fleet.settings.maximumConcurrentClaims,
                    let id = self.state.withLockedValue({ $0.machine.nextAcknowledgementToSend() })
                {
                    inFlight += 1
                    group.addTask { await self.sendFleetAcknowledgement(id, fleet) }
                }
                guard inFlight > 0, await group.next() != nil else { return }
                inFlight -= 1
            }
        }
    }

    /// One `jobsync_ack` call, whose fate the machine learns at once: answered (the claim is no longer renewed), or
    /// failed (retried later, the claim still renewed), also when the call was cancelled (``flush()`` sends it).
    /// - Returns: whether it was answered.
    @discardableResult
    private func sendFleetAcknowledgement(
        _ id: JobID, _ fleet: (rest: PostgRESTClient, settings: Fleet)
    ) async -> Bool {
        let arguments: JSONObject = [
            "p_consumer": .string(self.configuration.name), "p_job_id": .string(id.rawValue),
            "p_holder": .string(fleet.settings.holder),
        ]
        let answer = try? await fleet.rest.rpc("jobsync_ack", arguments: arguments)
        if let answer, answer.boolValue != true {
            self.configuration.logger.warning(
                "fleet acknowledgement refused: another replica holds the claim",
                metadata: ["jobsync.consumer": "\(self.configuration.name)", "jobsync.job_id": "\(id)"])
        }
        self.state.withLockedValue { state in
            state.statistics.acknowledgementRequests += 1
            if answer != nil {
                state.machine.acknowledgementAnswered(id)
            } else {
                state.statistics.fleetFailures += 1
                state.machine.acknowledgementFailed(id)
            }
        }
        return answer != nil
    }

    private func send(_ input: Input) {
        guard case .running(let continuation) = self.state.withLockedValue({ $0.phase }) else { return }
        continuation.yield(input)
    }

    private static func backoff(failures: Int) -> Duration {
        .seconds(min(30, 1 << min(failures - 1, 5)))
    }

    private static func timestamp(_ date: Date) -> JobTimestamp {
        JobTimestamp(microsecondsSinceEpoch: Int64((date.timeIntervalSince1970 * 1_000_000).rounded(.down)))
    }
}
