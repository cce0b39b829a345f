import NIOConcurrencyHelpers
import NIOCore
import NIOHTTPTypes

/// Bytes the server's sockets carried, counted per TCP connection and summed by kind of connection: everything the
/// kernel was handed or gave back (HTTP request and status lines, headers, bodies and chunk framing; WebSocket frame
/// headers and payloads, pings, pongs and close frames), both directions.
///
/// A connection counts as ``rest`` until it is upgraded; from then on its bytes, the upgrade request and the `101`
/// answer included, count as ``websocket``. A refused handshake stays a REST connection.
public struct WireTraffic: Sendable, Equatable {
    /// One kind of connection.
    public struct Counts: Sendable, Equatable {
        /// Connections accepted.
        public var connections = 0
        /// Bytes received from clients.
        public var bytesIn = 0
        /// Bytes sent to clients.
        public var bytesOut = 0

        /// Both directions.
        public var bytes: Int { self.bytesIn + self.bytesOut }
    }

    /// Connections that were not upgraded: PostgREST, the status endpoint, RPC, admin.
    public var rest = Counts()
    /// Realtime sockets.
    public var websocket = Counts()
    /// HTTP requests answered on connections that were not upgraded.
    public var restRequests = 0
}

extension SupabaseLocalStack {
    /// Bytes on the wire since the stack started, by kind of connection.
    public var wireTraffic: WireTraffic { self.wireMeter.traffic.withLockedValue { $0 } }
}

/// The stack's running totals of ``WireTraffic``.
final class WireMeter: Sendable {
    let traffic = NIOLockedValueBox(WireTraffic())

    /// Installs byte counting as the first handler of a new connection's pipeline.
    func install(on channel: any Channel) throws {
        self.traffic.withLockedValue { $0.rest.connections += 1 }
        try channel.pipeline.syncOperations.addHandler(WireCountingHandler(meter: self), position: .first)
    }

    /// Moves a connection's bytes so far from REST to WebSocket once its upgrade succeeded.
    func upgraded(_ channel: any Channel) {
        guard let handler = try? channel.pipeline.syncOperations.handler(type: WireCountingHandler.self) else { return }
        handler.isWebSocket = true
        self.traffic.withLockedValue {
            $0.rest.connections -= 1
            $0.rest.bytesIn -= handler.bytesIn
            $0.rest.bytesOut -= handler.bytesOut
            $0.websocket.connections += 1
            $0.websocket.bytesIn += handler.bytesIn
            $0.websocket.bytesOut += handler.bytesOut
        }
    }

    /// Counts the requests of a connection that was not upgraded (after the HTTP codec).
    func installRequestCounting(on channel: any Channel) throws {
        try channel.pipeline.syncOperations.addHandler(RequestCountingHandler(meter: self))
    }

    fileprivate func add(bytesIn: Int, bytesOut: Int, webSocket: Bool) {
        self.traffic.withLockedValue {
            if webSocket {
                $0.websocket.bytesIn += bytesIn
                $0.websocket.bytesOut += bytesOut
            } else {
                $0.rest.bytesIn += bytesIn
                $0.rest.bytesOut += bytesOut
            }
        }
    }
}

/// Counts the bytes of one connection as they enter and leave the socket. Lives on the channel's event loop.
private final class WireCountingHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = IOData
    typealias OutboundOut = IOData

    let meter: WireMeter
    /// This connection's bytes so far (to move them when it is upgraded).
    var bytesIn = 0
    var bytesOut = 0
    var isWebSocket = false

    init(meter: WireMeter) {
        self.meter = meter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let count = Self.unwrapInboundIn(data).readableBytes
        self.bytesIn += count
        self.meter.add(bytesIn: count, bytesOut: 0, webSocket: self.isWebSocket)
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        let count: Int
        switch Self.unwrapOutboundIn(data) {
        case .byteBuffer(let buffer): count = buffer.readableBytes
        case .fileRegion(let region): count = region.readableBytes
        }
        self.bytesOut += count
        self.meter.add(bytesIn: 0, bytesOut: count, webSocket: self.isWebSocket)
        context.write(data, promise: promise)
    }
}

/// Counts request heads on a connection that was not upgraded.
private final class RequestCountingHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart

    let meter: WireMeter

    init(meter: WireMeter) {
        self.meter = meter
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .head = Self.unwrapInboundIn(data) {
            self.meter.traffic.withLockedValue { $0.restRequests += 1 }
        }
        context.fireChannelRead(data)
    }
}
