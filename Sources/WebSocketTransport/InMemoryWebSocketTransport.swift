import NIOConcurrencyHelpers
import Foundation

/// A deterministic in-process `WebSocketTransport` for testing higher layers.
///
/// Every accepted `connect` produces an `InMemoryWebSocketServerConnection`, delivered in order through
/// `serverConnections`: the test reads what the client sent, pushes messages, closes with a code, drops the
/// connection abruptly, or refuses upcoming connects. Nothing sleeps and nothing runs in the background:
/// each operation takes effect before it returns.
public final class InMemoryWebSocketTransport: WebSocketTransport {
    private struct State {
        var plannedFailures: [WebSocketTransportError] = []
        var requests: [WebSocketRequest] = []
    }

    private let state = NIOLockedValueBox(State())
    private let serverContinuation: AsyncStream<InMemoryWebSocketServerConnection>.Continuation

    /// The server side of each accepted connection, in connect order. Single consumer.
    public let serverConnections: InMemoryWebSocketServerConnections

    /// Creates a transport that accepts every connect until told otherwise.
    public init() {
        let (stream, continuation) = AsyncStream<InMemoryWebSocketServerConnection>.makeStream(
            bufferingPolicy: .unbounded
        )
        self.serverConnections = InMemoryWebSocketServerConnections(stream: stream)
        self.serverContinuation = continuation
    }

    /// Every request passed to `connect`, accepted or not, in order.
    public var requests: [WebSocketRequest] {
        self.state.withLockedValue { $0.requests }
    }

    /// Makes the next `connect` fail with `error` (queued: call several times to fail several connects).
    public func failNextConnect(with error: WebSocketTransportError) {
        self.state.withLockedValue { $0.plannedFailures.append(error) }
    }

    /// Makes the next `connect` fail as if the server answered the upgrade with `httpStatus`.
    public func rejectNextConnect(httpStatus: Int) {
        self.failNextConnect(
            with: WebSocketTransportError(
                code: .handshakeRejected,
                message: "the server rejected the WebSocket upgrade with HTTP \(httpStatus)",
                httpStatus: httpStatus
            )
        )
    }

    /// Records the request, then fails with the next planned error or accepts and publishes the server side.
    public func connect(_ request: WebSocketRequest) async throws(WebSocketTransportError) -> any WebSocketConnection {
        let failure = self.state.withLockedValue { state -> WebSocketTransportError? in
            state.requests.append(request)
            return state.plannedFailures.isEmpty ? nil : state.plannedFailures.removeFirst()
        }
        if let failure { throw failure }
        switch request.url.scheme?.lowercased() {
        case "ws", "wss": break
        default: throw WebSocketTransportError(code: .invalidURL, message: "unsupported URL scheme")
        }
        let pair = InMemoryPair(maxMessageSize: request.maxMessageSize)
        self.serverContinuation.yield(InMemoryWebSocketServerConnection(pair: pair, request: request))
        return InMemoryWebSocketClientConnection(pair: pair)
    }
}

/// The accepted connections of an `InMemoryWebSocketTransport`, in connect order. Never ends.
public struct InMemoryWebSocketServerConnections: AsyncSequence, Sendable {
    public typealias Element = InMemoryWebSocketServerConnection
    public typealias Failure = Never

    let stream: AsyncStream<InMemoryWebSocketServerConnection>

    /// Returns the iterator. Iterate from one task only.
    public func makeAsyncIterator() -> AsyncIterator {
        AsyncIterator(base: self.stream.makeAsyncIterator())
    }

    /// Iterates accepted connections.
    public struct AsyncIterator: AsyncIteratorProtocol {
        var base: AsyncStream<InMemoryWebSocketServerConnection>.Iterator

        /// The next accepted connection; waits for the client's next successful `connect`.
        public mutating func next() async -> InMemoryWebSocketServerConnection? {
            await self.base.next()
        }
    }
}

/// The test's handle on one in-memory connection.
public struct InMemoryWebSocketServerConnection: Sendable {
    let pair: InMemoryPair

    /// The request the client connected with.
    public let request: WebSocketRequest

    init(pair: InMemoryPair, request: WebSocketRequest) {
        self.pair = pair
        self.request = request
    }

    /// What the client sent, in order, ending with one `.closed` when the client closes (its code and reason,
    /// `initiatedByPeer` true from the server's point of view) or when the server side ends the connection.
    public var inbound: WebSocketEvents { self.pair.serverEvents }

