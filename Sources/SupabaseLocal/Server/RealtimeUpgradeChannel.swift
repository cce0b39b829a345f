import HTTPTypes
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOHTTPTypes
import NIOHTTPTypesHTTP1
import NIOWebSocket

/// A refused handshake: HTTP status, headers and a JSON body (realtime-protocol.md §1.3).
struct HandshakeRefusal: Sendable {
    var status: Int
    var body: String
    var retryAfterSeconds: Int?
}

/// The handshake decision for one upgrade request.
enum HandshakeDecision: Sendable {
    case notRealtime
    case refuse(HandshakeRefusal)
    case accept(AcceptedSocket)
}

/// HTTP/1 child channel that serves REST through Hummingbird and upgrades Realtime paths itself, so refusals can
/// carry the real status codes and bodies (Hummingbird's own upgrade channel answers every refusal with 400).
struct RealtimeUpgradeChannel: ServerChildChannel, HTTPChannelHandler {
    enum UpgradeResult: Sendable {
        case websocket(NIOAsyncChannel<WebSocketFrame, WebSocketFrame>, AcceptedSocket)
        case notUpgraded(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>)
        case refused(NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>, HandshakeRefusal)
    }

    struct Value: ServerChildChannelValue {
        let upgradeResult: EventLoopFuture<UpgradeResult>
        let channel: any Channel
    }

    let responder: HTTPChannelHandler.Responder
    let stack: SupabaseLocalStack

    func setup(channel: any Channel, logger: Logger) -> EventLoopFuture<Value> {
        let stack = self.stack
        return channel.eventLoop.makeCompletedFuture {
            try stack.wireMeter.install(on: channel)
            let decision = NIOLoopBoundBox<HandshakeDecision>(.notRealtime, eventLoop: channel.eventLoop)
            let upgrader = NIOTypedWebSocketServerUpgrader<UpgradeResult>(
                maxFrameSize: stack.configuration.maxFrameSize,
                shouldUpgrade: { channel, head in
                    let result = stack.decideHandshake(uri: head.uri, headers: head.headers)
                    decision.value = result
                    if case .accept = result {
                        return channel.eventLoop.makeSucceededFuture(HTTPHeaders())
                    }
                    return channel.eventLoop.makeSucceededFuture(nil)
                },
                upgradePipelineHandler: { channel, _ in
                    channel.eventLoop.makeCompletedFuture {
                        let asyncChannel = try NIOAsyncChannel<WebSocketFrame, WebSocketFrame>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        guard case .accept(let accepted) = decision.value else {
                            throw SupabaseLocalError(.startupFailed, "upgrade without an accepted handshake")
                        }
                        stack.wireMeter.upgraded(channel)
                        return UpgradeResult.websocket(asyncChannel, accepted)
                    }
                }
            )
            let serverUpgradeConfiguration = NIOTypedHTTPServerUpgradeConfiguration(
                upgraders: [upgrader],
                notUpgradingCompletionHandler: { channel in
                    channel.eventLoop.makeCompletedFuture {
                        try channel.pipeline.syncOperations.addHandler(HTTP1ToHTTPServerCodec(secure: false))
                        try stack.wireMeter.installRequestCounting(on: channel)
                        let asyncChannel = try NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>(
                            wrappingChannelSynchronously: channel,
                            configuration: .init(isOutboundHalfClosureEnabled: true)
                        )
                        if case .refuse(let refusal) = decision.value {
                            return UpgradeResult.refused(asyncChannel, refusal)
                        }
                        return UpgradeResult.notUpgraded(asyncChannel)
                    }
                }
            )
            var configuration = NIOUpgradableHTTPServerPipelineConfiguration<UpgradeResult>(
                upgradeConfiguration: serverUpgradeConfiguration
            )
            configuration.enablePipelining = false
            configuration.enableErrorHandling = false
            configuration.enableResponseHeaderValidation = false
            let future = try channel.pipeline.syncOperations.configureUpgradableHTTPServerPipeline(
                configuration: configuration
            )
            return Value(upgradeResult: future, channel: channel)
        }
    }

    func handle(value: Value, logger: Logger) async {
        do {
            switch try await value.upgradeResult.get() {
            case .notUpgraded(let http):
                await self.handleHTTP(asyncChannel: http, logger: logger)
            case .refused(let http, let refusal):
                try await self.stack.sleep(for: self.stack.configuration.connectErrorDelay)
                try await Self.writeRefusal(refusal, to: http)
            case .websocket(let channel, let accepted):
                await Self.serve(
                    channel, stack: self.stack, clock: self.stack.configuration.clock,
                    accepted: accepted, logger: logger)
            }
        } catch {
            logger.debug("connection ended with error", metadata: ["error.type": "\(type(of: error))"])
        }
    }

    /// Opens the clock existential so the connection driver can use the clock's instants.
    static func serve<C: Clock<Duration>>(
        _ channel: NIOAsyncChannel<WebSocketFrame, WebSocketFrame>,
        stack: SupabaseLocalStack,
        clock: C,
        accepted: AcceptedSocket,
        logger: Logger
    ) async {
        await RealtimeConnection(stack: stack, clock: clock, accepted: accepted, logger: logger).serve(channel)
    }

    static func writeRefusal(
        _ refusal: HandshakeRefusal,
        to channel: NIOAsyncChannel<HTTPRequestPart, HTTPResponsePart>
    ) async throws {
        try await channel.executeThenClose { _, outbound in
            var fields: HTTPFields = [
                .contentType: "application/json; charset=utf-8",
                .contentLength: "\(refusal.body.utf8.count)",
                .connection: "close",
            ]
            if let retryAfter = refusal.retryAfterSeconds { fields[.retryAfter] = "\(retryAfter)" }
            let head = HTTPResponse(status: .init(code: refusal.status), headerFields: fields)
            try await outbound.write(contentsOf: [.head(head), .body(ByteBuffer(string: refusal.body)), .end(nil)])
        }
    }
}
