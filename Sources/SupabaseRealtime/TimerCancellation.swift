import NIOConcurrencyHelpers

/// A one-shot signal a timer task waits on so that the driver can cancel that one timer.
final class TimerCancellation: Sendable {
    private enum State {
        case armed(CheckedContinuation<Void, Never>?)
        case cancelled
    }

    private let state = NIOLockedValueBox(State.armed(nil))

    init() {}

    /// Cancels the timer (idempotent).
    func cancel() {
        let waiter: CheckedContinuation<Void, Never>? = self.state.withLockedValue { state in
            defer { state = .cancelled }
            if case .armed(let waiter) = state { return waiter }
            return nil
        }
        waiter?.resume()
    }

    /// Returns once ``cancel()`` is called or the calling task is cancelled.
    func wait() async {
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                let resumeNow: Bool = self.state.withLockedValue { state in
                    if case .cancelled = state { return true }
                    state = .armed(continuation)
                    return false
                }
                if resumeNow { continuation.resume() }
            }
        } onCancel: {
            self.cancel()
        }
    }
}
