#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A value guarded by a `pthread_mutex_t`.
///
/// Used instead of `Synchronization.Mutex` because ThreadSanitizer does not see `Mutex`'s synchronization on Linux
/// (it is built from uninstrumented atomics and futex calls inside the standard library) and reports races between
/// accesses that are all made with the lock held. TSan intercepts `pthread_mutex_lock`/`unlock`.
final class Locked<Value>: @unchecked Sendable {
    // @unchecked Sendable: `value` is only read or written between `pthread_mutex_lock` and `pthread_mutex_unlock`
    // of `mutex`, which is allocated once and never moves.
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    init(_ value: Value) {
        self.mutex = .allocate(capacity: 1)
        self.mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(self.mutex, nil)
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(self.mutex)
        self.mutex.deallocate()
    }

    /// Runs `body` with the lock held.
    func withLock<Result>(_ body: (inout Value) throws -> Result) rethrows -> Result {
        pthread_mutex_lock(self.mutex)
        defer { pthread_mutex_unlock(self.mutex) }
        return try body(&self.value)
    }
}
