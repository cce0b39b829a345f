import Foundation
import NIOConcurrencyHelpers

/// An unbounded multi-producer, single-consumer queue whose `next()` ignores task cancellation: the consumer keeps
/// draining until ``finish()``. The client's writer uses it so that the final `phx_leave` frames and the close are
/// still sent while `run()` is being cancelled.
final class Mailbox<Element: Sendable>: Sendable {
    private struct State {
        var buffer: [Element] = []
        var head = 0
        var finished = false
        var waiter: CheckedContinuation<Element?, Never>?
    }

    private let state = NIOLockedValueBox(State())

    init() {}

    /// Enqueues an element. Returns `false` (and drops it) if the mailbox is finished.
    @discardableResult
    func send(_ element: Element) -> Bool {
        let (accepted, waiter) = self.state.withLockedValue { state -> (Bool, CheckedContinuation<Element?, Never>?) in
            guard !state.finished else { return (false, nil) }
            if let waiter = state.waiter {
                state.waiter = nil
                return (true, waiter)
            }
            state.buffer.append(element)
            return (true, nil)
        }
        waiter?.resume(returning: element)
        return accepted
    }

    /// Ends the mailbox: the consumer gets the elements still queued, then `nil`.
    func finish() {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Element?, Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// The next element, or `nil` once finished and drained. Single consumer.
    func next() async -> Element? {
        await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
            let immediate: Element?? = self.state.withLockedValue { state in
                if state.head < state.buffer.count {
                    let element = state.buffer[state.head]
                    state.head += 1
                    if state.head > 64 && state.head * 2 > state.buffer.count {
                        state.buffer.removeFirst(state.head)
                        state.head = 0
                    }
                    return .some(element)
                }
                if state.finished { return .some(nil) }
                precondition(state.waiter == nil, "Mailbox has a single consumer")
                state.waiter = continuation
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }
}

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

/// Reads an injected clock as a `Duration` since the client was created (the state machines' time input).
struct MonotonicTime: Sendable {
    private let reader: @Sendable () -> Duration

    init(clock: any Clock<Duration>) {
        self.reader = Self.makeReader(clock)
    }

    private static func makeReader<C: Clock<Duration>>(_ clock: C) -> @Sendable () -> Duration {
        let origin = clock.now
        return { origin.duration(to: clock.now) }
    }

    /// The time since the origin.
    func now() -> Duration { self.reader() }
}

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
