/// A retry schedule: a list of delays by attempt, the last one repeated, with symmetric jitter.
///
/// Attempt 1 waits `steps[0]`, attempt 2 `steps[1]`, and every attempt past the end of the list waits the last step
/// (realtime-js: 1, 2, 5, 10, 10, … s, reference §9.3). Jitter spreads each delay uniformly over
/// `[delay × (1 − jitter), delay × (1 + jitter)]` so that many clients (or channels) do not retry in lockstep.
public struct BackoffSchedule: Sendable, Hashable {
    /// Delays by attempt; the last one repeats. Never empty (an empty list is replaced by one second).
    public var steps: [Duration]
    /// The jitter fraction in `0...1` (0.2 means ±20 %). Values outside are clamped.
    public var jitter: Double

    /// Creates a schedule.
    /// - Parameters:
    ///   - steps: delays by attempt, the last one repeated. An empty list means one second.
    ///   - jitter: the jitter fraction, clamped to `0...1`.
    public init(steps: [Duration], jitter: Double = 0.2) {
        self.steps = steps.isEmpty ? [.seconds(1)] : steps.map { max($0, .zero) }
        self.jitter = min(max(jitter.isFinite ? jitter : 0, 0), 1)
    }

    /// The socket reconnect schedule of realtime-js: 1, 2, 5, 10 s, then 10 s (§9.3), ±20 %.
    public static let reconnect = BackoffSchedule(steps: [.seconds(1), .seconds(2), .seconds(5), .seconds(10)])
    /// The channel rejoin schedule of Phoenix: 1, 2, 5, then 10 s (§9.3), ±20 %.
    public static let rejoin = BackoffSchedule(steps: [.seconds(1), .seconds(2), .seconds(5), .seconds(10)])

    /// The delay before the given attempt, without jitter.
    /// - Parameter attempt: the 1-based attempt number; values below 1 count as 1.
    public func baseDelay(attempt: Int) -> Duration {
        let index = min(max(attempt, 1), self.steps.count) - 1
        return self.steps[index]
    }

    /// The delay before the given attempt, with jitter taken from `unit`.
    /// - Parameters:
    ///   - attempt: the 1-based attempt number.
    ///   - unit: a random number in `0..<1`; 0.5 gives the base delay. Values outside are clamped.
    public func delay(attempt: Int, unit: Double) -> Duration {
        Self.jittered(self.baseDelay(attempt: attempt), fraction: self.jitter, unit: unit)
    }

    /// Spreads `base` over `[base × (1 − fraction), base × (1 + fraction)]` using `unit` in `0..<1`.
    public static func jittered(_ base: Duration, fraction: Double, unit: Double) -> Duration {
        let clampedUnit = min(max(unit.isFinite ? unit : 0.5, 0), 1)
        let factor = 1 + fraction * (2 * clampedUnit - 1)
        return base * max(factor, 0)
    }
}

/// The per-socket message reference counter (§2.2): refs are decimal strings, unique per socket, shared by heartbeats
/// and every channel push on that socket.
package struct RefCounter: Sendable, Hashable {
    private var last: UInt64

    /// Creates a counter whose first ref is `"1"`.
    public init() {
        self.last = 0
    }

    /// Returns the next ref.
    public mutating func next() -> Ref {
        self.last &+= 1
        return Ref(rawValue: String(self.last))
    }
}
