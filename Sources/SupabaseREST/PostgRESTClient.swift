import Foundation
import Logging

/// A small PostgREST client for reading rows (reference/realtime-protocol.md §11).
///
/// Every request carries `apikey: <key>` and `Authorization: Bearer <token>`, where the token comes from
/// ``Configuration/accessToken`` and falls back to the key. A 401 with PGRST301/PGRST303 (JWT invalid or
/// expired) asks the provider for a fresh token and retries once.
///
/// ```swift
/// let client = try PostgRESTClient(configuration: .init(baseURL: "https://ref.supabase.co/rest/v1", apiKey: key))
/// let rows = try await client.fetch(PostgRESTQuery(table: "jobs", filters: [.init("id", .in(ids))]))
/// ```
public struct PostgRESTClient: Sendable {
    /// Supplies the bearer token. `forceRefresh` is `true` after the server reported an expired JWT.
    /// Return `nil` to use the API key as the bearer token.
    public typealias AccessTokenProvider = @Sendable (_ forceRefresh: Bool) async throws -> String?

    /// Client settings.
    public struct Configuration: Sendable {
        /// The PostgREST base, e.g. `https://<ref>.supabase.co/rest/v1` (no query, no trailing slash needed).
        public var baseURL: String
        /// The project API key, sent as `apikey`. Never logged or put in errors.
        public var apiKey: String
        /// The access-token provider (default: none, the key is the bearer token).
        public var accessToken: AccessTokenProvider?
        /// Per-request timeout (default 10 s).
        public var timeout: Duration
        /// The most rows requested per page (default and maximum 1,000, Supabase's default cap).
        public var pageSize: Int
        /// The HTTP transport (default: URLSession).
        public var transport: any HTTPTransport
        /// The logger (trace/debug only).
        public var logger: Logger
        /// The current time, used only to interpret `Retry-After` HTTP-dates.
        public var now: @Sendable () -> Date

