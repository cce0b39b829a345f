import Foundation
import JobSyncCore

/// The one error type of `SupabaseREST`.
///
/// `description` is always safe to print: it never contains API keys, tokens or URLs with credentials.
/// Match on ``code``; PostgREST's own code (`PGRSTxxx` or a SQLSTATE) is in ``serverCode``.
public struct RESTError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: new codes may be added.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private let name: String
        private init(_ name: String) { self.name = name }
        public var description: String { self.name }

        /// The request could not be built (bad base URL, bad table name, too many `in` values, bad page size).
        public static let invalidRequest = Code("invalidRequest")
        /// The server answered with an HTTP error not covered by a more specific code.
        public static let httpError = Code("httpError")
        /// 401 with PGRST301/PGRST303: the JWT is invalid or expired (after one refresh-and-retry).
        public static let jwtExpired = Code("jwtExpired")
        /// 401/403 for other reasons (missing or wrong API key, RLS).
        public static let unauthorized = Code("unauthorized")
        /// 429: rate limited; ``RESTError/retryAfter`` holds the server's hint when present.
        public static let rateLimited = Code("rateLimited")
        /// 503/504 (PGRST000–003): the database or pool is unavailable; retry later.
        public static let unavailable = Code("unavailable")
        /// 404/413/... where the row or table is missing (`PGRST205`, `42P01`) and the like.
        public static let notFound = Code("notFound")
        /// The request did not complete (connection refused, DNS, TLS, timeout).
        public static let transport = Code("transport")
        /// The request timed out.
        public static let timeout = Code("timeout")
        /// The response body was larger than the cap (``PostgRESTClient/Configuration/maximumResponseBytes``,
        /// ``HTTPRequest/maximumBodyBytes``): the transfer was stopped at the cap, or refused up front when
        /// `Content-Length` announced more. Retrying later may help only if the server's answer shrinks.
        public static let responseTooLarge = Code("responseTooLarge")
        /// A 2xx body that is not the expected JSON.
        public static let undecodableBody = Code("undecodableBody")
        /// A 2xx answer the query cannot have produced: more rows than asked, rows outside its filter, or a page
        /// that does not advance a keyset read (a proxy or server ignoring the query's parameters).
        public static let invalidResponse = Code("invalidResponse")
    }

    /// The kind of failure.
    public var code: Code
    /// A human-readable message, safe to print.
    public var message: String
    /// The HTTP status, when the server answered.
    public var httpStatus: Int?
    /// PostgREST's `code` (`PGRST116`, a SQLSTATE such as `22P02`, ...), when the body had one.
    public var serverCode: String?
    /// PostgREST's `details`, when present (rendered as text).
    public var details: String?
    /// PostgREST's `hint`, when present.
    public var hint: String?
    /// How long the server asked us to wait (`Retry-After`), when present and parseable.
    public var retryAfter: Duration?

    /// Creates an error.
    public init(
        code: Code,
        message: String,
        httpStatus: Int? = nil,
        serverCode: String? = nil,
        details: String? = nil,
        hint: String? = nil,
        retryAfter: Duration? = nil
    ) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
        self.serverCode = serverCode
        self.details = details
        self.hint = hint
        self.retryAfter = retryAfter
    }

    /// Whether retrying later may succeed (rate limits, unavailability, transport failures and timeouts).
    public var isTransient: Bool {
        [Code.rateLimited, .unavailable, .transport, .timeout].contains(self.code)
    }

    public var description: String {
        var text = "RESTError.\(self.code)"
        if let status = self.httpStatus { text += " (HTTP \(status))" }
        if let serverCode = self.serverCode { text += " [\(serverCode)]" }
        text += ": \(self.message)"
        if let retryAfter = self.retryAfter { text += " (retry after \(retryAfter))" }
        return text
    }
}

extension RESTError {
    /// Builds the error for a non-2xx response.
    ///
    /// - Parameters:
    ///   - status: the HTTP status.
    ///   - body: the response body (a PostgREST error object `{code,details,hint,message}` or anything else).
    ///   - retryAfter: the parsed `Retry-After` header, if any.
    public static func fromResponse(status: Int, body: [UInt8], retryAfter: Duration?) -> RESTError {
        let object = (try? JSONValue.parse(body))?.objectValue
        let serverCode = object?["code"]?.stringValue
        let serverMessage = object?["message"]?.stringValue
        let details = object?["details"].flatMap(Self.text)
        let hint = object?["hint"].flatMap(Self.text)
        let code: Code
        switch status {
        case 401 where serverCode == "PGRST301" || serverCode == "PGRST303": code = .jwtExpired
        case 401, 403: code = .unauthorized
        case 429: code = .rateLimited
        case 503, 504: code = .unavailable
        case 404: code = .notFound
        default: code = .httpError
        }
        let message = serverMessage.map(Self.sanitize) ?? "HTTP status \(status)"
        return RESTError(
            code: code,
            message: message,
            httpStatus: status,
            serverCode: serverCode,
            details: details.map(Self.sanitize),
            hint: hint.map(Self.sanitize),
            retryAfter: retryAfter
        )
    }

    private static func text(_ value: JSONValue) -> String? {
        switch value {
        case .null: return nil
        case .string(let string): return string
        default: return value.serialized()
        }
    }

    /// Server messages come from PostgREST or a gateway and are not expected to carry secrets, but we cap their
    /// length and redact what looks secret (``Redaction``) so a misbehaving proxy cannot leak one through us.
    static func sanitize(_ text: String) -> String {
        Redaction.redact(text.count > 500 ? String(text.prefix(500)) + "…" : text)
    }
}

extension RESTError {
    /// This error with every occurrence of `secrets` (API key, bearer token) removed from its texts.
    package func redacting(_ secrets: [String]) -> RESTError {
        var copy = self
        copy.message = Redaction.redact(copy.message, secrets: secrets)
        copy.details = copy.details.map { Redaction.redact($0, secrets: secrets) }
        copy.hint = copy.hint.map { Redaction.redact($0, secrets: secrets) }
        return copy
    }
}
