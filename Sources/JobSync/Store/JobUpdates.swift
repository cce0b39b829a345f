/// An asynchronous sequence of job changes from a ``JobStore``.
///
/// ## Subscription contract
///
/// A job's *final event* is its first terminal state (`completed`, `failed`) or its deletion, whichever comes first.
///
/// - **Per job** (``JobStore/updates(for:)``): the current state first (if known), then every newer version; the
///   sequence finishes right after the final event. Nothing of the job is delivered after it: not a later deletion
///   (retention), not the newer version of a retried job (start a new sequence to follow a retry).
/// - **A set of jobs** (``JobStore/updates(forJobs:)``): the union of the per-job sequences of its jobs. Each job's
///   part ends at that job's final event, so a job deleted after finishing is not reported as deleted even while
///   the set stays open for its other jobs; the sequence finishes once every job of the set had its final event.
/// - **All jobs** (``JobStore/allUpdates()``): every change of every job, including deletions after a terminal
///   state and retried jobs' newer versions; finishes only when the store is closed.
/// - **`waitForCompletion`** (``JobSyncClient/waitForCompletion(of:timeout:)``): answers at the first terminal state
///   (at once when the store already holds one) and throws when the job is deleted before finishing; what happens
///   to the job afterwards does not matter.
///
/// - Important: The subscription starts when iteration starts (`makeAsyncIterator()`); changes before that are
///   not replayed beyond the current states. Each iterator has its own bounded buffer holding at most one
///   pending event per job: a newer state replaces a queued one (latest wins), except that a deletion never replaces
///   a queued terminal state (both are delivered, in order), so no buffered outcome is lost. At most
///   ``JobStore/Configuration/subscriberCapacity`` distinct jobs may be pending; beyond that the sequence throws
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
