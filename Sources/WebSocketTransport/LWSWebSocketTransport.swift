import CLibWebSockets
public import Logging

/// A `WebSocketTransport` over libwebsockets 4.1 (ws and wss), for Linux where `URLSessionWebSocketTask` is
/// unavailable.
///
/// ## Threading
/// Each connection owns one lws context and one service thread (`LWS_MAX_SMP 1`). Every lws call happens on that
/// thread; other threads only append to the connection's locked outbox (sends, close, resume-reading requests) and
/// call `lws_cancel_service` to wake it. The thread ends, after destroying the context, once the connection is
/// closed or failed; `close(code:reason:)` and a failed `connect` return only after that.
///
/// ## Inbound buffering
/// Complete messages are handed to the connection's `events` sequence. When the consumer falls behind by
/// `maxBufferedInboundMessages` messages or `maxBufferedInboundBytes` bytes, the transport stops reading from the
/// socket (`lws_rx_flow_control`) until the backlog halves, so TCP back-pressure reaches the server instead of
/// memory growing without bound. The bound is soft: data lws has already read is still delivered. While reading is
/// paused, the peer's close frame is only seen after the backlog drains. If the consumer stops iterating
/// (drops the sequence), reading resumes and messages are discarded.
///
/// ## Closing
/// `close(code:reason:)` sends queued messages first, then the close frame, and returns after the peer answered
/// (or lws's close timeout). A code that may not be sent in a close frame (1005, 1006, 1015, below 1000, 1016–2999,
/// 5000 and above) is sent as 1000. The reason is cut to 123 bytes. The final `.closed` event reports the code sent.
///
/// ## Errors
/// Connection failures map to `WebSocketTransportError` codes: `.connectionRefused`, `.dnsFailure`, `.tlsFailure`,
/// `.handshakeRejected` (with `httpStatus`), `.timeout`, `.cancelled`. Error and log text never contains the URL
/// path or query, only `host:port`.
public struct LWSWebSocketTransport: WebSocketTransport {
    /// Inbound messages buffered for a slow consumer before reading from the socket pauses.
    public var maxBufferedInboundMessages: Int
    /// Inbound bytes buffered for a slow consumer before reading from the socket pauses.
    public var maxBufferedInboundBytes: Int
    private let clock: any Clock<Duration>
    private let logger: Logger

    /// Creates a transport.
    /// - Parameters:
    ///   - clock: measures the connect timeout.
    ///   - logger: receives trace/debug events of this transport and of libwebsockets (process-wide, see below).
    ///   - maxBufferedInboundMessages: see "Inbound buffering".
    ///   - maxBufferedInboundBytes: see "Inbound buffering".
    ///
    /// libwebsockets has a single process-wide log sink; it is routed to the logger of the most recently created
    /// transport.
    public init(
        clock: any Clock<Duration> = ContinuousClock(),
        logger: Logger = Logger(label: "jobsync.websocket"),
        maxBufferedInboundMessages: Int = 256,
        maxBufferedInboundBytes: Int = 16 << 20
    ) {
        self.clock = clock
        self.logger = logger
        self.maxBufferedInboundMessages = max(2, maxBufferedInboundMessages)
        self.maxBufferedInboundBytes = max(2, maxBufferedInboundBytes)
        LWSLogRouter.install(logger)
    }

    /// Opens a connection; returns once the upgrade succeeded.
    ///
    /// Throws `.invalidURL` for a non-ws(s) URL, `.timeout` when `request.connectTimeout` elapses first,
    /// `.cancelled` when the calling task is cancelled, and the codes listed in the type's documentation.
    public func connect(_ request: WebSocketRequest) async throws(WebSocketTransportError) -> any WebSocketConnection {
        let endpoint = try LWSEndpoint(url: request.url)
        for header in request.headers {
            // Byte-wise: "\r\n" is a single Character.
            let forbidden: (UInt8) -> Bool = { $0 == UInt8(ascii: "\r") || $0 == UInt8(ascii: "\n") || $0 == 0 }
            let badName = header.name.utf8.contains {
                forbidden($0) || $0 == UInt8(ascii: ":") || $0 == UInt8(ascii: " ")
            }
            if header.name.isEmpty || badName || header.value.utf8.contains(where: forbidden) {
                throw WebSocketTransportError(
                    code: .invalidRequest,
                    message: "handshake header names must be non-empty tokens and values must not contain line breaks"
                )
            }
        }
        let limits = LWSInboundLimits(
            maxMessages: self.maxBufferedInboundMessages,
            maxBytes: self.maxBufferedInboundBytes
        )
        let connection = LWSConnection(request: request, endpoint: endpoint, limits: limits, logger: self.logger)
        try connection.start()
        let clock = self.clock
        let timeout = request.connectTimeout
        let display = endpoint.displayName
        let result = await withTaskGroup(of: Void.self) { group in
            group.addTask {
                do {
                    try await clock.sleep(for: timeout)
                    connection.abortConnect(
                        WebSocketTransportError(
                            code: .timeout,
                            message: "connecting to \(display) timed out after \(timeout)"
                        )
                    )
                } catch {
                    // Cancelled: the connect finished first.
                }
            }
            let result = await withTaskCancellationHandler {
                await connection.waitConnected()
            } onCancel: {
                connection.abortConnect(
                    WebSocketTransportError(code: .cancelled, message: "connecting to \(display) was cancelled")
                )
            }
            group.cancelAll()
            return result
        }
        try result.get()
        return connection
    }
}
