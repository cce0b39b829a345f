import CLibWebSockets
import Foundation
import Logging
import NIOConcurrencyHelpers

// Everything in this file runs on the connection's service thread.
extension LWSConnection {
    /// The name of every service thread (`top -H`, debuggers and the thread-leak test see it).
    static let serviceThreadName = "jobsync-ws"

    func serviceThreadMain() {
        Thread.current.name = Self.serviceThreadName  // also the kernel's name of the thread
        guard let context = self.createContext() else {
            self.connectError = WebSocketTransportError(
                code: .internalError,
                message: "cannot create the libwebsockets context for \(self.endpoint.displayName)"
            )
            self.finish()
            return
        }
        self.context = context
        self.shared.withLockedValue { $0.contextAddress = UInt(bitPattern: Int(bitPattern: UnsafeRawPointer(context))) }
        if self.connectError == nil {
            self.startConnect(context)
        }
        if self.wsiSlot.pointee == nil && !self.established {
            self.serviceDone = true
        }
        while !self.serviceDone {
            self.processRequests()
            if self.serviceDone { break }
            if lws_service(context, 0) < 0 { break }
            if !self.established && self.wsiSlot.pointee == nil {
                // lws clears `ci.pwsi` when a connecting wsi is freed, whatever the reason.
                self.serviceDone = true
            }
        }
        self.shared.withLockedValue { $0.contextAddress = 0 }
        lws_context_destroy(context)
        self.context = nil
        self.wsi = nil
        self.finish()
    }

    private func createContext() -> OpaquePointer? {
        self.protocols[0].name = UnsafePointer(self.cString("jobsync-client"))
        self.protocols[0].callback = lwsCallback
        self.protocols[0].rx_buffer_size = 0
        var info = lws_context_creation_info()
        info.port = CONTEXT_PORT_NO_LISTEN
        info.protocols = UnsafePointer(self.protocols)
        info.gid = -1
        info.uid = -1
        info.user = Unmanaged.passUnretained(self).toOpaque()
        let seconds = self.request.connectTimeout.components.seconds
        let timeout = UInt32(clamping: max(1, seconds + 2))
        info.connect_timeout_secs = timeout
        info.timeout_secs = max(5, timeout)
        if self.endpoint.secure {
            info.options |= UInt64(LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT)
        }
        return lws_create_context(&info)
    }

    private func startConnect(_ context: OpaquePointer) {
        var info = lws_client_connect_info()
        info.context = context
        info.address = UnsafePointer(self.cString(self.endpoint.host))
        info.port = Int32(self.endpoint.port)
        info.path = UnsafePointer(self.cString(self.endpoint.pathAndQuery))
        info.host = UnsafePointer(self.cString(self.endpoint.hostHeader))
        info.origin = UnsafePointer(self.cString(self.endpoint.hostHeader))
        info.ietf_version_or_minus_one = -1
        info.local_protocol_name = self.protocols[0].name
        info.pwsi = self.wsiSlot
        if self.endpoint.secure {
            var flags = Int32(LCCSCF_USE_SSL.rawValue)
            if !self.request.tls.verifyCertificates {
                flags |= Int32(LCCSCF_ALLOW_SELFSIGNED.rawValue | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK.rawValue)
                flags |= Int32(LCCSCF_ALLOW_EXPIRED.rawValue | LCCSCF_ALLOW_INSECURE.rawValue)
            }
            info.ssl_connection = flags
        }
        if lws_client_connect_via_info(&info) == nil, self.connectError == nil {
            // lws 4.1 resolves synchronously and returns NULL without a reason; find out whether DNS was the cause.
            self.connectError = LWSErrorClassifier.classify(
                lwsText: Self.resolveFailure(host: self.endpoint.host) ?? "connect failed",
                httpStatus: nil,
                secure: self.endpoint.secure,
                endpoint: self.endpoint.displayName
            )
        }
    }

