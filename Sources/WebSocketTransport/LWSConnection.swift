import CLibWebSockets
import Foundation
import Logging
import NIOConcurrencyHelpers

/// State shared between the lws service thread and other threads, always accessed under `LWSConnection.shared`.
struct LWSSharedState: Sendable {
    struct PendingSend: Sendable {
        var message: WebSocketMessage
        var continuation: CheckedContinuation<Result<Void, WebSocketTransportError>, Never>
    }

    /// Sends waiting for the service thread, in call order.
    var outbox: [PendingSend] = []
    /// Set by `close(code:reason:)`; the service thread sends the close frame after the outbox is drained.
    var closeRequest: (code: UInt16, reason: String)?
    var closeWaiters: [CheckedContinuation<Void, Never>] = []
    /// Set when the close handshake took too long or the closing task was cancelled: the service thread kills the
    /// connection at once (`LWS_TO_KILL_SYNC`) instead of waiting for the peer's close frame.
    var killRequested = false
    /// The connection is over (or closing): new sends fail with `.notConnected`.
    var sendsRefused = false
    /// The service thread has ended and every event was delivered.
    var finished = false
    /// The lws context's address while it exists; `lws_cancel_service` may be called on it while this is non-zero
    /// (checked under the lock; the service thread clears it under the lock before destroying the context).
    var contextAddress: UInt = 0
    /// A connect timeout or cancellation the service thread must act on.
    var abortError: WebSocketTransportError?
    var connectResult: Result<Void, WebSocketTransportError>?
    var connectWaiter: CheckedContinuation<Result<Void, WebSocketTransportError>, Never>?
    /// Inbound back-pressure bookkeeping (messages yielded but not yet consumed).
    var bufferedMessages = 0
    var bufferedBytes = 0
    var receivePaused = false
    /// How many times reading was paused for a slow consumer (observable in tests).
    var receivePauseCount = 0
    var resumeReceiving = false
    var consumerGone = false
}

/// Limits for inbound buffering before reading from the socket pauses.
struct LWSInboundLimits: Sendable {
    var maxMessages: Int
    var maxBytes: Int
}

/// One libwebsockets client connection with its own lws context and service thread.
///
/// Every lws call happens on the service thread, except `lws_cancel_service`, which other threads call under the
/// `shared` lock while `contextAddress` is set (the context is destroyed only after it is cleared under the lock).
final class LWSConnection: WebSocketConnection, @unchecked Sendable {
    // @unchecked Sendable: `shared` is a `Locked` (pthread mutex); `request`, `endpoint`, `logger`, `limits`,
    // `events` and `eventsContinuation` are immutable and Sendable; every stored property under "lws-confined" is
    // only touched by the service thread, or before it starts (pthread_create is the happens-before edge).
    let request: WebSocketRequest
    let endpoint: LWSEndpoint
    let logger: Logger
    let limits: LWSInboundLimits
    let shared = NIOLockedValueBox(LWSSharedState())
    let events: WebSocketEvents
    let eventsContinuation: AsyncStream<WebSocketEvent>.Continuation

    // MARK: lws-confined state
    var context: OpaquePointer?
    var wsi: OpaquePointer?
    let wsiSlot: UnsafeMutablePointer<OpaquePointer?>
    let protocols: UnsafeMutablePointer<lws_protocols>
    var cStrings: [UnsafeMutablePointer<CChar>] = []
    var serviceDone = false
    var established = false
    var assembler: MessageAssembler
    var writing: (bytes: [UInt8], binary: Bool, offset: Int, pending: LWSSharedState.PendingSend)?
    var scratch: UnsafeMutableRawPointer?
    var scratchCapacity = 0
    var peerClose: (code: UInt16, reason: String)?
    var localClose: (code: UInt16, reason: String)?
    var closeError: WebSocketTransportError?
    var connectError: WebSocketTransportError?
    var closeFrameQueued = false
    var rxPaused = false

    static let fragmentSize = 128 * 1024

    init(request: WebSocketRequest, endpoint: LWSEndpoint, limits: LWSInboundLimits, logger: Logger) {
        self.request = request
        self.endpoint = endpoint
        self.limits = limits
        var logger = logger
        logger[metadataKey: "ws.endpoint"] = "\(endpoint.displayName)"
        self.logger = logger
        self.assembler = MessageAssembler(maxMessageSize: request.maxMessageSize)
        self.wsiSlot = .allocate(capacity: 1)
        self.wsiSlot.initialize(to: nil)
        self.protocols = .allocate(capacity: 2)
        self.protocols.initialize(repeating: lws_protocols(), count: 2)
        let (stream, continuation) = AsyncStream<WebSocketEvent>.makeStream(bufferingPolicy: .unbounded)
        self.eventsContinuation = continuation
        // The consumption hook cannot capture `self` before init completes; route it through a box.
        let box = LWSWeakBox()
        self.events = WebSocketEvents(stream, onConsume: { event in box.connection?.consumed(event) })
        box.connection = self
        continuation.onTermination = { _ in box.connection?.consumerTerminated() }
    }

    deinit {
        self.wsiSlot.deallocate()
        self.protocols.deinitialize(count: 2)
        self.protocols.deallocate()
        self.scratch?.deallocate()
        for pointer in self.cStrings { free(pointer) }
    }

