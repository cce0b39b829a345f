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