    /// `nil` if `host` resolves, else a description of the resolver error.
    private static func resolveFailure(host: String) -> String? {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        var result: UnsafeMutablePointer<addrinfo>?
        let rc = getaddrinfo(host, nil, &hints, &result)
        if let result { freeaddrinfo(result) }
        guard rc != 0 else { return nil }
        guard let reason = gai_strerror(rc) else { return "getaddrinfo failed" }
        let bytes = UnsafeRawBufferPointer(start: reason, count: strlen(reason))
        return "getaddrinfo failed: " + String(decoding: bytes, as: UTF8.self)
    }

    private func cString(_ string: String) -> UnsafeMutablePointer<CChar> {
        let pointer = strdup(string)!
        self.cStrings.append(pointer)
        return pointer
    }

    /// Acts on what other threads asked for (sends, close, abort, resume reading).
    func processRequests() {
        let (abort, wantsWrite, resume, kill) = self.shared.withLockedValue { state in
            let resume = state.resumeReceiving
            state.resumeReceiving = false
            return (state.abortError, !state.outbox.isEmpty || state.closeRequest != nil, resume, state.killRequested)
        }
        if !self.established {
            if let abort {
                self.connectError = abort
                self.serviceDone = true
            }
            return
        }
        guard let wsi = self.wsi else { return }
        if kill {
            // LWS_TO_KILL_SYNC (-2): close the connection now, without a handshake. Safe here: this runs in the
            // callback of lws's cancel pipe, never inside a callback of `wsi` (LWS_TO_KILL_ASYNC, -1, did not end a
            // connection waiting for a stalled peer's close acknowledgement in libwebsockets 4.1).
            self.wsi = nil
            lws_set_timeout(wsi, PENDING_TIMEOUT_CLOSE_ACK, -2)
            return
        }
        if resume && self.rxPaused {
            self.rxPaused = false
            _ = lws_rx_flow_control(wsi, 1)
        }
        if wantsWrite {
            lws_callback_on_writable(wsi)
        }
    }

    /// The single lws callback, dispatched per connection.
    func handle(
        wsi: OpaquePointer?,
        reason: lws_callback_reasons,
        user: UnsafeMutableRawPointer?,
        input: UnsafeMutableRawPointer?,
        length: Int
    ) -> Int32 {
        switch reason {
        case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
            return self.appendHeaders(wsi: wsi, input: input, length: length)
        case LWS_CALLBACK_OPENSSL_LOAD_EXTRA_CLIENT_VERIFY_CERTS:
            return self.loadVerifyCertificates(sslContext: user)
        case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
            self.connectionError(wsi: wsi, input: input, length: length)
            return 0
        case LWS_CALLBACK_CLIENT_ESTABLISHED:
            self.wsi = wsi
            self.established = true
            let waiter = self.shared.withLockedValue { state in
                state.connectResult = .success(())
                defer { state.connectWaiter = nil }
                return state.connectWaiter
            }
            self.logger.debug("websocket connected")
            waiter?.resume(returning: .success(()))
            self.processRequests()
            return 0
        case LWS_CALLBACK_CLIENT_RECEIVE:
            return self.receive(wsi: wsi, input: input, length: length)
        case LWS_CALLBACK_CLIENT_WRITEABLE:
            return self.writable(wsi: wsi)
        case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
            self.peerInitiatedClose(input: input, length: length)
            return 0
        case LWS_CALLBACK_CLIENT_CLOSED:
            self.serviceDone = true
            return 0
        case LWS_CALLBACK_WSI_DESTROY:
            if wsi == self.wsi || wsi == self.wsiSlot.pointee {
                self.serviceDone = true
            }
            return 0
        case LWS_CALLBACK_EVENT_WAIT_CANCELLED:
            self.processRequests()
            return 0
        default:
            return 0
        }
    }

