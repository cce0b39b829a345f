import Foundation
import NIOConcurrencyHelpers

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// An HTTP request as `SupabaseREST` builds it: a GET, or a POST with a JSON body (PostgREST functions).
public struct HTTPRequest: Sendable, Hashable {
    /// The method, `GET` (default) or `POST`.
    public var method: String
    /// The full URL, already percent-encoded.
    public var url: String
    /// Request headers (names as sent).
    public var headers: [String: String]
    /// The request timeout.
    public var timeout: Duration
    /// The largest response body accepted, in bytes (default ``defaultMaximumBodyBytes``). A transport stops
    /// receiving once the body is larger and throws ``RESTError/Code/responseTooLarge``.
    public var maximumBodyBytes: Int
    /// The request body (`nil`: none).
    public var body: [UInt8]?

    /// The default body cap: 64 MiB, far above 1,000 job rows with their results, far below what hurts a service.
    public static let defaultMaximumBodyBytes = 64 << 20

    /// Creates a request.
    public init(
        url: String, headers: [String: String], timeout: Duration,
        maximumBodyBytes: Int = HTTPRequest.defaultMaximumBodyBytes, method: String = "GET", body: [UInt8]? = nil
    ) {
        self.method = method
        self.body = body
        self.url = url
        self.headers = headers
        self.timeout = timeout
        self.maximumBodyBytes = maximumBodyBytes
    }
}

/// An HTTP response: status, headers (names lower-cased) and body bytes.
public struct HTTPResponse: Sendable, Hashable {
    /// The HTTP status code.
    public var status: Int
    /// Response headers with lower-cased names.
    public var headers: [String: String]
    /// The body.
    public var body: [UInt8]

    /// Creates a response.
    public init(status: Int, headers: [String: String] = [:], body: [UInt8] = []) {
        self.status = status
        self.headers = Dictionary(
            headers.map { ($0.key.lowercased(), $0.value) }, uniquingKeysWith: { first, _ in first })
        self.body = body
    }
}

/// Executes HTTP requests. The default is ``URLSessionHTTPTransport``; tests inject a fake.
public protocol HTTPTransport: Sendable {
    /// Performs the request.
    ///
    /// - Throws: ``RESTError`` with code ``RESTError/Code/transport`` or ``RESTError/Code/timeout`` when no
    ///   response arrived, ``RESTError/Code/responseTooLarge`` when the body is larger than
    ///   ``HTTPRequest/maximumBodyBytes`` (a transport should stop receiving there rather than buffer it).
    ///   HTTP error statuses are returned, not thrown.
    func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse
}

