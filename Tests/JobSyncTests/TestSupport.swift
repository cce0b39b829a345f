import SupabaseREST
import Synchronization

@testable import JobSync

/// A clock that only moves when the test advances it.
final class ManualClock: Clock, Sendable {
    typealias Duration = Swift.Duration

    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: self.offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - self.offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private struct Sleeper {
        let id: Int
        let deadline: Instant
        let continuation: CheckedContinuation<Void, any Error>
    }

    private struct State {
        var now = Instant(offset: .zero)
        var sleepers: [Sleeper] = []
        var nextID = 0
        var sleeperWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    var now: Instant { self.state.withLock { $0.now } }
    var minimumResolution: Duration { .nanoseconds(1) }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        let id = self.state.withLock { state -> Int in
            state.nextID += 1
            return state.nextID
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let (resumeNow, waiters) = self.state.withLock {
                    state -> (Bool, [CheckedContinuation<Void, Never>]) in
                    if Task.isCancelled { return (true, []) }
                    if deadline <= state.now { return (true, []) }
                    state.sleepers.append(Sleeper(id: id, deadline: deadline, continuation: continuation))
                    let count = state.sleepers.count
                    let ready = state.sleeperWaiters.filter { $0.0 <= count }.map(\.1)
                    state.sleeperWaiters.removeAll { $0.0 <= count }
                    return (false, ready)
                }
                for waiter in waiters { waiter.resume() }
                if resumeNow {
                    if Task.isCancelled {
                        continuation.resume(throwing: CancellationError())
                    } else {
                        continuation.resume()
                    }
                }
            }
        } onCancel: {
            let sleeper = self.state.withLock { state -> Sleeper? in
                guard let index = state.sleepers.firstIndex(where: { $0.id == id }) else { return nil }
                return state.sleepers.remove(at: index)
            }
            sleeper?.continuation.resume(throwing: CancellationError())
        }
    }

    /// Moves time forward and wakes every sleeper that is due.
    func advance(by duration: Duration) {
        let due = self.state.withLock { state -> [Sleeper] in
            state.now = state.now.advanced(by: duration)
            let now = state.now
            let due = state.sleepers.filter { $0.deadline <= now }
            state.sleepers.removeAll { $0.deadline <= now }
            return due
        }
        for sleeper in due { sleeper.continuation.resume() }
    }

    /// Waits until at least `count` sleepers are registered.
    func waitForSleepers(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLock { state -> Bool in
                if state.sleepers.count >= count { return true }
                state.sleeperWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    var sleeperCount: Int { self.state.withLock { $0.sleepers.count } }

    /// The pending deadlines, as offsets from the start.
    var deadlines: [Duration] { self.state.withLock { $0.sleepers.map(\.deadline.offset).sorted() } }
}

/// A server table behind a fake ``JobSource``; records every call and can be told to fail.
final class FakeSource: JobSource {
    private struct State {
        var rows: [JobID: [String: JSON]] = [:]
        var calls: [String] = []
        var failures: [JobSyncError] = []
        var callWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())
    let supportsWatermark: Bool

    init(supportsWatermark: Bool = true) {
        self.supportsWatermark = supportsWatermark
    }

    func put(_ row: [String: JSON]) {
        let id = try! JobID(row["id"]!.stringValue!)
        self.state.withLock { $0.rows[id] = row }
    }

    func remove(_ id: JobID) {
        self.state.withLock { _ = $0.rows.removeValue(forKey: id) }
    }

    func failNext(_ error: JobSyncError) {
        self.state.withLock { $0.failures.append(error) }
    }

    var calls: [String] { self.state.withLock { $0.calls } }

    /// Waits until at least `count` calls were made (and answered).
    func waitForCalls(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLock { state -> Bool in
                if state.calls.count >= count { return true }
                state.callWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    private func record(_ call: String) throws(JobSyncError) -> [JobID: [String: JSON]] {
        let (result, waiters) = self.state.withLock {
            state -> (Result<[JobID: [String: JSON]], JobSyncError>, [CheckedContinuation<Void, Never>]) in
            state.calls.append(call)
            let count = state.calls.count
            let ready = state.callWaiters.filter { $0.0 <= count }.map(\.1)
            state.callWaiters.removeAll { $0.0 <= count }
            if !state.failures.isEmpty { return (.failure(state.failures.removeFirst()), ready) }
            return (.success(state.rows), ready)
        }
        defer { for waiter in waiters { waiter.resume() } }
        return try result.get()
    }

    func fetch(ids: [JobID]) async throws(JobSyncError) -> [[String: JSON]] {
        let rows = try self.record("ids:\(ids.count)")
        return ids.compactMap { rows[$0] }
    }

    func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [[String: JSON]] {
        let rows = try self.record("since:\(since.map(\.description) ?? "-")")
        return rows.values.filter { row in
            guard let since, let text = row["updated_at"]?.stringValue, let updated = JobTimestamp(text) else {
                return true
            }
            return updated >= since
        }
    }
}

/// A realtime feed driven by the test.
final class FakeFeed: JobChangeFeed {
    typealias Handler = @Sendable (JobFeedEvent) async -> Void

    private struct State {
        var active: [Int: (JobFeedBinding, Handler)] = [:]
        var nextID = 0
        var subscribeCount = 0
        var parked: [Int: CheckedContinuation<Void, Never>] = [:]
        var waiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = Mutex(State())

    func subscribe(_ binding: JobFeedBinding, handler: @escaping @Sendable (JobFeedEvent) async -> Void) async throws {
        let id = self.state.withLock { state -> Int in
            state.nextID += 1
            state.subscribeCount += 1
            state.active[state.nextID] = (binding, handler)
            return state.nextID
        }
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, Never>] in
            let count = state.active.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in waiters { waiter.resume() }
        // Stay subscribed until cancelled.
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.state.withLock { state in state.parked[id] = continuation }
                if Task.isCancelled { self.unpark(id) }
            }
        } onCancel: {
            self.unpark(id)
        }
        self.state.withLock { _ = $0.active.removeValue(forKey: id) }
        throw CancellationError()
    }

    private func unpark(_ id: Int) {
        let continuation = self.state.withLock { $0.parked.removeValue(forKey: id) }
        continuation?.resume()
    }

    var bindings: [JobFeedBinding] {
        self.state.withLock { $0.active.sorted { $0.key < $1.key }.map(\.value.0) }
    }

    /// Waits until at least `count` subscriptions are active.
    func waitForSubscriptions(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLock { state -> Bool in
                if state.active.count >= count { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Delivers an event to every active subscription.
    func emit(_ event: JobFeedEvent) async {
        let handlers = self.state.withLock { $0.active.values.map(\.1) }
        for handler in handlers { await handler(event) }
    }
}
