import NIOConcurrencyHelpers

/// The inbound events of one connection, between the thread that produces them and the connection's single
/// consumer. The consumer takes everything queued at once: one lock per batch instead of per message, and a
/// consumer that is behind never suspends.
///
/// What was taken counts as buffered until the consumer comes back for more: then ``consumed`` hears of the whole
/// batch (so a transport's flow control sees the batch the consumer is still working through). A consumer whose task
/// is cancelled while it waits gets the end of the sequence, and ``consumerGone`` is called once.
final class InboundEventQueue: Sendable {
    private struct State {
        var queued: [WebSocketEvent] = []
        var finished = false
        var consumerGone = false
        var waiter: CheckedContinuation<[WebSocketEvent], Never>?
    }

    private let state = NIOLockedValueBox(State())
    /// Told what the consumer finished with: the number of messages and their bytes.
    private let consumed: @Sendable (_ messages: Int, _ bytes: Int) -> Void
    /// Told once that the consumer stopped (its task was cancelled while it waited).
    private let consumerGone: @Sendable () -> Void

    init(
        consumed: @escaping @Sendable (_ messages: Int, _ bytes: Int) -> Void,
        consumerGone: @escaping @Sendable () -> Void
    ) {
        self.consumed = consumed
        self.consumerGone = consumerGone
    }

    /// Queues an event (producer side). Ignored after ``finish()`` or once the consumer is gone.
    func push(_ event: WebSocketEvent) {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<[WebSocketEvent], Never>? in
            guard !state.finished, !state.consumerGone else { return nil }
            if let waiter = state.waiter {
                state.waiter = nil
                return waiter
            }
            state.queued.append(event)
            return nil
        }
        waiter?.resume(returning: [event])
    }

    /// Ends the sequence after what is queued (producer side).
    func finish() {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<[WebSocketEvent], Never>? in
            state.finished = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume(returning: [])
    }

    /// Reports `previous` consumed, then returns every queued event, waiting while none is; empty at the end.
    func take(after previous: [WebSocketEvent]) async -> [WebSocketEvent] {
        if !previous.isEmpty {
            var messages = 0
            var bytes = 0
            for case .message(let message) in previous {
                messages += 1
                bytes += message.byteCount
            }
            if messages > 0 { self.consumed(messages, bytes) }
        }
        if let ready = self.state.withLockedValue({ Self.takeQueued(&$0) }) { return ready }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<[WebSocketEvent], Never>) in
                let ready = self.state.withLockedValue { state -> [WebSocketEvent]? in
                    if let ready = Self.takeQueued(&state) { return ready }
                    if Task.isCancelled { return [] }
                    precondition(state.waiter == nil, "InboundEventQueue has a single consumer")
                    state.waiter = continuation
                    return nil
                }
                if let ready { continuation.resume(returning: ready) }
            }
        } onCancel: {
            self.cancelConsumer()
        }
    }

    private func cancelConsumer() {
        let (waiter, first) = self.state.withLockedValue {
            state -> (CheckedContinuation<[WebSocketEvent], Never>?, Bool) in
            let first = !state.consumerGone
            state.consumerGone = true
            state.queued = []
            defer { state.waiter = nil }
            return (state.waiter, first)
        }
        waiter?.resume(returning: [])
        if first { self.consumerGone() }
    }

    /// Everything queued (`[]` at the end), or `nil` when the consumer must wait.
    private static func takeQueued(_ state: inout State) -> [WebSocketEvent]? {
        if state.consumerGone { return [] }
        if !state.queued.isEmpty {
            defer { state.queued = [] }
            return state.queued
        }
        return state.finished ? [] : nil
    }
}
