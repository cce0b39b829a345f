public import Foundation
import JobSyncCore
public import Logging
import NIOConcurrencyHelpers
public import ServiceLifecycle

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

    /// Settings.
    public struct Configuration: Sendable {
        /// The consumer's name: its state in the file is kept under it.
        public var name: String
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
        /// The logger (dead letters at warning level, the rest at debug).
        public var logger: Logger

        /// Creates settings with the defaults documented on each property.
        public init(
            name: String, start: StartPosition = .now, maximumAttempts: Int = 5, retryDelay: Duration = .seconds(1),
            maximumRetryDelay: Duration = .seconds(300), watermarkSkew: Duration = .seconds(30),
            maximumUnacknowledged: Int = 1_000, clock: any Clock<Duration> = ContinuousClock(),
            now: @escaping @Sendable () -> Date = { Date() },
            logger: Logger = Logger(label: "JobSync.consumer", factory: { _ in SwiftLogNoOpLogHandler() })
        ) {
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
        /// Failed writes of the consumer state (each batch is retried).
        public var writeFailures = 0
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
    }

    let client: JobSyncClient
    let persistence: SQLiteJobPersistence
    let configuration: Configuration
    let time: MonotonicTime
    let state: NIOLockedValueBox<State>
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
            configuration.maximumUnacknowledged >= 2
        else {
            throw JobSyncError(code: .invalidConfiguration, message: "invalid outcome consumer settings")
        }
        let start: JobTimestamp? =
            switch configuration.start {
            case .now: Self.timestamp(configuration.now())
            case .since(let time): time
            case .beginning: nil
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
                        skew: configuration.watermarkSkew, maximumUnacknowledged: configuration.maximumUnacknowledged),
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
        try self.persistence.deadLetters(self.configuration.name)
    }

    /// Marks the outcome handled: it is never delivered to this consumer again once the batch holding this
    /// acknowledgement is written (at once, in the background; ``flush()`` waits for it).
    public func acknowledge(_ outcome: Outcome) {
        let now = Self.timestamp(self.configuration.now())
        self.update { state in
            if state.machine.acknowledge(outcome.jobID, now: now) { state.statistics.acknowledged += 1 }
        }
    }

    /// Marks the outcome not handled: it is delivered again after a backoff (``Configuration/retryDelay``,
    /// doubling), and becomes a dead letter after ``Configuration/maximumAttempts`` rejections.
    public func reject(_ outcome: Outcome, reason: String) {
        let now = self.time.now()
        let date = Self.timestamp(self.configuration.now())
        let result = self.update { state in
            let result = state.machine.reject(outcome.jobID, reason: reason, now: now, date: date)
            if result != .unknown { state.statistics.rejected += 1 }
            if case .deadLettered = result { state.statistics.deadLettered += 1 }
            return result
        }
        switch result {
        case .retry(let at):
            self.configuration.logger.debug(
                "outcome rejected; redelivery scheduled",
                metadata: ["jobsync.job_id": "\(outcome.jobID)", "jobsync.retry_in": "\(at - now)"])
            self.send(.retriesChanged)
        case .deadLettered(let letter):
            self.configuration.logger.warning(
                "outcome dead-lettered",
                metadata: [
                    "jobsync.consumer": "\(self.configuration.name)", "jobsync.job_id": "\(letter.jobID)",
                    "jobsync.attempts": "\(letter.attempts)", "jobsync.reason": "\(letter.reason)",
                ])
        case .unknown:
            break
        }
    }

    /// Waits until every acknowledgement and dead letter made so far is written to the file.
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            // The writer queue is serial: this runs after every drain queued before it.
            self.writer.async {
                self.drain()
                continuation.resume()
            }
        }
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
                        if succeeded { state.statistics.catchUps += 1 }
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
                    self.update { state in _ = state.machine.retriesDue(now: now) }
                    self.send(.retriesChanged)
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
                    self.update { state in _ = state.machine.offer(event) }
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
            let full = self.update { state -> Bool in
                state.statistics.rowsRead += rows.count
                var full = false
                for job in jobs where state.machine.offer(.updated(job)) == .refused { full = true }
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
                    if let outcome = Self.deliver(&state) { return .some(outcome) }
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
    private static func deliver(_ state: inout State) -> Outcome? {
        guard let outcome = state.machine.nextDelivery() else { return nil }
        state.statistics.delivered += 1
        if outcome.delivery > 1 { state.statistics.redelivered += 1 }
        return outcome
    }

    /// Changes the machine under the lock, then hands queued outcomes to waiting iterators, queues the machine's
    /// changes for the writer, and asks for a catch-up when one is wanted.
    @discardableResult
    private func update<Result>(_ body: (inout State) -> Result) -> Result {
        let (result, handoffs, drain, input) = self.state.withLockedValue {
            state -> (Result, [(CheckedContinuation<Outcome?, Never>, Outcome)], Bool, AsyncStream<Input>.Continuation?)
            in
            let result = body(&state)
            var handoffs: [(CheckedContinuation<Outcome?, Never>, Outcome)] = []
            while !state.waiterOrder.isEmpty, state.machine.hasQueued, let outcome = Self.deliver(&state) {
                let id = state.waiterOrder.removeFirst()
                if let waiter = state.waiters.removeValue(forKey: id) { handoffs.append((waiter, outcome)) }
            }
            state.unwritten += state.machine.takeChanges()
            let drain = !state.unwritten.isEmpty && !state.draining
            if drain { state.draining = true }
            var input: AsyncStream<Input>.Continuation?
            if state.machine.catchUpWanted, case .running(let continuation) = state.phase { input = continuation }
            return (result, handoffs, drain, input)
        }
        for (waiter, outcome) in handoffs { waiter.resume(returning: outcome) }
        if drain { self.writer.async { self.drain() } }
        input?.yield(.catchUpWanted)
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
