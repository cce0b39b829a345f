/// A number from a counter that identifies one of something (a connection attempt, a subscriber), printed as the
/// number. `Kind` only keeps identifiers of different things apart; it is never stored.
package struct SequenceID<Kind>: Sendable, Hashable, CustomStringConvertible {
    /// The number, from 1.
    package var rawValue: UInt64
    /// Wraps a number.
    package init(rawValue: UInt64) { self.rawValue = rawValue }
    package var description: String { String(self.rawValue) }
}
