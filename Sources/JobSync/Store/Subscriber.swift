import NIOConcurrencyHelpers

/// Which jobs a subscription covers.
enum SubscriptionFilter: Sendable, Hashable {
    case job(JobID)
    case jobs(Set<JobID>)
    case all

    func matches(_ id: JobID) -> Bool {
        switch self {
        case .job(let wanted): return wanted == id
        case .jobs(let wanted): return wanted.contains(id)
        case .all: return true
        }
    }
}

/// One subscriber's bounded, coalescing buffer.
///
/// At most one pending event per job: a newer state replaces a queued stale one in place (latest wins), so the
/// buffer holds at most one entry per covered job. Beyond `capacity` distinct pending jobs the subscription
/// ends with ``JobSyncError/Code/subscriberTooSlow`` and its memory is released.
final class Subscriber: Sendable {
    private struct State {
        var order: [JobID] = []
        var head = 0
        var latest: [JobID: JobEvent] = [:]
        /// Jobs whose deletion arrived while their terminal state was still queued (it follows that state).
        var deletedAfterTerminal: Set<JobID> = []
        var waiter: CheckedContinuation<JobEvent?, any Error>?
        /// Jobs of a `.jobs` filter that have not reached a final event yet.
        var remaining: Set<JobID>
        var finishing = false
        var failure: JobSyncError?
        var closed = false

        var pendingCount: Int { self.order.count - self.head }
    }

    let id: Int
    let filter: SubscriptionFilter
    let capacity: Int
    private let state: NIOLockedValueBox<State>

    init(id: Int, filter: SubscriptionFilter, capacity: Int) {
        self.id = id
        self.filter = filter
        self.capacity = max(1, capacity)
        let remaining: Set<JobID>
        switch filter {
        case .job(let id): remaining = [id]
        case .jobs(let ids): remaining = ids
        case .all: remaining = []
        }
        self.state = NIOLockedValueBox(State(remaining: remaining))
    }

    /// A continuation to resume outside any lock.
    struct Resumption: Sendable {
        let continuation: CheckedContinuation<JobEvent?, any Error>
        let result: Result<JobEvent?, JobSyncError>

        func run() {
            switch self.result {
            case .success(let event): self.continuation.resume(returning: event)
            case .failure(let error): self.continuation.resume(throwing: error)
            }
        }
    }

    /// Queues an event. Returns a continuation to resume (outside locks) when a consumer was waiting.
    func enqueue(_ event: JobEvent) -> Resumption? {
        self.state.withLockedValue { state -> Resumption? in
            guard !state.closed, !state.finishing, state.failure == nil else { return nil }
            if self.filter != .all {
                // A job's part of a per-job or job-set sequence ends at its final event: nothing of it after that
                // (a later deletion by retention, a retried job's newer version).
                guard state.remaining.contains(event.jobID) else { return nil }
                if event.isFinal {
                    state.remaining.remove(event.jobID)
                    if state.remaining.isEmpty { state.finishing = true }
                }
            }
            if let waiter = state.waiter {
                state.waiter = nil
                return Resumption(continuation: waiter, result: .success(event))
            }
            if case .deleted = event, case .updated(let job)? = state.latest[event.jobID], job.status.isTerminal {
                // A deletion never hides the terminal state queued before it: both are delivered, in order.
                state.deletedAfterTerminal.insert(event.jobID)
                return nil
            }
            state.deletedAfterTerminal.remove(event.jobID)
            if state.latest.updateValue(event, forKey: event.jobID) == nil {
                state.order.append(event.jobID)
                if state.pendingCount > self.capacity {
                    state.failure = JobSyncError(
                        code: .subscriberTooSlow,
                        message: "the subscriber fell more than \(self.capacity) jobs behind; subscription ended")
                    state.order = []
                    state.head = 0
                    state.latest = [:]
                    state.deletedAfterTerminal = []
                }
            }
            return nil
        }
    }

    /// Ends the subscription (store closed or consumer cancelled). Pending events are dropped.
    func close() -> Resumption? {
        self.state.withLockedValue { state -> Resumption? in
            state.closed = true
            state.order = []
            state.head = 0
            state.latest = [:]
            state.deletedAfterTerminal = []
            if let waiter = state.waiter {
                state.waiter = nil
                return Resumption(continuation: waiter, result: .success(nil))
            }
            return nil
        }
    }

    var pendingCount: Int { self.state.withLockedValue { $0.pendingCount } }

    private enum Poll {
        case event(JobEvent)
        case end
        case failure(JobSyncError)
        case wait
    }

    private static func poll(_ state: inout State) -> Poll {
        if state.closed { return .end }
        if state.head < state.order.count {
            let id = state.order[state.head]
            state.head += 1
            if state.head == state.order.count {
                state.order.removeAll(keepingCapacity: state.order.count < 64)
                state.head = 0
            }
            guard let event = state.latest.removeValue(forKey: id) else { return Self.poll(&state) }
            if state.deletedAfterTerminal.remove(id) != nil {
                state.latest[id] = .deleted(id)
                state.order.append(id)
            }
            return .event(event)
        }
        if let failure = state.failure {
            state.closed = true
            return .failure(failure)
        }
        if state.finishing {
            state.closed = true
            return .end
        }
        return .wait
    }

    /// Waits for the next event; `nil` at the end. Returns without suspending while events are queued.
    func next() async throws -> JobEvent? {
        let polled = self.state.withLockedValue { state -> Poll in
            guard !Task.isCancelled else {
                state.closed = true
                return .end
            }
            return Self.poll(&state)
        }
        switch polled {
        case .event(let event): return event
        case .end: return nil
        case .failure(let error): throw error
        case .wait: break
        }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<JobEvent?, any Error>) in
                let immediate: Result<JobEvent?, JobSyncError>? = self.state.withLockedValue { state in
                    if Task.isCancelled {
                        state.closed = true
                        return .success(nil)
                    }
                    switch Self.poll(&state) {
                    case .event(let event): return .success(event)
                    case .end: return .success(nil)
                    case .failure(let error): return .failure(error)
                    case .wait:
                        state.waiter = continuation
                        return nil
                    }
                }
                if let immediate { Resumption(continuation: continuation, result: immediate).run() }
            }
        } onCancel: {
            self.close()?.run()
        }
    }
}
