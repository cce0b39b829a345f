import JobSyncCore
import JobSyncTestSupport
import NIOConcurrencyHelpers

@testable import JobSync

/// A server table behind a fake ``JobSource``; records every call and can be told to fail.
final class FakeSource: JobSource {
    private struct State {
        var rows: [JobID: JSONObject] = [:]
        var calls: [String] = []
        /// The ids of each ``fetch(ids:)`` call, in order.
        var idRequests: [[JobID]] = []
        var failures: [JobSyncError] = []
        var callWaiters: [(Int, CheckedContinuation<Void, Never>)] = []
    }

    private let state = NIOLockedValueBox(State())
    let supportsWatermark: Bool
    /// Watermark reads return at most this many rows, the oldest `(updated_at, id)` first, as the real source does.
    let maximumRowsPerRead: Int

    init(supportsWatermark: Bool = true, maximumRowsPerRead: Int = .max) {
        self.supportsWatermark = supportsWatermark
        self.maximumRowsPerRead = maximumRowsPerRead
    }

    func put(_ row: JSONObject) {
        let id = try! JobID(row["id"]!.stringValue!)
        self.state.withLockedValue { $0.rows[id] = row }
    }

    func remove(_ id: JobID) {
        self.state.withLockedValue { _ = $0.rows.removeValue(forKey: id) }
    }

    func failNext(_ error: JobSyncError) {
        self.state.withLockedValue { $0.failures.append(error) }
    }

    var calls: [String] { self.state.withLockedValue { $0.calls } }

    /// The ids of each ``fetch(ids:)`` call, in order.
    var idRequests: [[JobID]] { self.state.withLockedValue { $0.idRequests } }

    /// Waits until at least `count` calls were made (and answered).
    func waitForCalls(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLockedValue { state -> Bool in
                if state.calls.count >= count { return true }
                state.callWaiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    private func record(_ call: String) throws(JobSyncError) -> [JobID: JSONObject] {
        let (result, waiters) = self.state.withLockedValue {
            state -> (Result<[JobID: JSONObject], JobSyncError>, [CheckedContinuation<Void, Never>]) in
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

    func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject] {
        self.state.withLockedValue { $0.idRequests.append(ids) }
        let rows = try self.record("ids:\(ids.count)")
        return ids.compactMap { rows[$0] }
    }

    func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        let rows = try self.record("since:\(since.map(\.description) ?? "-")")
        return self.updated(since: since, rows)
    }

    /// `id` and `updated_at` only, as `select=id,updated_at` answers.
    func fetchVersions(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        let rows = try self.record("versions:\(since.map(\.description) ?? "-")")
        return self.updated(since: since, rows).map { row in
            var version: JSONObject = [:]
            version["id"] = row["id"]
            version["updated_at"] = row["updated_at"]
            return version
        }
    }

    private func updated(since: JobTimestamp?, _ rows: [JobID: JSONObject]) -> [JSONObject] {
        func key(_ row: JSONObject) -> (String, String) {
            (row["updated_at"]?.stringValue ?? "", row["id"]?.stringValue ?? "")
        }
        let matching = rows.values.filter { row in
            guard let since, let text = row["updated_at"]?.stringValue, let updated = JobTimestamp(text) else {
                return true
            }
            return updated >= since
        }
        return Array(matching.sorted { key($0) < key($1) }.prefix(self.maximumRowsPerRead))
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

    private let state = NIOLockedValueBox(State())

    func subscribe(_ binding: JobFeedBinding, handler: @escaping @Sendable (JobFeedEvent) async -> Void) async throws {
        let id = self.state.withLockedValue { state -> Int in
            state.nextID += 1
            state.subscribeCount += 1
            state.active[state.nextID] = (binding, handler)
            return state.nextID
        }
        let waiters = self.state.withLockedValue { state -> [CheckedContinuation<Void, Never>] in
            let count = state.active.count
            let ready = state.waiters.filter { $0.0 <= count }.map(\.1)
            state.waiters.removeAll { $0.0 <= count }
            return ready
        }
        for waiter in waiters { waiter.resume() }
        // Stay subscribed until cancelled.
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                self.state.withLockedValue { state in state.parked[id] = continuation }
                if Task.isCancelled { self.unpark(id) }
            }
        } onCancel: {
            self.unpark(id)
        }
        self.state.withLockedValue { _ = $0.active.removeValue(forKey: id) }
        throw CancellationError()
    }

    private func unpark(_ id: Int) {
        let continuation = self.state.withLockedValue { $0.parked.removeValue(forKey: id) }
        continuation?.resume()
    }

    var bindings: [JobFeedBinding] {
        self.state.withLockedValue { $0.active.sorted { $0.key < $1.key }.map(\.value.0) }
    }

    /// Waits until at least `count` subscriptions are active.
    func waitForSubscriptions(_ count: Int) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = self.state.withLockedValue { state -> Bool in
                if state.active.count >= count { return true }
                state.waiters.append((count, continuation))
                return false
            }
            if ready { continuation.resume() }
        }
    }

    /// Delivers an event to every active subscription.
    func emit(_ event: JobFeedEvent) async {
        let handlers = self.state.withLockedValue { $0.active.values.map(\.1) }
        for handler in handlers { await handler(event) }
    }
}
