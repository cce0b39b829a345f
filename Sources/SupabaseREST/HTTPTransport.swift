import Foundation

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A plain HTTP GET request as `SupabaseREST` builds it.
public struct HTTPRequest: Sendable, Hashable {
    /// The full URL, already percent-encoded.
    public var url: String
    /// Request headers (names as sent).
    public var headers: [String: String]
    /// The request timeout.
    public var timeout: Duration

    /// Creates a request.
    public init(url: String, headers: [String: String], timeout: Duration) {
        self.url = url
        self.headers = headers
        self.timeout = timeout
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
    ///   response arrived. HTTP error statuses are returned, not thrown.
    func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse
}

/// ``HTTPTransport`` over Foundation's `URLSession` (libcurl on Linux).
public struct URLSessionHTTPTransport: HTTPTransport {
    private let session: URLSession

    /// Creates a transport over `session` (default: a fresh ephemeral session).
    public init(session: URLSession = URLSession(configuration: .ephemeral)) {
        self.session = session
    }

    public func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
        guard let url = URL(string: request.url) else {
            throw RESTError(code: .invalidRequest, message: "the request URL is not valid")
        }
        var urlRequest = URLRequest(url: url)
        urlRequest.httpMethod = "GET"
        // URLRequest takes seconds as a Double: this is the one conversion from Duration, at the boundary.
        let (seconds, attoseconds) = request.timeout.components
        urlRequest.timeoutInterval = Double(seconds) + Double(attoseconds) / 1e18
        for (name, value) in request.headers {
            urlRequest.setValue(value, forHTTPHeaderField: name)
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await self.session.data(for: urlRequest)
        } catch let error as URLError {
            if error.code == .timedOut {
                throw RESTError(code: .timeout, message: "the request timed out after \(request.timeout)")
            }
            // URLError descriptions can contain the URL; report only the code.
            throw RESTError(code: .transport, message: "the request failed (URLError \(error.code.rawValue))")
        } catch {
            throw RESTError(code: .transport, message: "the request failed")
        }
        guard let http = response as? HTTPURLResponse else {
            throw RESTError(code: .transport, message: "the response was not HTTP")
        }
        var headers: [String: String] = [:]
        for (key, value) in http.allHeaderFields {
            if let key = key as? String, let value = value as? String { headers[key.lowercased()] = value }
        }
        return HTTPResponse(status: http.statusCode, headers: headers, body: [UInt8](data))
    }
}
