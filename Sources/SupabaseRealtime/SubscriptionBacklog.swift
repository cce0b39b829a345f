import JobSyncCore
import NIOConcurrencyHelpers

/// Back-pressure from subscriptions to the socket: how many events each subscription was handed and has not
/// consumed yet.
///
/// The driver counts each event it hands a subscription (``added(_:)``), the subscription's iterator each one its
/// consumer takes (``consumed(_:)``). While some subscription holds more than ``highWater`` unread events, the
/// connection's reader waits (``waitWhileBehind(time:maximum:)``) before taking the next frame from the socket,
/// so a burst slows the server down (TCP flow control) instead of overflowing a subscription's buffer. A consumer
/// that makes no progress for `maximum` is given up on: reading resumes, and that subscription overflows as before
/// (``RealtimeClientError/Code/subscriptionOverflow``) rather than stalling every other one.
final class SubscriptionBacklog: Sendable {
    private struct State {
        var unread: [SubscriberID: Int] = [:]
        /// Subscriptions holding more than `highWater` unread events.
        var behind = 0
        /// Set when a wait timed out; cleared once no subscription is behind.
        var gaveUp = false
        var waiter: CheckedContinuation<Void, Never>?
    }

    /// Unread events per subscription above which the reader waits.
    let highWater: Int
    private let state = NIOLockedValueBox(State())

    init(highWater: Int) {
        self.highWater = max(1, highWater)
    }

    /// The driver handed `subscriber` one event.
    func added(_ subscriber: SubscriberID) {
        self.state.withLockedValue { state in
            let unread = state.unread[subscriber, default: 0] + 1
            state.unread[subscriber] = unread
            if unread == self.highWater + 1 { state.behind += 1 }
        }
    }

    /// The consumer of `subscriber` took one event.
    func consumed(_ subscriber: SubscriberID) {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard let unread = state.unread[subscriber], unread > 0 else { return nil }
            state.unread[subscriber] = unread - 1
            if unread == self.highWater + 1 { state.behind -= 1 }
            return Self.released(&state)
        }
        waiter?.resume()
    }

    /// The subscription ended: its unread events no longer hold anyone back.
    func removed(_ subscriber: SubscriberID) {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            guard let unread = state.unread.removeValue(forKey: subscriber) else { return nil }
            if unread > self.highWater { state.behind -= 1 }
            return Self.released(&state)
        }
        waiter?.resume()
    }

    private static func released(_ state: inout State) -> CheckedContinuation<Void, Never>? {
        guard state.behind == 0 else { return nil }
        state.gaveUp = false
        defer { state.waiter = nil }
        return state.waiter
    }

    /// Returns at once unless some subscription is behind; then waits until none is, or `maximum` passed (after
    /// which it stops waiting until every subscription has caught up once). Single caller at a time.
    func waitWhileBehind(time: MonotonicTime, maximum: Duration) async {
        guard self.state.withLockedValue({ $0.behind > 0 && !$0.gaveUp }) else { return }
        let deadline = time.now() + maximum
        await withTaskGroup(of: Void.self) { group in
            group.addTask {
                await withTaskCancellationHandler {
                    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                        let waiting = self.state.withLockedValue { state -> Bool in
                            guard state.behind > 0, !state.gaveUp, !Task.isCancelled else { return false }
                            state.waiter = continuation
                            return true
                        }
                        if !waiting { continuation.resume() }
                    }
                } onCancel: {
                    self.state.withLockedValue { state in
                        defer { state.waiter = nil }
                        return state.waiter
                    }?.resume()
                }
            }
            group.addTask {
                // Cancelled once the consumers caught up (or with the reader); only a timeout gives up.
                guard (try? await time.sleep(until: deadline)) != nil else { return }
                self.giveUp()
            }
            await group.next()
            group.cancelAll()
        }
    }

    private func giveUp() {
        let waiter = self.state.withLockedValue { state -> CheckedContinuation<Void, Never>? in
            if state.behind > 0 { state.gaveUp = true }
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }
}
