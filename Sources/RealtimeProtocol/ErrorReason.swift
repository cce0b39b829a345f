/// A server error reason such as `"ChannelRateLimitReached: Too many channels"` (§4.4), split into its code
/// prefix and message, and classified by its text.
///
/// The code prefix is optional (`"Unknown Error on Channel"`, `"unmatched topic"` have none) and has changed
/// between server versions, so ``kind`` looks at the message text first, as §4.4 recommends.
package struct ErrorReason: Hashable, Sendable, CustomStringConvertible {
    /// What a client should do about an error, derived from its text.
    public enum Kind: Hashable, Sendable {
        /// The JWT expired ("Token has expired …"): refresh the token, then rejoin.
        case tokenExpired
        /// A rate or capacity limit ("Too many …", `…RateLimitReached`): back off.
        case rateLimited
        /// The role may not read this topic (`Unauthorized`, `PrivateOnly`): retrying will not help.
        case unauthorized
        /// The token itself is bad (`MalformedJWT`, `JwtSignatureError`, missing claims): get a new token.
        case invalidToken
        /// The server is restarting (`RealtimeRestarting`): reconnect with backoff.
        case serverRestarting
        /// A temporary server-side condition (project DB connecting or unavailable): retry with backoff.
        case transient
        /// A broadcast channel's `replication_ready` wait timed out ("Replication connection was not established in
        /// time", broadcast-from-database.md §B3): rejoin with backoff.
        case replicationNotReady
        /// Anything else.
        case other
    }

    /// The reason exactly as received. May contain user-controlled text; it never contains the token.
    public var raw: String
    /// The `<Code>` prefix (e.g. `ChannelRateLimitReached`), or `nil` when there is none.
    public var code: String?
    /// The text after `"<Code>: "`, or the whole reason when there is no code.
    public var message: String

    /// Splits a reason string. A code is recognised only when the text before the first `": "` is a single
    /// identifier (letters, digits, `_`, starting with a letter).
    public init(_ raw: String) {
        self.raw = raw
        if let (code, message) = Self.split(raw) {
            self.code = code
            self.message = message
        } else {
            self.code = nil
            self.message = raw
        }
    }

    private static func split(_ raw: String) -> (String, String)? {
        let utf8 = raw.utf8
        var index = utf8.startIndex
        var sawLetterFirst = false
        while index != utf8.endIndex {
            let byte = utf8[index]
            let isLetter = (byte >= 0x41 && byte <= 0x5A) || (byte >= 0x61 && byte <= 0x7A)
            let isDigitOrUnderscore = (byte >= 0x30 && byte <= 0x39) || byte == 0x5F
            if index == utf8.startIndex {
                guard isLetter else { return nil }
                sawLetterFirst = true
            } else if byte == 0x3A {  // ':'
                let next = utf8.index(after: index)
                guard sawLetterFirst, next != utf8.endIndex, utf8[next] == 0x20 else { return nil }
                let code = String(raw[raw.startIndex..<index])
                let message = String(raw[utf8.index(after: next)...])
                return (code, message)
            } else if !(isLetter || isDigitOrUnderscore) {
                return nil
            }
            index = utf8.index(after: index)
        }
        return nil
    }

    private static let invalidTokenCodes: Set<String> = [
        "MalformedJWT", "JwtSignatureError", "JwtSignerError", "InvalidJWTToken", "InvalidJWTExpiration",
    ]
    private static let transientCodes: Set<String> = [
        "InitializingProjectConnection", "UnableToConnectToProject", "DatabaseLackOfConnections",
        "IncreaseConnectionPool",
    ]

    /// The classification, by message text first and code second (§4.4).
    public var kind: Kind {
        let text = self.raw.lowercased()
        if text.contains("expired") {
            return .tokenExpired
        }
        if text.contains("replication connection was not established") {
            return .replicationNotReady
        }
        if let code = self.code, Self.invalidTokenCodes.contains(code) {
            return .invalidToken
        }
        if text.contains("not a valid jwt") || text.contains("jwt signature") || text.contains("signature_error")
            || text.contains("are required in jwt") || text.contains("token expiration time is invalid")
            || text.contains("jwt signer")
        {
            return .invalidToken
        }
        if self.code == "Unauthorized" || self.code == "PrivateOnly" || text.contains("do not have permission")
            || text.contains("no longer have permission") || text.contains("only allows private channels")
        {
            return .unauthorized
        }
        if self.code == "RealtimeRestarting" || text.contains("is restarting") {
            return .serverRestarting
        }
        if let code = self.code, Self.transientCodes.contains(code) {
            return .transient
        }
        if text.contains("database timeouts") || text.contains("unable to connect to the project database")
            || text.contains("initializing the project connection")
            || text.contains("connecting to the project database")
            || text.contains("connection pool") || text.contains("can't accept more connections")
        {
            return .transient
        }
        if self.code?.hasSuffix("RateLimitReached") == true || text.hasPrefix("too many")
            || text.contains(": too many") || text.contains("rate limit")
        {
            return .rateLimited
        }
        return .other
    }

    /// The raw reason.
    public var description: String { self.raw }
}
