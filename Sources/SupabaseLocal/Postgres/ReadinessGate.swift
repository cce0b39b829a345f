import Synchronization

/// A one-shot gate: callers wait until it opens (or fails); cancelling a waiter ends its wait with
/// `CancellationError`.
final class ReadinessGate: Sendable {
    private enum State {
        case pending(waiters: [Int: CheckedContinuation<Void, any Error>], nextID: Int)
        case open
        case failed(any Error)
    }

    private let state = Mutex(State.pending(waiters: [:], nextID: 0))

    /// Opens the gate: current and future waiters proceed.
    func open() {
        self.resolve(.open)
    }

    /// Fails the gate: current and future waiters throw `error`. A gate that is already open stays open for
    /// nobody: later waiters get the error too.
    func fail(_ error: any Error) {
        self.resolve(.failed(error))
    }

    private func resolve(_ final: State) {
        let waiters = self.state.withLock { state -> [CheckedContinuation<Void, any Error>] in
            var resumed: [CheckedContinuation<Void, any Error>] = []
            if case .pending(let waiters, _) = state { resumed = Array(waiters.values) }
            state = final
            return resumed
        }
        for waiter in waiters {
            if case .failed(let error) = final { waiter.resume(throwing: error) } else { waiter.resume() }
        }
    }

    /// Waits until the gate opens; throws the failure, or `CancellationError` when the task is cancelled.
    func wait() async throws {
        let id = self.state.withLock { state -> Int? in
            guard case .pending(let waiters, let nextID) = state else { return nil }
            state = .pending(waiters: waiters, nextID: nextID + 1)
            return nextID
        }
        guard let id else {
            return try self.state.withLock { state in
                if case .failed(let error) = state { throw error }
            }
        }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                let outcome = self.state.withLock { state -> Result<Void, any Error>? in
                    switch state {
                    case .pending(var waiters, let nextID):
                        if Task.isCancelled { return .failure(CancellationError()) }
                        waiters[id] = continuation
                        state = .pending(waiters: waiters, nextID: nextID)
                        return nil
                    case .open:
                        return .success(())
                    case .failed(let error):
                        return .failure(error)
                    }
                }
                if let outcome { continuation.resume(with: outcome) }
            }
        } onCancel: {
            let waiter = self.state.withLock { state -> CheckedContinuation<Void, any Error>? in
                guard case .pending(var waiters, let nextID) = state else { return nil }
                let waiter = waiters.removeValue(forKey: id)
                state = .pending(waiters: waiters, nextID: nextID)
                return waiter
            }
            waiter?.resume(throwing: CancellationError())
        }
    }
}
