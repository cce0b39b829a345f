public import Foundation
public import JobSyncCore
public import Logging

/// The rows of a keyset read (``PostgRESTClient/fetchAll(_:orderedBy:key:maximumRows:)``).
public struct PostgRESTRows: Sendable {
    /// The rows, in `(column, key)` order.
    public var rows: [JSONObject]
    /// `false` when the row cap stopped the read: continue from the last row.
    public var isComplete: Bool
}

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
        /// The largest response body accepted, in bytes (default 64 MiB, ``HTTPRequest/defaultMaximumBodyBytes``).
        /// The transport stops receiving past it and the request throws ``RESTError/Code/responseTooLarge``, so a
        /// broken proxy or server cannot make the client buffer without bound.
        public var maximumResponseBytes: Int
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
            maximumResponseBytes: Int = HTTPRequest.defaultMaximumBodyBytes,
            transport: any HTTPTransport = URLSessionHTTPTransport(),
            logger: Logger = Logger(label: "SupabaseREST", factory: { _ in SwiftLogNoOpLogHandler() }),
            now: @escaping @Sendable () -> Date = { Date() }
        ) {
            self.baseURL = baseURL
            self.apiKey = apiKey
            self.accessToken = accessToken
            self.timeout = timeout
            self.pageSize = pageSize
            self.maximumResponseBytes = maximumResponseBytes
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
    ///   empty, the page size is outside 1…1,000, or the response cap is below 1 byte.
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
        guard configuration.maximumResponseBytes >= 1 else {
            throw RESTError(code: .invalidRequest, message: "the response body cap must be at least 1 byte")
        }
        self.configuration = configuration
        self.base = base
    }

    /// Builds the HTTP request for `query` with the given bearer token (pure; exposed for tests).
    public func request(for query: PostgRESTQuery, bearer: String) throws(RESTError) -> HTTPRequest {
        try query.validate()
        var headers = [
            "apikey": self.configuration.apiKey,
            "Authorization": "Bearer " + bearer,
            "Accept": "application/json",
        ]
        if let schema = query.schema { headers["Accept-Profile"] = schema }
        return HTTPRequest(
            url: self.base + "/" + percentEncode(query.table) + "?" + query.queryString,
            headers: headers,
            timeout: self.configuration.timeout,
            maximumBodyBytes: self.configuration.maximumResponseBytes
        )
    }

    /// Runs one query and returns its rows as JSON objects.
    ///
    /// - Throws: ``RESTError``: `invalidRequest` before any I/O; `jwtExpired` when a refreshed token is still
    ///   rejected; `rateLimited` (with ``RESTError/retryAfter``), `unavailable`, `transport`, `timeout`,
    ///   `responseTooLarge` (body over ``Configuration/maximumResponseBytes``), `undecodableBody`, and the other
    ///   HTTP codes (an unexposed ``PostgRESTQuery/schema`` is `httpError` 406 with ``RESTError/serverCode``
    ///   `PGRST106`).
    public func fetch(_ query: PostgRESTQuery) async throws(RESTError) -> [JSONObject] {
        try query.validate()
        let response = try await self.send(query)
        return try Self.decodeRows(response)
    }

    /// Reads every row of `query` in `(column, key)` order with a keyset cursor, never `offset`: each page asks for
    /// the rows after the last one read (`column=eq.<last>&key=gt.<last key>`, then `column=gt.<last>`), so rows
    /// inserted or updated meanwhile cannot shift a page, and a server that ignores the cursor cannot make the read
    /// loop: a page that brings no row not already read is an ``RESTError/Code/invalidResponse``.
    ///
    /// - Parameters:
    ///   - query: the table and filters (its `order`, `limit` and `offset` are replaced).
    ///   - column: the ordering column (e.g. `updated_at`); `key` breaks ties and must be unique (e.g. `id`).
    ///   - maximumRows: the most rows returned (memory bound); the read stops there with `isComplete == false`,
    ///     and a later read continues from the last row.
    /// - Throws: as ``fetch(_:)``, and ``RESTError/Code/invalidResponse`` for a page that does not advance or
    ///   rows without the ordering columns.
    public func fetchAll(
        _ query: PostgRESTQuery, orderedBy column: String, key: String, maximumRows: Int
    ) async throws(RESTError) -> PostgRESTRows {
        enum Cursor {
            case start
            /// The rows tied at `value` with a key after `key`.
            case ties(value: String, key: String)
            /// The rows after `value`.
            case after(value: String)
        }
        var cursor = Cursor.start
        var rows: [JSONObject] = []
        var seen: Set<String> = []
        while true {
            var page = query
            page.offset = nil
            page.limit = min(self.configuration.pageSize, maximumRows - rows.count)
            switch cursor {
            case .start:
                page.order = [PostgRESTOrder(column), PostgRESTOrder(key)]
            case .ties(let value, let last):
                page.filters += [PostgRESTFilter(column, .eq(value)), PostgRESTFilter(key, .gt(last))]
                page.order = [PostgRESTOrder(key)]
            case .after(let value):
                page.filters += [PostgRESTFilter(column, .gt(value))]
                page.order = [PostgRESTOrder(column), PostgRESTOrder(key)]
            }
            let batch = try await self.fetch(page)
            var fresh = 0
            var last: (value: String, key: String)?
            for row in batch {
                guard let keyText = row[key].flatMap(Self.cursorText), let valueText = row[column].flatMap(Self.cursorText)
                else {
                    throw RESTError(code: .invalidResponse, message: "a row lacks the ordering columns")
                }
                last = (valueText, keyText)
                guard seen.insert(keyText).inserted, rows.count < maximumRows else { continue }
                fresh += 1
                rows.append(row)
            }
            if rows.count >= maximumRows { return PostgRESTRows(rows: rows, isComplete: false) }
            if !batch.isEmpty, fresh == 0 {
                throw RESTError(code: .invalidResponse, message: "a page repeated rows already read (paging ignored)")
            }
            let full = batch.count >= (page.limit ?? 0)
            switch (cursor, last, full) {
            case (.start, let last?, true), (.after, let last?, true):
                cursor = .ties(value: last.value, key: last.key)  // more rows may share the last value
            case (.ties(let value, _), let last?, true):
                cursor = .ties(value: value, key: last.key)
            case (.ties(let value, _), _, false):
                cursor = .after(value: value)  // the ties are read: go on past them
            default:
                return PostgRESTRows(rows: rows, isComplete: true)  // a short page at or after the start
            }
        }
    }

    /// A column value as PostgREST accepts it back in a filter (strings as they are, numbers as written).
    private static func cursorText(_ value: JSONValue) -> String? {
        switch value {
        case .string(let text): return text
        case .number(let number): return number.text
        default: return nil
        }
    }

    /// Sends a GET for an arbitrary path under the base (for endpoints other than tables), with the usual auth
    /// headers plus `extraHeaders`; returns the raw response after the JWT-refresh retry. Non-2xx is thrown.
    public func get(path: String, extraHeaders: [String: String] = [:]) async throws(RESTError) -> HTTPResponse {
        let bearer = try await self.token(forceRefresh: false)
        var request = HTTPRequest(
            url: self.base + path,
            headers: ["apikey": self.configuration.apiKey, "Authorization": "Bearer " + bearer],
            timeout: self.configuration.timeout,
            maximumBodyBytes: self.configuration.maximumResponseBytes
        )
        request.headers.merge(extraHeaders, uniquingKeysWith: { _, new in new })
        return try await self.execute(request, table: path) { bearer in
            var retried = request
            retried.headers["Authorization"] = "Bearer " + bearer
            return retried
        }
    }

    /// Calls the PostgREST function `name` (`POST {base}/rpc/{name}` with `arguments` as the JSON body) and returns
    /// its JSON answer, with the usual auth headers and the JWT-refresh retry.
    ///
    /// - Throws: as ``fetch(_:)``; an unknown function or wrong arguments are `httpError` 404 with
    ///   ``RESTError/serverCode`` `PGRST202`, an error the function raised is the HTTP status PostgREST maps it to.
    public func rpc(_ name: String, arguments: JSONObject) async throws(RESTError) -> JSONValue {
        guard !name.isEmpty, name.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }) else {
            throw RESTError(code: .invalidRequest, message: "a function name is letters, digits and underscores")
        }
        let bearer = try await self.token(forceRefresh: false)
        let request = HTTPRequest(
            url: self.base + "/rpc/" + name,
            headers: [
                "apikey": self.configuration.apiKey, "Authorization": "Bearer " + bearer,
                "Accept": "application/json", "Content-Type": "application/json",
            ],
            timeout: self.configuration.timeout,
            maximumBodyBytes: self.configuration.maximumResponseBytes,
            method: "POST",
            body: Array(JSONValue.object(arguments).serialized().utf8))
        let response = try await self.execute(request, table: "rpc/" + name) { bearer in
            var retried = request
            retried.headers["Authorization"] = "Bearer " + bearer
            return retried
        }
        do {
            return try JSONValue.parse(response.body)
        } catch {
            throw RESTError(code: .undecodableBody, message: "the answer of \(name) is not JSON")
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
            // The transport should have stopped there already; this covers one that buffers whole bodies.
            guard response.body.count <= self.configuration.maximumResponseBytes else {
                throw RESTError(
                    code: .responseTooLarge,
                    message: "the response body exceeds the cap of \(self.configuration.maximumResponseBytes) bytes",
                    httpStatus: response.status)
            }
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

    /// Decodes a 2xx body as a JSON array of objects (or one object), parsed once; the rows are its objects.
    ///
    /// - Throws: ``RESTError/Code/undecodableBody`` when it is not.
    public static func decodeRows(_ response: HTTPResponse) throws(RESTError) -> [JSONObject] {
        let json: JSONValue
        do {
            json = try JSONValue.parse(response.body)
        } catch {
            throw RESTError(
                code: .undecodableBody, message: "the response body is not JSON (\(error.message))",
                httpStatus: response.status)
        }
        switch json {
        case .array(let values):
            var rows: [JSONObject] = []
            rows.reserveCapacity(values.count)
            for value in values {
                guard case .object(let row) = value else {
                    throw RESTError(
                        code: .undecodableBody, message: "a row is not a JSON object", httpStatus: response.status)
                }
                rows.append(row)
            }
            return rows
        case .object(let row):
            return [row]  // `Accept: application/vnd.pgrst.object+json` or a single-object endpoint
        default:
            throw RESTError(
                code: .undecodableBody, message: "the response body is not a JSON array", httpStatus: response.status)
        }
    }
}

// The API key must never reach a log through `"\(configuration)"`, `dump` or a debugger summary.
extension PostgRESTClient.Configuration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "PostgRESTClient.Configuration(baseURL: \(self.baseURL), apiKey: <redacted>, pageSize: \(self.pageSize))"
    }

    public var debugDescription: String { self.description }

    public var customMirror: Mirror {
        Mirror(self, children: ["baseURL": self.baseURL, "apiKey": "<redacted>", "pageSize": self.pageSize])
    }
}