        /// Creates a configuration with the defaults documented on each property.
        public init(
            baseURL: String,
            apiKey: String,
            accessToken: AccessTokenProvider? = nil,
            timeout: Duration = .seconds(10),
            pageSize: Int = 1000,
            transport: any HTTPTransport = URLSessionHTTPTransport(),
            logger: Logger = Logger(label: "SupabaseREST", factory: { _ in SwiftLogNoOpLogHandler() }),
            now: @escaping @Sendable () -> Date = { Date() }
        ) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.accessToken = accessToken
            self.timeout = timeout
            self.pageSize = pageSize
            self.transport = transport
            self.logger = logger
            self.now = now
        }
    }

    /// The most rows one page may request.
    public static let maximumPageSize = 1000

    /// The configuration in use.
    public let configuration: Configuration
    private let base: String

    /// Creates a client.
    ///
    /// - Throws: ``RESTError/Code/invalidRequest`` when the base URL is not http(s) or has a query, the API key is
    ///   empty, or the page size is outside 1…1,000.
    public init(configuration: Configuration) throws(RESTError) {
        var base = configuration.baseURL
        while base.hasSuffix("/") { base.removeLast() }
        let lower = base.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), !base.contains("?"), !base.contains("#"),
            base.count > "https://".count, URL(string: base) != nil
        else {
            throw RESTError(code: .invalidRequest, message: "the REST base URL must be an http(s) URL without a query")
        }
        guard !configuration.apiKey.isEmpty else {
            throw RESTError(code: .invalidRequest, message: "the API key is missing")
        }
        guard (1...Self.maximumPageSize).contains(configuration.pageSize) else {
            throw RESTError(code: .invalidRequest, message: "the page size must be 1…\(Self.maximumPageSize)")
        }
        self.configuration = configuration
        self.base = base
    }

    /// Builds the HTTP request for `query` with the given bearer token (pure; exposed for tests).
    public func request(for query: PostgRESTQuery, bearer: String) throws(RESTError) -> HTTPRequest {
        try query.validate()
        return HTTPRequest(
            url: self.base + "/" + percentEncode(query.table) + "?" + query.queryString,
            headers: [
                "apikey": self.configuration.apiKey,
                "Authorization": "Bearer " + bearer,
                "Accept": "application/json",
            ],
            timeout: self.configuration.timeout
        )
    }

    /// Runs one query and returns its rows as JSON objects.
    ///
    /// - Throws: ``RESTError``: `invalidRequest` before any I/O; `jwtExpired` when a refreshed token is still
    ///   rejected; `rateLimited` (with ``RESTError/retryAfter``), `unavailable`, `transport`, `timeout`,
    ///   `undecodableBody`, and the other HTTP codes.
    public func fetch(_ query: PostgRESTQuery) async throws(RESTError) -> [[String: JSON]] {
        try query.validate()
        let response = try await self.send(query)
        return try Self.decodeRows(response)
    }

    /// Runs a query page by page (`limit`/`offset`, ``Configuration/pageSize`` rows each) until a short page,
    /// and returns every row. Use a total `order` (e.g. `updated_at.asc,id.asc`) so pages are stable.
    ///
    /// - Parameter maximumRows: stop after this many rows (default: no limit).
    /// - Throws: as ``fetch(_:)``.
    public func fetchAll(_ query: PostgRESTQuery, maximumRows: Int? = nil) async throws(RESTError) -> [[String: JSON]] {
        var rows: [[String: JSON]] = []
        var offset = query.offset ?? 0
        let pageSize = min(query.limit ?? self.configuration.pageSize, self.configuration.pageSize)
        while true {
            var page = query
            page.limit = pageSize
            page.offset = offset
            let batch = try await self.fetch(page)
            rows += batch
            offset += batch.count
            if batch.count < pageSize { break }
            if let maximumRows, rows.count >= maximumRows { break }
        }
        if let maximumRows, rows.count > maximumRows { rows.removeLast(rows.count - maximumRows) }
        return rows
    }

    /// Sends a GET for an arbitrary path under the base (for endpoints other than tables), with the usual auth
    /// headers plus `extraHeaders`; returns the raw response after the JWT-refresh retry. Non-2xx is thrown.
    public func get(path: String, extraHeaders: [String: String] = [:]) async throws(RESTError) -> HTTPResponse {
        let bearer = try await self.token(forceRefresh: false)
        var request = HTTPRequest(
            url: self.base + path,
            headers: ["apikey": self.configuration.apiKey, "Authorization": "Bearer " + bearer],
            timeout: self.configuration.timeout
        )
        request.headers.merge(extraHeaders, uniquingKeysWith: { _, new in new })
        return try await self.execute(request, table: path) { bearer in
            var retried = request
            retried.headers["Authorization"] = "Bearer " + bearer
            return retried
        }
    }

    private func send(_ query: PostgRESTQuery) async throws(RESTError) -> HTTPResponse {
        let bearer = try await self.token(forceRefresh: false)
        let request = try self.request(for: query, bearer: bearer)
        return try await self.execute(request, table: query.table) { bearer in
            var retried = request
            retried.headers["Authorization"] = "Bearer " + bearer
            return retried
        }
    }

    private func execute(
        _ request: HTTPRequest,
        table: String,
        withToken: (String) -> HTTPRequest
    ) async throws(RESTError) -> HTTPResponse {
        var request = request
        var refreshed = false
        while true {
            let response = try await self.configuration.transport.send(request)
            self.configuration.logger.trace(
                "PostgREST response",
                metadata: ["rest.table": "\(table)", "rest.status": "\(response.status)"]
            )
            if (200..<300).contains(response.status) { return response }
            let retryAfter = response.headers["retry-after"].flatMap {
                RetryAfter.parse($0, now: self.configuration.now())
            }
            let bearer = request.headers["Authorization"].map { String($0.dropFirst("Bearer ".count)) }
            let error = RESTError.fromResponse(status: response.status, body: response.body, retryAfter: retryAfter)
                .redacting([self.configuration.apiKey] + (bearer.map { [$0] } ?? []))
            if error.code == .jwtExpired, !refreshed, self.configuration.accessToken != nil {
                refreshed = true
                self.configuration.logger.debug(
                    "JWT rejected; refreshing the access token once",
                    metadata: [
                        "rest.table": "\(table)", "rest.serverCode": "\(error.serverCode ?? "")",
                    ])
                request = withToken(try await self.token(forceRefresh: true))
                continue
            }
            throw error
        }
    }

    private func token(forceRefresh: Bool) async throws(RESTError) -> String {
        guard let provider = self.configuration.accessToken else { return self.configuration.apiKey }
        do {
            return try await provider(forceRefresh) ?? self.configuration.apiKey
        } catch {
            throw RESTError(code: .unauthorized, message: "the access-token provider failed")
        }
    }

    /// Decodes a 2xx body as a JSON array of objects.
    ///
    /// - Throws: ``RESTError/Code/undecodableBody`` when it is not.
    public static func decodeRows(_ response: HTTPResponse) throws(RESTError) -> [[String: JSON]] {
        guard let json = JSON.parse(response.body) else {
            throw RESTError(
                code: .undecodableBody, message: "the response body is not JSON", httpStatus: response.status)
        }
        switch json {
        case .array(let values):
            var rows: [[String: JSON]] = []
            rows.reserveCapacity(values.count)
            for value in values {
                guard let object = value.objectValue else {
                    throw RESTError(
                        code: .undecodableBody, message: "a row is not a JSON object", httpStatus: response.status)
                }
                rows.append(object)
            }
            return rows
        case .object(let object):
            return [object]  // `Accept: application/vnd.pgrst.object+json` or a single-object endpoint
        default:
            throw RESTError(
                code: .undecodableBody, message: "the response body is not a JSON array", httpStatus: response.status)
        }
    }
}
