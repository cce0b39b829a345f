import Synchronization

/// Fans values out to any number of ``RealtimeObservation`` subscribers, each with its own bounded buffer.
final class Broadcaster<Value: Sendable>: Sendable {
    private struct State {
        var subscribers: [UInt64: AsyncStream<Value>.Continuation] = [:]
        var nextID: UInt64 = 0
        var latest: Value?
        var finished = false
    }

    private let state: Mutex<State>
    private let replaysLatest: Bool

    /// - Parameters:
    ///   - initial: the first value, replayed to new subscribers when `replaysLatest` is set.
    ///   - replaysLatest: whether a new subscriber first gets the latest value.
    init(initial: Value?, replaysLatest: Bool) {
        self.state = Mutex(State(latest: initial))
        self.replaysLatest = replaysLatest
    }

    /// The latest value published.
    var latest: Value? { self.state.withLock { $0.latest } }

    /// A new subscriber.
    func subscribe() -> RealtimeObservation<Value> {
        let (stream, continuation) = AsyncStream<Value>.makeStream(bufferingPolicy: .bufferingNewest(64))
        let registered: Bool = self.state.withLock { state in
            guard !state.finished else { return false }
            let id = state.nextID
            state.nextID += 1
            state.subscribers[id] = continuation
            if self.replaysLatest, let latest = state.latest { continuation.yield(latest) }
            continuation.onTermination = { [weak self] _ in
                self?.state.withLock { _ = $0.subscribers.removeValue(forKey: id) }
            }
            return true
        }
        if !registered { continuation.finish() }
        return RealtimeObservation(stream: stream)
    }

    /// Publishes a value to every subscriber.
    func publish(_ value: Value) {
        let subscribers = self.state.withLock { state -> [AsyncStream<Value>.Continuation] in
            state.latest = value
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.yield(value) }
    }

    /// Ends every subscription; later subscribers end at once.
    func finish() {
        let subscribers = self.state.withLock { state -> [AsyncStream<Value>.Continuation] in
            state.finished = true
            defer { state.subscribers = [:] }
            return Array(state.subscribers.values)
        }
        for subscriber in subscribers { subscriber.finish() }
    }
}
