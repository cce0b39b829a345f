public import struct Foundation.URL

/// A message on a WebSocket: text (UTF-8) or binary.
public enum WebSocketMessage: Sendable, Hashable {
    /// A text message (valid UTF-8).
    case text(String)
    /// A binary message.
    case binary([UInt8])
}

/// How a connection ended. Every connection's event sequence ends with exactly one `.closed`.
public struct WebSocketClose: Sendable, Hashable {
    /// The close code from the close frame, or `nil` when the connection was lost without one (1006).
    public var code: UInt16?
    /// The close reason (UTF-8), empty if none.
    public var reason: String
    /// `true` when the peer started the close handshake or dropped the connection.
    public var initiatedByPeer: Bool
    /// Set when the connection ended because of an error (lost connection, oversized message, …).
    public var error: WebSocketTransportError?

    /// Creates a close description.
    public init(code: UInt16?, reason: String, initiatedByPeer: Bool, error: WebSocketTransportError? = nil) {
        self.code = code
        self.reason = reason
        self.initiatedByPeer = initiatedByPeer
        self.error = error
    }
}

/// What a connection reports, in order.
public enum WebSocketEvent: Sendable, Hashable {
    /// A whole message (fragments reassembled).
    case message(WebSocketMessage)
    /// The last event of a connection.
    case closed(WebSocketClose)
}

/// TLS options for `wss://` connections.
public struct WebSocketTLSOptions: Sendable, Hashable {
    /// A PEM file with extra trusted CA certificates. The system store is always used as well.
    public var caFilePath: String?
    /// Certificate verification. On by default; turning it off is for tests only.
    public var verifyCertificates: Bool

    /// Creates TLS options: system trust store plus `caFilePath`, verification on unless turned off.
    public init(caFilePath: String? = nil, verifyCertificates: Bool = true) {
        self.caFilePath = caFilePath
        self.verifyCertificates = verifyCertificates
    }
}

/// Everything needed to open a connection.
public struct WebSocketRequest: Sendable {
    /// A `ws://` or `wss://` URL, query included.
    public var url: URL
    /// Extra headers sent with the upgrade request.
    public var headers: [(name: String, value: String)]
    /// TLS options, used for `wss://` URLs.
    public var tls: WebSocketTLSOptions
    /// The largest inbound message accepted; a larger one closes the connection with 1009.
    public var maxMessageSize: Int
    /// How long the TCP connect, TLS and HTTP upgrade may take together.
    public var connectTimeout: Duration

    /// Creates a request. The default message limit is 8 MiB, the default connect timeout 10 s.
    public init(
        url: URL,
        headers: [(name: String, value: String)] = [],
        tls: WebSocketTLSOptions = .init(),
        maxMessageSize: Int = 8 << 20,
        connectTimeout: Duration = .seconds(10)
    ) {
        self.url = url
        self.headers = headers
        self.tls = tls
        self.maxMessageSize = maxMessageSize
        self.connectTimeout = connectTimeout
    }
}

/// An open WebSocket connection.
public protocol WebSocketConnection: Sendable {
    /// Inbound messages, then one `.closed`. Single consumer.
    var events: WebSocketEvents { get }
    /// Sends one message; returns once it has been handed to the socket. Sends are delivered in call order.
    func send(_ message: WebSocketMessage) async throws(WebSocketTransportError)
    /// Starts the close handshake (or drops the connection if the handshake cannot complete) and returns
    /// once the connection is closed.
    func close(code: UInt16, reason: String) async
}

/// Opens WebSocket connections.
public protocol WebSocketTransport: Sendable {
    /// Opens a connection and returns once the WebSocket upgrade succeeded; throws a typed error otherwise.
    func connect(_ request: WebSocketRequest) async throws(WebSocketTransportError) -> any WebSocketConnection
}

/// The inbound side of a connection: messages in arrival order, ending with one `.closed` event.
///
/// Single consumer. The transport that creates it may observe consumption (the libwebsockets transport uses this
/// to pause reading from the socket while the consumer is behind, see `LWSWebSocketTransport`).
public struct WebSocketEvents: AsyncSequence, Sendable {
    public typealias Element = WebSocketEvent
    public typealias Failure = Never

