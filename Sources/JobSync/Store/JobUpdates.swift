/// An asynchronous sequence of job changes from a ``JobStore``.
///
/// - Per job (``JobStore/updates(for:)``): the current state first (if known), then every newer version;
///   ends after a terminal state or a deletion.
/// - For a set of jobs (``JobStore/updates(forJobs:)``): current states first, then changes; ends once every job
///   of the set has reached a terminal state or been deleted.
/// - For all jobs (``JobStore/allUpdates()``): every change; ends when the store is closed.
///
/// - Important: The subscription starts when iteration starts (`makeAsyncIterator()`); changes before that are
///   not replayed beyond the current states. Each iterator has its own bounded buffer holding at most one
///   pending event per job (a newer state replaces a queued one), and at most
///   ``JobStore/Configuration/subscriberCapacity`` distinct jobs; beyond that the sequence throws
///   ``JobSyncError/Code/subscriberTooSlow``. Cancelling the consuming task, or dropping the iterator, ends the
///   subscription and frees its buffer. A subscriber never sees the same version of a job twice.
public struct JobUpdates: AsyncSequence, Sendable {
    public typealias Element = JobEvent

    let store: JobStore
    let filter: SubscriptionFilter

    public func makeAsyncIterator() -> Iterator {
        Iterator(handle: self.store.register(self.filter))
    }

    /// The iterator. Not `Sendable`: iterate from one task.
    public struct Iterator: AsyncIteratorProtocol {
        let handle: SubscriptionHandle

        /// The next change, or `nil` when the subscription ended.
        ///
        /// - Throws: ``JobSyncError`` with ``JobSyncError/Code/subscriberTooSlow`` when the buffer overflowed.
        public mutating func next() async throws -> JobEvent? {
            try await self.handle.subscriber.next()
        }
    }
}

@available(*, unavailable)
extension JobUpdates.Iterator: Sendable {}

/// Owns one registration: when the iterator holding it goes away, the subscriber is removed from the store.
final class SubscriptionHandle: Sendable {
    let subscriber: Subscriber
    let store: JobStore

    init(subscriber: Subscriber, store: JobStore) {
        self.subscriber = subscriber
        self.store = store
    }

    // Releasing a registration is a dictionary removal, not I/O; it is the only way to free the buffer of an
    // iterator abandoned by `break` (the same contract as AsyncStream's termination on deinit).
    deinit {
        self.store.unregister(self.subscriber)
    }
}