    /// Delivers a message to the client. Returns `false` if the connection is already closed.
    /// A message larger than the client's `maxMessageSize` closes the connection with 1009, as the real transport does.
    @discardableResult
    public func send(_ message: WebSocketMessage) -> Bool {
        self.pair.serverSend(message)
    }

    /// Closes the connection with a close frame: the client sees `.closed(code:reason:initiatedByPeer: true)`.
    public func close(code: UInt16, reason: String = "") {
        self.pair.end(
            client: WebSocketClose(code: code, reason: reason, initiatedByPeer: true),
            server: WebSocketClose(code: code, reason: reason, initiatedByPeer: false)
        )
    }

    /// Drops the connection without a close frame: the client sees `.closed(code: nil, … error: .connectionLost)`.
    public func drop() {
        let error = WebSocketTransportError(code: .connectionLost, message: "the WebSocket connection was lost")
        self.pair.end(
            client: WebSocketClose(code: nil, reason: "", initiatedByPeer: true, error: error),
            server: WebSocketClose(code: nil, reason: "", initiatedByPeer: false, error: error)
        )
    }

    /// Whether the connection has ended.
    public var isClosed: Bool { self.pair.isClosed }
}

/// The client side of an in-memory connection.
final class InMemoryWebSocketClientConnection: WebSocketConnection {
    let pair: InMemoryPair

    init(pair: InMemoryPair) {
        self.pair = pair
    }

    var events: WebSocketEvents { self.pair.clientEvents }

    func send(_ message: WebSocketMessage) async throws(WebSocketTransportError) {
        try self.pair.clientSend(message)
    }

    func close(code: UInt16, reason: String) async {
        self.pair.end(
            client: WebSocketClose(code: code, reason: reason, initiatedByPeer: false),
            server: WebSocketClose(code: code, reason: reason, initiatedByPeer: true)
        )
    }
}

/// Both directions of one in-memory connection.
final class InMemoryPair: Sendable {
    let maxMessageSize: Int
    let clientEvents: WebSocketEvents
    let serverEvents: WebSocketEvents
    private let clientContinuation: AsyncStream<WebSocketEvent>.Continuation
    private let serverContinuation: AsyncStream<WebSocketEvent>.Continuation
    private let closed = NIOLockedValueBox(false)

    init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
        let (client, clientContinuation) = AsyncStream<WebSocketEvent>.makeStream(bufferingPolicy: .unbounded)
        let (server, serverContinuation) = AsyncStream<WebSocketEvent>.makeStream(bufferingPolicy: .unbounded)
        self.clientEvents = WebSocketEvents(client)
        self.serverEvents = WebSocketEvents(server)
        self.clientContinuation = clientContinuation
        self.serverContinuation = serverContinuation
    }

    var isClosed: Bool { self.closed.withLockedValue { $0 } }

    func clientSend(_ message: WebSocketMessage) throws(WebSocketTransportError) {
        let ok = self.closed.withLockedValue { closed -> Bool in
            guard !closed else { return false }
            self.serverContinuation.yield(.message(message))
            return true
        }
        if !ok { throw WebSocketTransportError(code: .notConnected, message: "the WebSocket is not connected") }
    }

    func serverSend(_ message: WebSocketMessage) -> Bool {
        if message.byteCount > self.maxMessageSize {
            let error = WebSocketTransportError(
                code: .messageTooLarge,
                message: "an inbound message exceeded the limit of \(self.maxMessageSize) bytes"
            )
            self.end(
                client: WebSocketClose(code: 1009, reason: "message too large", initiatedByPeer: false, error: error),
                server: WebSocketClose(code: 1009, reason: "message too large", initiatedByPeer: true)
            )
            return false
        }
        return self.closed.withLockedValue { closed -> Bool in
            guard !closed else { return false }
            self.clientContinuation.yield(.message(message))
            return true
        }
    }

    /// Ends both directions once; later calls do nothing.
    func end(client: WebSocketClose, server: WebSocketClose) {
        let first = self.closed.withLockedValue { closed -> Bool in
            guard !closed else { return false }
            closed = true
            self.clientContinuation.yield(.closed(client))
            self.clientContinuation.finish()
            self.serverContinuation.yield(.closed(server))
            self.serverContinuation.finish()
            return true
        }
        _ = first
    }
}
