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
    ///
    /// Returns without suspending while elements are queued (a consumer that is behind drains its backlog at the
    /// cost of one lock per element); suspends only when the mailbox is empty.
    func next() async -> Element? {
        if let immediate = self.state.withLockedValue({ Self.take(&$0) }) { return immediate }
        return await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
            let immediate: Element?? = self.state.withLockedValue { state in
                if let element = Self.take(&state) { return element }
                precondition(state.waiter == nil, "Mailbox has a single consumer")
                state.waiter = continuation
                return .none
            }
            if let immediate { continuation.resume(returning: immediate) }
        }
    }

    /// The next queued element (`.some(nil)` once finished and drained), or `nil` when the consumer must wait.
    private static func take(_ state: inout State) -> Element?? {
        if state.head < state.buffer.count {
            let element = state.buffer[state.head]
            state.head += 1
            if state.head > 64 && state.head * 2 > state.buffer.count {
                state.buffer.removeFirst(state.head)
                state.head = 0
            }
            return .some(element)
        }
        return state.finished ? .some(nil) : nil
    }
}