    // MARK: Starting

    /// Starts the service thread, which creates the context and connects.
    func start() throws(WebSocketTransportError) {
        let retained = Unmanaged.passRetained(self).toOpaque()
        var thread = pthread_t()
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        pthread_attr_setdetachstate(&attributes, Int32(PTHREAD_CREATE_DETACHED))
        defer { pthread_attr_destroy(&attributes) }
        let rc = pthread_create(
            &thread,
            &attributes,
            { raw in
                guard let raw else { return nil }
                let connection = Unmanaged<LWSConnection>.fromOpaque(raw).takeRetainedValue()
                connection.serviceThreadMain()
                return nil
            },
            retained
        )
        if rc != 0 {
            Unmanaged<LWSConnection>.fromOpaque(retained).release()
            throw WebSocketTransportError(code: .internalError, message: "cannot start the WebSocket service thread")
        }
    }

    /// Waits until the connection is open or has failed.
    func waitConnected() async -> Result<Void, WebSocketTransportError> {
        await withCheckedContinuation { continuation in
            let ready: Result<Void, WebSocketTransportError>? = self.shared.withLockedValue { state in
                if let result = state.connectResult { return result }
                state.connectWaiter = continuation
                return nil
            }
            if let ready { continuation.resume(returning: ready) }
        }
    }

    /// Abandons a connect in progress (timeout or cancellation). No effect once connected.
    func abortConnect(_ error: WebSocketTransportError) {
        self.shared.withLockedValue { state in
            guard state.connectResult == nil, state.abortError == nil else { return }
            state.abortError = error
            self.wakeLocked(&state)
        }
    }

    // MARK: WebSocketConnection

    func send(_ message: WebSocketMessage) async throws(WebSocketTransportError) {
        let result: Result<Void, WebSocketTransportError> = await withCheckedContinuation { continuation in
            let refused = self.shared.withLockedValue { state -> Bool in
                if state.sendsRefused || state.closeRequest != nil { return true }
                state.outbox.append(.init(message: message, continuation: continuation))
                self.wakeLocked(&state)
                return false
            }
            if refused {
                continuation.resume(returning: .failure(Self.notConnected))
            }
        }
        try result.get()
    }

    /// How long a close handshake may take before the connection is killed. A stalled peer never answers the
    /// close frame, and libwebsockets would wait for it for seconds, holding up whoever awaits this close (a
    /// cancelled `run()` among them).
    static let closeHandshakeTimeout: Duration = .seconds(1)

    /// Closes with a close frame; after ``closeHandshakeTimeout``, or at once when the calling task is cancelled,
    /// the connection is killed instead of waiting for the peer.
    func close(code: UInt16, reason: String) async {
        await withTaskGroup(of: Bool.self) { group in
            group.addTask {
                await self.closeHandshake(code: code, reason: reason)
                return true
            }
            group.addTask {
                try? await Task.sleep(for: Self.closeHandshakeTimeout)  // returns at once when cancelled
                return false
            }
            if await group.next() == false {
                self.logger.debug("websocket close handshake abandoned: killing the connection")
                self.kill()
            }
            group.cancelAll()
            await group.waitForAll()
        }
    }

    /// Asks the service thread to kill the connection now (no close handshake).
    private func kill() {
        self.shared.withLockedValue { state in
            guard !state.finished else { return }
            state.killRequested = true
            self.wakeLocked(&state)
        }
    }

    private func closeHandshake(code: UInt16, reason: String) async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let done = self.shared.withLockedValue { state -> Bool in
                if state.finished { return true }
                if state.closeRequest == nil { state.closeRequest = (code, reason) }
                state.closeWaiters.append(continuation)
                self.wakeLocked(&state)
                return false
            }
            if done { continuation.resume() }
        }
    }

    static let notConnected = WebSocketTransportError(code: .notConnected, message: "the WebSocket is not connected")

    /// Wakes the service thread. Must be called with the lock held (that is what keeps the context alive).
    func wakeLocked(_ state: inout LWSSharedState) {
        if let context = OpaquePointer(bitPattern: state.contextAddress) {
            lws_cancel_service(context)
        }
    }

    // MARK: Consumption (any thread)

    private func consumed(_ event: WebSocketEvent) {
        guard case .message(let message) = event else { return }
        self.shared.withLockedValue { state in
            state.bufferedMessages -= 1
            state.bufferedBytes -= message.byteCount
            if state.receivePaused, state.bufferedMessages <= self.limits.maxMessages / 2,
                state.bufferedBytes <= self.limits.maxBytes / 2
            {
                state.receivePaused = false
                state.resumeReceiving = true
                self.wakeLocked(&state)
            }
        }
    }

    private func consumerTerminated() {
        self.shared.withLockedValue { state in
            state.consumerGone = true
            if state.receivePaused {
                state.receivePaused = false
                state.resumeReceiving = true
                self.wakeLocked(&state)
            }
        }
    }
}

/// Lets closures created during `init` reach the connection without a retain cycle.
private final class LWSWeakBox: @unchecked Sendable {
    // @unchecked Sendable: written once during `LWSConnection.init`, before the box is shared; read-only after.
    weak var connection: LWSConnection?
}
