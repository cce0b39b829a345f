public import RealtimeProtocol

/// What a `postgres_changes` subscription reports.
public enum RealtimeSubscriptionEvent: Sendable, Hashable {
    /// The server confirmed the subscription (`system` "Subscribed to PostgreSQL" ok, §4.5). Sent again after every
    /// rejoin and token refresh: each one is the cue to catch up over REST, because Realtime never replays changes
    /// missed before it (§10).
    case live
    /// Changes are not (or no longer) flowing; a ``live`` follows once the client has recovered.
    case notLive(NotLiveReason)
    /// A row change matching the subscription's binding.
    case change(PostgresChange)
    /// A server error about the subscription (e.g. an unparsable filter, §4.5), or a channel-level error.
    case systemError(String)
}

/// Why a subscription is not live.
public struct NotLiveReason: Sendable, Hashable, CustomStringConvertible {
    /// The broad cause.
    public enum Kind: Sendable, Hashable {
        /// The WebSocket is down; the client reconnects and rejoins.
        case socketLost
        /// The WebSocket is open but a heartbeat reply is late (a stall): changes may be held up. A ``live``
        /// follows when the reply arrives, or the socket is lost when the heartbeat times out.
        case socketUnresponsive
        /// The channel failed (join timed out, refused for another reason, server error, token expired); it rejoins.
        case channelErrored
        /// The join was refused because the role may not read the topic (`Unauthorized: You do not have
        /// permissions to read from this Channel topic: …`, broadcast-from-database.md §B2). The client keeps
        /// rejoining on the rejoin schedule (each refusal takes the server ~5 s), in case access is granted.
        case unauthorized
        /// The server closed a private channel after a token refresh because the new token may no longer read it
        /// (`You no longer have permission …`, §B2); the client rejoins on the rejoin schedule.
        case accessRevoked
        /// The server closed or refused the channel over a rate limit (`Too many messages per second`, §7.2, §B6);
        /// the client rejoins after ``RealtimeClient/Configuration/rateLimitedRejoinDelay``.
        case rateLimited
        /// The replication connection a broadcast channel waited for was not established in time (§B3); the client
        /// rejoins on the rejoin schedule.
        case replicationNotReady
        /// The channel is rejoining because its set of bindings changed.
        case rejoining
        /// The server reported a `postgres_changes` error; the channel stays joined.
        case subscriptionError
        /// The server closed the channel; the subscription ends.
        case channelClosed
    }

    /// The broad cause.
    public var kind: Kind
    /// A printable explanation (no secrets).
    public var message: String

    /// Creates a reason.
    public init(kind: Kind, message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(self.kind): \(self.message)" }
}

/// The events of one subscription: ``PostgresChangeSubscription`` or ``BroadcastSubscription``.
///
/// - Important: Single consumer. The buffer holds at most
///   ``RealtimeClient/Configuration/subscriptionBufferSize`` events; past half of it the client stops reading the
///   socket until the consumer catches up (at most a second at a time). If the consumer still falls that far behind,
///   the sequence delivers what it buffered and then throws ``RealtimeClientError/Code/subscriptionOverflow``.
///   The sequence throws ``RealtimeClientError/Code/channelClosed`` when the server closes the channel for good, and
///   ends normally when the client shuts down. Ending the iteration (or dropping the sequence) removes the
///   subscription, and leaves the channel when no one else reads it.
public struct RealtimeSubscription<Event: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Event
    public typealias Failure = any Error

    let stream: AsyncThrowingStream<Event, any Error>
    /// Where the consumer's progress is counted (back-pressure, see ``SubscriptionBacklog``).
    let backlog: (SubscriptionBacklog, SubscriberID)?

    init(stream: AsyncThrowingStream<Event, any Error>, backlog: (SubscriptionBacklog, SubscriberID)? = nil) {
        self.stream = stream
        self.backlog = backlog
    }

    /// Creates the iterator (call once).
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: self.stream.makeAsyncIterator(), backlog: self.backlog)
    }

    /// The iterator.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncThrowingStream<Event, any Error>.Iterator
        let backlog: (SubscriptionBacklog, SubscriberID)?

        /// The next event; throws ``RealtimeClientError`` when the subscription fails.
        public mutating func next() async throws -> Event? {
            let event = try await self.base.next()
            if event != nil, let (backlog, id) = self.backlog { backlog.consumed(id) }
            return event
        }
    }
}

@available(*, unavailable)
extension RealtimeSubscription.Iterator: Sendable {}

/// The events of one `postgres_changes` binding, from
/// ``RealtimeClient/postgresChanges(schema:table:event:filter:channel:)`` (see ``RealtimeSubscription``).
public typealias PostgresChangeSubscription = RealtimeSubscription<RealtimeSubscriptionEvent>

/// A multicast sequence of values (client status, heartbeat round trips). Each call to the producing property makes
/// an independent subscriber.
///
/// - Important: Each subscriber buffers the newest 64 values; older ones are dropped for a slow consumer.
public struct RealtimeObservation<Value: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Value
    public typealias Failure = Never

    let stream: AsyncStream<Value>

    /// Creates the iterator (call once).
    public func makeAsyncIterator() -> Iterator {
        Iterator(base: self.stream.makeAsyncIterator())
    }

    /// The iterator.
    public struct Iterator: AsyncIteratorProtocol {
        var base: AsyncStream<Value>.Iterator

        /// The next value, or `nil` once the client has shut down.
        public mutating func next() async -> Value? {
            await self.base.next()
        }
    }
}

@available(*, unavailable)
extension RealtimeObservation.Iterator: Sendable {}