    private func appendHeaders(wsi: OpaquePointer?, input: UnsafeMutableRawPointer?, length: Int) -> Int32 {
        guard let input, !self.request.headers.isEmpty else { return 0 }
        let cursor = input.assumingMemoryBound(to: UnsafeMutablePointer<UInt8>?.self)
        guard let start = cursor.pointee else { return -1 }
        let end = start + length
        for header in self.request.headers {
            let name = Array((header.name + ":").utf8) + [0]
            let value = Array(header.value.utf8)
            let rc = name.withUnsafeBufferPointer { namePointer in
                value.withUnsafeBufferPointer { valuePointer in
                    lws_add_http_header_by_name(
                        wsi,
                        namePointer.baseAddress,
                        valuePointer.baseAddress,
                        Int32(value.count),
                        cursor,
                        end
                    )
                }
            }
            if rc != 0 {
                self.connectError = WebSocketTransportError(
                    code: .internalError,
                    message: "the extra handshake headers do not fit in the request buffer"
                )
                return -1
            }
        }
        return 0
    }

    private func loadVerifyCertificates(sslContext: UnsafeMutableRawPointer?) -> Int32 {
        guard let sslContext else { return 0 }
        let ctx = OpaquePointer(sslContext)
        // The system trust store is always used; an extra CA file is added on top.
        _ = SSL_CTX_set_default_verify_paths(ctx)
        if let caFile = self.request.tls.caFilePath {
            if SSL_CTX_load_verify_locations(ctx, caFile, nil) != 1 {
                self.connectError = WebSocketTransportError(
                    code: .tlsFailure,
                    message: "cannot load the CA file '\(caFile)'"
                )
            }
        }
        return 0
    }

