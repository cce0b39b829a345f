package import Foundation
import JobSyncCore

/// When the client asks its access-token provider again (pure: the driver passes both clocks in).
///
/// The provider is asked on every connect and after the server refuses a channel over its token (§8.2); between
/// those, a heartbeat asks only when the token is due: shortly before the `exp` claim of the current JWT, when less
/// than `max(10 s, 10 % of its lifetime)` would remain by the next heartbeat. A provider that mints a new string on
/// every call then costs one call per connect and one per token lifetime, not one `access_token` push per heartbeat.
/// A token without a readable `exp` (or no token at all, the API key's role) is asked for again after the fixed
/// ``RealtimeClient/Configuration/accessTokenRefreshInterval``, as before.
package struct AccessTokenSchedule: Sendable, Hashable {
    /// The interval used when a token's expiry is unknown.
    package let fallbackInterval: Duration
    /// How often the schedule is consulted (the heartbeat interval): a due time is brought forward by one check so
    /// that the ask lands before the margin, not up to one interval after it.
    package let checkInterval: Duration
    /// Monotonic time from which a heartbeat asks again; nil before any token was received.
    package private(set) var dueAt: Duration?

    /// The least time left before `exp` at which a token is renewed.
    package static let minimumMargin: Duration = .seconds(10)

    package init(fallbackInterval: Duration, checkInterval: Duration) {
        self.fallbackInterval = fallbackInterval
        self.checkInterval = checkInterval
    }

    /// Records a token returned by the provider at monotonic time `now`, when the wall clock read `date`.
    package mutating func tokenReceived(_ token: String?, now: Duration, date: Date) {
        guard let token, let claims = JWTClaims(token) else {
            self.dueAt = now + self.fallbackInterval
            return
        }
        let remaining = Self.duration(claims.expiresAt.timeIntervalSince(date))
        let lifetime = claims.issuedAt.map { Self.duration(claims.expiresAt.timeIntervalSince($0)) } ?? remaining
        let margin = max(Self.minimumMargin, lifetime / 10)
        self.dueAt = now + max(.zero, remaining - margin - self.checkInterval)
    }

    /// The provider failed at `now`: ask again after the fallback interval (or sooner if the token is due sooner).
    package mutating func fetchFailed(now: Duration) {
        self.dueAt = min(self.dueAt ?? now + self.fallbackInterval, now + self.fallbackInterval)
    }

    /// Whether a heartbeat at monotonic time `now` should ask the provider.
    package func isDue(now: Duration) -> Bool {
        guard let dueAt = self.dueAt else { return true }
        return now >= dueAt
    }

    /// Seconds (from `Date` arithmetic, the one place wall-clock time enters) as a `Duration`.
    private static func duration(_ seconds: TimeInterval) -> Duration {
        guard seconds.isFinite else { return seconds > 0 ? .seconds(Int64.max / 2) : .zero }
        return .milliseconds(Int64(max(-1e12, min(1e12, seconds * 1000))))
    }
}

/// The `exp` and `iat` claims of a JWT, read from its payload without checking the signature (the server checks
/// it; the client only needs to know when to ask for the next token).
package struct JWTClaims: Sendable, Hashable {
    /// `exp`.
    package var expiresAt: Date
    /// `iat`, when present and numeric.
    package var issuedAt: Date?

    /// Nil when `token` is not three dot-separated parts, its payload is not base64url JSON, or `exp` is missing or
    /// not a number.
    package init?(_ token: String) {
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3, parts[1].utf8.count <= 16_384 else { return nil }
        var base64 = parts[1].replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        base64 += String(repeating: "=", count: (4 - base64.utf8.count % 4) % 4)
        guard let payload = Data(base64Encoded: base64),
            let object = (try? JSONValue.parse(payload, maxDepth: 8))?.objectValue,
            let exp = object["exp"]?.numberValue?.double, exp.isFinite
        else { return nil }
        self.expiresAt = Date(timeIntervalSince1970: exp)
        if let iat = object["iat"]?.numberValue?.double, iat.isFinite, iat < exp {
            self.issuedAt = Date(timeIntervalSince1970: iat)
        }
    }
}
