/// Reads an injected clock as a `Duration` since this value was made (the state machines' time input), and sleeps
/// until such a time.
package struct MonotonicTime: Sendable {
    private let reader: @Sendable () -> Duration
    private let sleeper: @Sendable (Duration) async throws -> Void

    package init(clock: any Clock<Duration>) {
        (self.reader, self.sleeper) = Self.make(clock)
    }

    private static func make<C: Clock<Duration>>(
        _ clock: C
    ) -> (@Sendable () -> Duration, @Sendable (Duration) async throws -> Void) {
        let origin = clock.now
        return (
            { origin.duration(to: clock.now) },
            { deadline in try await clock.sleep(until: origin.advanced(by: deadline), tolerance: nil) }
        )
    }

    /// The time since the origin.
    package func now() -> Duration { self.reader() }

    /// Sleeps until `deadline` (a time since the origin). The deadline is absolute, so time that passes before the
    /// sleep starts is not added to it.
    package func sleep(until deadline: Duration) async throws { try await self.sleeper(deadline) }
}