    private func connectionError(wsi: OpaquePointer?, input: UnsafeMutableRawPointer?, length: Int) {
        self.serviceDone = true
        guard self.connectError == nil else { return }
        var text: String?
        if let input {
            let bytes = UnsafeRawBufferPointer(start: input, count: max(0, length))
            text =
                length > 0
                ? String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
                : String(cString: input.assumingMemoryBound(to: CChar.self))
        }
        var status: Int?
        if let wsi {
            let code = Int(lws_http_client_http_response(wsi))
            if code > 0 { status = code }
            if status == nil {
                var buffer = [CChar](repeating: 0, count: 64)
                if lws_hdr_copy(wsi, &buffer, Int32(buffer.count), WSI_TOKEN_HTTP) > 0 {
                    let line = String(
                        decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) },
                        as: UTF8.self
                    )
                    status = Int(line.prefix(while: { $0.isNumber }))
                }
            }
        }
        if status == 101 { status = nil }
        self.connectError = LWSErrorClassifier.classify(
            lwsText: text,
            httpStatus: status,
            secure: self.endpoint.secure,
            endpoint: self.endpoint.displayName
        )
        self.logger.debug("websocket connect failed", metadata: ["ws.error": "\(self.connectError!)"])
    }

    private func receive(wsi: OpaquePointer?, input: UnsafeMutableRawPointer?, length: Int) -> Int32 {
        guard let wsi else { return 0 }
        let chunk = UnsafeRawBufferPointer(start: input, count: input == nil ? 0 : length)
        let final = lws_is_final_fragment(wsi) != 0 && lws_remaining_packet_payload(wsi) == 0
        let binary = lws_frame_is_binary(wsi) != 0
        switch self.assembler.append(chunk, binary: binary, final: final) {
        case .incomplete:
            return 0
        case .message(let message):
            self.deliver(message, wsi: wsi)
            return 0
        case .tooLarge:
            self.closeError = WebSocketTransportError(
                code: .messageTooLarge,
                message: "an inbound message exceeded the limit of \(self.request.maxMessageSize) bytes"
            )
            return self.closeNow(wsi: wsi, code: 1009, reason: "message too large")
        case .invalidUTF8:
            self.closeError = WebSocketTransportError(
                code: .connectionLost,
                message: "an inbound text message was not valid UTF-8"
            )
            return self.closeNow(wsi: wsi, code: 1007, reason: "invalid UTF-8")
        }
    }

    private func deliver(_ message: WebSocketMessage, wsi: OpaquePointer) {
        let pause = self.shared.withLockedValue { state -> Bool in
            if state.consumerGone { return false }
            state.bufferedMessages += 1
            state.bufferedBytes += message.byteCount
            let over = state.bufferedMessages >= self.limits.maxMessages || state.bufferedBytes >= self.limits.maxBytes
            if over && !state.receivePaused {
                state.receivePaused = true
                state.receivePauseCount += 1
                return true
            }
            return false
        }
        self.eventsContinuation.yield(.message(message))
        if pause && !self.rxPaused {
            self.rxPaused = true
            _ = lws_rx_flow_control(wsi, 0)
        }
    }

    /// Sets the close reason and returns -1 so lws sends the close frame and waits for the peer's answer.
    private func closeNow(wsi: OpaquePointer, code: UInt16, reason: String) -> Int32 {
        if self.localClose == nil && self.peerClose == nil {
            self.localClose = (code, reason)
        }
        self.shared.withLockedValue { $0.sendsRefused = true }
        // A close frame's reason is at most 123 bytes; cut on a scalar boundary so it stays valid UTF-8.
        var bytes: [UInt8] = []
        for scalar in reason.unicodeScalars {
            let encoded = Array(String(scalar).utf8)
            if bytes.count + encoded.count > 123 { break }
            bytes += encoded
        }
        lws_close_reason(wsi, lws_close_status(rawValue: UInt32(code)), &bytes, bytes.count)
        if self.rxPaused {
            self.rxPaused = false
            _ = lws_rx_flow_control(wsi, 1)
        }
        return -1
    }

    private func writable(wsi: OpaquePointer?) -> Int32 {
        guard let wsi else { return 0 }
        if self.writing == nil {
            let next = self.shared.withLockedValue { state -> (LWSSharedState.PendingSend?, (code: UInt16, reason: String)?) in
                if !state.outbox.isEmpty { return (state.outbox.removeFirst(), nil) }
                return (nil, state.closeRequest)
            }
            if let pending = next.0 {
                switch pending.message {
                case .text(let text): self.writing = (Array(text.utf8), false, 0, pending)
                case .binary(let bytes): self.writing = (bytes, true, 0, pending)
                }
            } else if let close = next.1 {
                if self.closeFrameQueued { return 0 }
                self.closeFrameQueued = true
                return self.closeNow(wsi: wsi, code: Self.wireCloseCode(close.code), reason: close.reason)
            } else {
                return 0
            }
        }
        guard var current = self.writing else { return 0 }
        let pre = Int(jobsync_lws_pre())
        let chunkLength = min(Self.fragmentSize, current.bytes.count - current.offset)
        self.ensureScratch(pre + Self.fragmentSize)
        let payload = self.scratch! + pre
        current.bytes.withUnsafeBytes { source in
            if chunkLength > 0 {
                payload.copyMemory(from: source.baseAddress! + current.offset, byteCount: chunkLength)
            }
        }
        let isFirst = current.offset == 0
        let isLast = current.offset + chunkLength == current.bytes.count
        var flags: UInt32 = isFirst ? (current.binary ? 1 : 0) : 2  // BINARY / TEXT / CONTINUATION
        if !isLast { flags |= 0x40 }  // LWS_WRITE_NO_FIN
        let written = lws_write(
            wsi,
            payload.assumingMemoryBound(to: UInt8.self),
            chunkLength,
            lws_write_protocol(rawValue: flags)
        )
        if written < chunkLength {
            self.writing = nil
            current.pending.continuation.resume(
                returning: .failure(.init(code: .connectionLost, message: "writing to the WebSocket failed"))
            )
            return -1
        }
        current.offset += chunkLength
        if isLast {
            self.writing = nil
            current.pending.continuation.resume(returning: .success(()))
        } else {
            self.writing = current
        }
        let more = self.writing != nil || self.shared.withLockedValue { !$0.outbox.isEmpty || $0.closeRequest != nil }
        if more { lws_callback_on_writable(wsi) }
        return 0
    }

    /// Codes that may not appear in a close frame (RFC 6455 §7.4) are sent as 1000.
    static func wireCloseCode(_ code: UInt16) -> UInt16 {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: code
        default: 1000
        }
    }

    private func ensureScratch(_ capacity: Int) {
        guard self.scratchCapacity < capacity else { return }
        self.scratch?.deallocate()
        self.scratch = .allocate(byteCount: capacity, alignment: 16)
        self.scratchCapacity = capacity
    }

    private func peerInitiatedClose(input: UnsafeMutableRawPointer?, length: Int) {
        guard self.localClose == nil else { return }
        var code: UInt16 = 1005
        var reason = ""
        if let input, length >= 2 {
            let bytes = UnsafeRawBufferPointer(start: input, count: length)
            code = UInt16(bytes[0]) << 8 | UInt16(bytes[1])
            reason = String(decoding: bytes[2...], as: UTF8.self)
        }
        self.peerClose = (code, reason)
        self.shared.withLockedValue { $0.sendsRefused = true }
    }

    /// Delivers the outcome after the context is gone: connect result or final `.closed`, and fails leftovers.
    func finish() {
        let close: WebSocketClose?
        if self.established {
            if let local = self.localClose {
                close = WebSocketClose(
                    code: local.code,
                    reason: local.reason,
                    initiatedByPeer: false,
                    error: self.closeError
                )
            } else if let peer = self.peerClose {
                close = WebSocketClose(
                    code: peer.code,
                    reason: peer.reason,
                    initiatedByPeer: true,
                    error: self.closeError
                )
            } else {
                let error =
                    self.closeError
                    ?? WebSocketTransportError(code: .connectionLost, message: "the WebSocket connection was lost")
                close = WebSocketClose(code: nil, reason: "", initiatedByPeer: true, error: error)
            }
        } else {
            close = nil
        }
        if let close {
            self.logger.debug(
                "websocket closed",
                metadata: [
                    "ws.code": "\(close.code.map(String.init) ?? "none")", "ws.byPeer": "\(close.initiatedByPeer)",
                ]
            )
            self.eventsContinuation.yield(.closed(close))
        }
        self.eventsContinuation.finish()
        let writing = self.writing
        self.writing = nil
        let connectFailure =
            self.connectError
            ?? WebSocketTransportError(
                code: .connectionLost,
                message: "connecting to \(self.endpoint.displayName) failed"
            )
        let (outbox, waiters, connectWaiter) = self.shared.withLockedValue { state in
            state.sendsRefused = true
            state.finished = true
            if state.connectResult == nil { state.connectResult = .failure(connectFailure) }
            let result = (state.outbox, state.closeWaiters, state.connectWaiter)
            state.outbox = []
            state.closeWaiters = []
            state.connectWaiter = nil
            return result
        }
        writing?.pending.continuation.resume(returning: .failure(Self.notConnected))
        for pending in outbox { pending.continuation.resume(returning: .failure(Self.notConnected)) }
        connectWaiter?.resume(returning: .failure(connectFailure))
        for waiter in waiters { waiter.resume() }
    }
}

private func lwsCallback(
    _ wsi: OpaquePointer?,
    _ reason: lws_callback_reasons,
    _ user: UnsafeMutableRawPointer?,
    _ input: UnsafeMutableRawPointer?,
    _ length: Int
) -> Int32 {
    guard let wsi, let context = lws_get_context(wsi), let raw = lws_context_user(context) else { return 0 }
    let connection = Unmanaged<LWSConnection>.fromOpaque(raw).takeUnretainedValue()
    return connection.handle(wsi: wsi, reason: reason, user: user, input: input, length: length)
}