    let stream: AsyncStream<WebSocketEvent>
    let onConsume: (@Sendable (WebSocketEvent) -> Void)?

    /// Wraps a stream the transport feeds. The stream must end right after yielding `.closed`.
    public init(_ stream: AsyncStream<WebSocketEvent>) {
        self.init(stream, onConsume: nil)
    }

    init(_ stream: AsyncStream<WebSocketEvent>, onConsume: (@Sendable (WebSocketEvent) -> Void)?) {
        self.stream = stream
        self.onConsume = onConsume
    }

    /// Returns the iterator. Iterate from one task only.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.stream.makeAsyncIterator(), onConsume: self.onConsume)
    }

    /// Iterates the events of one connection.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<WebSocketEvent>.Iterator
        let onConsume: (@Sendable (WebSocketEvent) -> Void)?

        /// The next event, or `nil` after `.closed`.
        public mutating func next() async -> WebSocketEvent? {
            let event = await self.base.next()
            if let event, let onConsume = self.onConsume {
                onConsume(event)
            }
            return event
        }
    }
}

/// The module's one error type. `description` is safe to print: it never contains query strings or headers.
public struct WebSocketTransportError: Error, Sendable, Hashable, CustomStringConvertible {
    /// What kind of failure it was.
    public struct Code: Sendable, Hashable, CustomStringConvertible {
        private enum Base: String, Sendable, Hashable {
            case invalidURL, invalidRequest, connectionRefused, dnsFailure, tlsFailure, handshakeRejected, timeout
            case messageTooLarge, connectionLost, notConnected, cancelled, internalError
        }
        private let base: Base
        private init(_ base: Base) { self.base = base }

        /// The URL is not a usable `ws://` or `wss://` URL.
        public static let invalidURL = Code(.invalidURL)
        /// The request cannot be sent as given (for example a header name or value with a line break).
        public static let invalidRequest = Code(.invalidRequest)
        /// Nothing accepted the TCP connection.
        public static let connectionRefused = Code(.connectionRefused)
        /// The host name could not be resolved.
        public static let dnsFailure = Code(.dnsFailure)
        /// TLS handshake or certificate verification failed.
        public static let tlsFailure = Code(.tlsFailure)
        /// The server answered the upgrade with a non-101 HTTP status (see `httpStatus`).
        public static let handshakeRejected = Code(.handshakeRejected)
        /// Connecting took longer than `WebSocketRequest.connectTimeout`.
        public static let timeout = Code(.timeout)
        /// An inbound message exceeded `WebSocketRequest.maxMessageSize`; the connection was closed with 1009.
        public static let messageTooLarge = Code(.messageTooLarge)
        /// The connection ended without a close handshake, or failed in a way not covered by another code.
        public static let connectionLost = Code(.connectionLost)
        /// The operation was used on a connection that is closed or closing.
        public static let notConnected = Code(.notConnected)
        /// The task awaiting `connect` was cancelled.
        public static let cancelled = Code(.cancelled)
        /// A failure inside the transport (resource exhaustion, library misuse).
        public static let internalError = Code(.internalError)

        /// The code's name.
        public var description: String { self.base.rawValue }
    }

    /// What kind of failure this is.
    public var code: Code
    /// A human message, safe to print.
    public var message: String
    /// The HTTP status of a rejected handshake.
    public var httpStatus: Int?

    /// Creates an error. `message` must not contain secrets (tokens, API keys, URL queries).
    public init(code: Code, message: String, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
    }

    /// `WebSocketTransportError.<code> (HTTP <status>): <message>`.
    public var description: String {
        if let httpStatus = self.httpStatus {
            return "WebSocketTransportError.\(self.code) (HTTP \(httpStatus)): \(self.message)"
        }
        return "WebSocketTransportError.\(self.code): \(self.message)"
    }
}
