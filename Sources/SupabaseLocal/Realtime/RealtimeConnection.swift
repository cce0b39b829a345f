import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOWebSocket

/// What the handshake accepted (realtime-protocol.md §1.2, §1.3).
struct AcceptedSocket: Sendable {
    var version: RealtimeVersion
    var token: String
}

/// Drives one WebSocket: feeds frames, timers, changes and faults into a ``RealtimeSession`` and executes its actions.
struct RealtimeConnection<C: Clock> where C.Duration == Duration {
    let stack: SupabaseLocalStack
    let clock: C
    let accepted: AcceptedSocket
    let logger: Logger

    func serve(_ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>) async {
        let (inputs, continuation) = AsyncStream<ConnectionInput>.makeStream()
        let id = self.stack.registry.add(continuation)
        defer {
            self.stack.registry.remove(id)
            continuation.finish()
        }
        let configuration = self.stack.configuration
        var session = RealtimeSession(
            version: self.accepted.version,
            table: self.stack.backend.table,
            verifier: self.stack.verifier(),
            socketToken: self.accepted.token
        )
        var logger = self.logger
        logger[metadataKey: "realtime.socket"] = "\(id)"
        logger.debug("realtime socket open", metadata: ["realtime.vsn": "\(self.accepted.version.rawValue)"])
        do {
            try await channel.executeThenClose { inbound, outbound in
                try await withThrowingDiscardingTaskGroup { group in
                    group.addTask {
                        await Self.read(inbound, into: continuation, maxMessage: configuration.maxFrameSize)
                    }
                    var lastActivity = self.clock.now
                    var idleTimerPending = true
                    let clock = self.clock
                    let idleTimeout = configuration.idleTimeout
                    group.addTask {
                        try await clock.sleep(for: idleTimeout)
                        continuation.yield(.idleCheck)
                    }
                    func send(_ text: String) async throws {
                        try await outbound.write(
                            WebSocketFrame(fin: true, opcode: .text, data: ByteBuffer(string: text)))
                    }
                    func close(code: UInt16, reason: String) async throws {
                        var data = ByteBuffer()
                        data.writeInteger(code)
                        data.writeString(reason)
                        try await outbound.write(WebSocketFrame(fin: true, opcode: .connectionClose, data: data))
                    }
                    loop: for await input in inputs {
                        session.policy = self.stack.sessionPolicy()
                        let now = configuration.wallClock.now()
                        var actions: [RealtimeSession.Action] = []
                        switch input {
                        case .text(let text):
                            actions = session.receive(text: text, now: now)
                        case .activity:
                            lastActivity = clock.now
                            if !idleTimerPending {
                                idleTimerPending = true
                                group.addTask {
                                    try await clock.sleep(for: idleTimeout)
                                    continuation.yield(.idleCheck)
                                }
                            }
                        case .ping(let bytes):
                            try await outbound.write(
                                WebSocketFrame(fin: true, opcode: .pong, data: ByteBuffer(bytes: bytes)))
                        case .peerClosed(let code):
                            logger.debug(
                                "realtime peer closed",
                                metadata: ["realtime.close_code": "\(code.map(String.init) ?? "none")"])
                            try? await close(code: code ?? 1000, reason: "")
                            break loop
                        case .inboundEnded:
                            break loop
                        case .timer(let timer):
                            actions = session.timerFired(timer, now: now)
                        case .idleCheck:
                            let idle = lastActivity.duration(to: clock.now)
                            if idle >= idleTimeout {
                                logger.debug("realtime idle timeout")
                                try await close(code: 1000, reason: "")
                                break loop
                            }
                            let remaining = idleTimeout - idle
                            group.addTask {
                                try await clock.sleep(for: remaining)
                                continuation.yield(.idleCheck)
                            }
                        case .change(let change):
                            actions = session.deliver(change, maxRecordBytes: self.stack.maxRecordBytes())
                        case .broadcast(let row):
                            actions = session.deliverBroadcast(row)
                        case .broadcastRateLimited(let row):
                            actions = session.rateLimitBroadcast(row)
                            let closed = actions.count / 2
                            if closed > 0 {
                                self.stack.faultState.withLockedValue {
                                    $0.statistics.broadcastChannelsRateLimited += closed
                                }
                            }
                        case .authorized(let topic, let generation, let outcome):
                            actions = session.authorized(
                                topic: topic, generation: generation, outcome: outcome, now: now)
                        case .drop(let code, let reason):
                            if let code { try await close(code: code, reason: reason) }
                            break loop
                        case .stall(let duration):
                            // Keep TCP open, answer nothing, send nothing.
                            try await clock.sleep(for: duration)
                        case .expireTokens:
                            actions = session.expireTokens(now: now)
                        case .crashChannels:
                            actions = session.crashChannels()
                        case .frameBurst(let burst):
                            try await Self.write(burst, session: session, to: outbound)
                        }
                        for action in actions {
                            switch action {
                            case .send(let text):
                                try await send(text)
                            case .sendBinary(let bytes):
                                try await outbound.write(
                                    WebSocketFrame(fin: true, opcode: .binary, data: ByteBuffer(bytes: bytes)))
                            case .authorize(let request):
                                let stack = self.stack
                                group.addTask {
                                    let outcome = await stack.authorize(request)
                                    continuation.yield(
                                        .authorized(
                                            topic: request.topic, generation: request.generation, outcome: outcome))
                                }
                            case .schedule(let timer, let delay):
                                if case .replicationTimeout = timer, session.policy.replicationReadyDelay == nil {
                                    self.stack.faultState.withLockedValue {
                                        $0.statistics.replicationReadyWithheld += 1
                                    }
                                }
                                group.addTask {
                                    try await clock.sleep(for: delay)
                                    continuation.yield(.timer(timer))
                                }
                            case .close(let code, let reason):
                                try await close(code: code, reason: reason)
                                break loop
                            }
                        }
                    }
                    group.cancelAll()
                }
            }
        } catch {
            logger.debug("realtime socket ended with error", metadata: ["error.type": "\(type(of: error))"])
        }
        logger.debug("realtime socket closed")
    }

    /// Reads frames, joining fragments; text messages become inputs, binary ones are ignored.
    static func read(
        _ inbound: NIOAsyncChannelInboundStream<WebSocketFrame>,
        into continuation: AsyncStream<ConnectionInput>.Continuation,
        maxMessage: Int
    ) async {
        var fragments: [UInt8] = []
        var fragmentIsText = false
        var inMessage = false
        do {
            for try await frame in inbound {
                continuation.yield(.activity)
                switch frame.opcode {
                case .text, .binary:
                    fragmentIsText = frame.opcode == .text
                    fragments = Array(buffer: frame.unmaskedData)
                    inMessage = !frame.fin
                case .continuation:
                    guard inMessage else { continue }
                    fragments += Array(buffer: frame.unmaskedData)
                    inMessage = !frame.fin
                case .ping:
                    continuation.yield(.ping(Array(buffer: frame.unmaskedData)))
                    continue
                case .connectionClose:
                    var data = frame.unmaskedData
                    continuation.yield(.peerClosed(code: data.readInteger(as: UInt16.self)))
                    return
                default:
                    continue
                }
                if fragments.count > maxMessage {
                    continuation.yield(.drop(code: 1009, reason: "message too big"))
                    return
                }
                if !inMessage, fragmentIsText {
                    continuation.yield(.text(String(decoding: fragments, as: UTF8.self)))
                    fragments = []
                }
            }
        } catch {
            // Connection reset or protocol error: treat as end of input.
        }
        continuation.yield(.inboundEnded)
    }
}
