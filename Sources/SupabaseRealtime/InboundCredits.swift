import NIOConcurrencyHelpers

/// Bounds how many inbound frames the readers may have queued for the run loop. A reader takes a credit before
/// queueing a frame and the loop gives it back once the frame is processed, so a slow loop makes the readers wait,
/// which in turn lets the transport's own bounded buffer push back on the socket.
final class InboundCredits: Sendable {
    private struct State {
        var available: Int
        var waiters: [UInt64: CheckedContinuation<Bool, Never>] = [:]
        var nextWaiter: UInt64 = 0
        var cancelledEarly: Set<UInt64> = []
    }

    private let state: NIOLockedValueBox<State>

    init(limit: Int) {
        self.state = NIOLockedValueBox(State(available: max(1, limit)))
    }

    /// Takes one credit, waiting while none is left. Returns `false` if the calling task was cancelled.
    func acquire() async -> Bool {
        let id: UInt64? = self.state.withLockedValue { state in
            if state.available > 0 {
                state.available -= 1
                return nil
            }
            state.nextWaiter += 1
            return state.nextWaiter
        }
        guard let id else { return true }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
                let cancelled = self.state.withLockedValue { state -> Bool in
                    if state.cancelledEarly.remove(id) != nil { return true }
                    state.waiters[id] = continuation
                    return false
                }
                if cancelled { continuation.resume(returning: false) }
            }
        } onCancel: {
            let waiter = self.state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
                if let waiter = state.waiters.removeValue(forKey: id) { return waiter }
                state.cancelledEarly.insert(id)
                return nil
            }
            waiter?.resume(returning: false)
        }
    }

    /// Gives one credit back, waking the longest-waiting reader if any.
    func release() {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Bool, Never>? in
            if let first = state.waiters.keys.min(), let waiter = state.waiters.removeValue(forKey: first) {
                return waiter
            }
            state.available += 1
            return nil
        }
        waiter?.resume(returning: true)
    }
}
