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
