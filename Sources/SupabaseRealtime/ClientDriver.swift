import JobSyncCore
import Logging
import Metrics
import RealtimeProtocol
import WebSocketTransport
import Foundation

/// A subscriber of a channel: one ``RealtimeClient/postgresChanges(schema:table:event:filter:channel:)`` call.
typealias SubscriberID = ChannelStateMachine.SubscriberID

/// A subscription request from ``RealtimeClient/postgresChanges(schema:table:event:filter:channel:)`` or
/// ``RealtimeClient/broadcast(topic:isPrivate:events:replay:)``.
struct SubscriptionRequest: Sendable {
    /// What the subscriber reads.
    enum Kind: Sendable {
        case postgresChanges(PostgresChangeBinding)
        case broadcast(ChannelStateMachine.BroadcastOptions)
    }

    var id: SubscriberID
    var kind: Kind
    var channel: String?
    var sink: SubscriptionSink
}

/// The stream a subscription's events go to.
enum SubscriptionSink: Sendable {
    case postgresChanges(AsyncThrowingStream<RealtimeSubscriptionEvent, any Error>.Continuation)
    case broadcast(AsyncThrowingStream<BroadcastSubscriptionEvent, any Error>.Continuation)

    /// Ends the stream, with an error or normally.
    func finish(throwing error: RealtimeClientError? = nil) {
        switch self {
        case .postgresChanges(let continuation): continuation.finish(throwing: error)
        case .broadcast(let continuation): continuation.finish(throwing: error)
        }
    }
}

/// An inbound frame, decoded by the connection's reader task.
enum InboundFrame: Sendable {
    case message(PhoenixMessage)
    case malformed(RealtimeProtocolError)
    case skippedBinary
}

/// The outcome of one call to the access-token provider.
enum TokenFetch: Sendable {
    case unavailable
    case token(String?)
    case failed(String)
}

/// Everything that happens to the client, processed one at a time by the run loop.
enum DriverEvent: Sendable {
    case subscribe(SubscriptionRequest)
    case unsubscribe(SubscriberID)
    case opened(SocketStateMachine.ConnectionID, any WebSocketConnection, TokenFetch)
    case openFailed(SocketStateMachine.ConnectionID, WebSocketTransportError, TokenFetch)
    case inbound(SocketStateMachine.ConnectionID, InboundFrame)
    case closed(SocketStateMachine.ConnectionID, WebSocketClose)
    case timerFired(TimerKey, generation: UInt64)
    case tokenFetched(TokenFetch)
    case shutdown
}

/// A timer of the socket or of one channel.
enum TimerKey: Hashable, Sendable {
    case socket(SocketStateMachine.Timer)
    case channel(Topic, ChannelStateMachine.Timer)
}

/// Work for the single writer task.
enum WriterCommand: Sendable {
    case send(any WebSocketConnection, WebSocketMessage)
    case close(any WebSocketConnection, code: UInt16, reason: String)
}

/// A live subscription: its channel and its stream.
struct SubscriptionEntry {
    var topic: Topic
    var sink: SubscriptionSink
}

/// The run loop's state and the execution of state-machine actions. Confined to the task running
/// `RealtimeClient.run()`; never shared.
final class ClientDriver {
    let client: RealtimeClient
    let configuration: RealtimeClient.Configuration
    let logger: Logger
    let writer: Mailbox<WriterCommand>
    let time: MonotonicTime
    let serializer: PhoenixSerializer
    var socket: SocketStateMachine
    var connections: [SocketStateMachine.ConnectionID: any WebSocketConnection] = [:]
    /// One machine per topic in use; each one decides its channel's joins, leaves and fan-out.
    var channels: [Topic: ChannelStateMachine] = [:]
    /// The stream of each subscriber, and the topic its machine knows it under.
    var subscriptions: [SubscriberID: SubscriptionEntry] = [:]
    var timers: [TimerKey: (generation: UInt64, cancellation: TimerCancellation)] = [:]
    var timerGeneration: UInt64 = 0
    var accessToken: String?
    var tokenFetchInFlight = false
    /// When a heartbeat asks for the access token again (the current token's `exp`, or
    /// ``RealtimeClient/Configuration/accessTokenRefreshInterval`` without one).
    var tokenSchedule: AccessTokenSchedule
    var channelCounter: UInt64 = 0
    var random: SplitMix64
    /// At most this many decoded inbound frames wait in the event queue (see ``InboundCredits``).
    let inboundCredits = InboundCredits(limit: 256)
    private(set) var isShuttingDown = false

    init(client: RealtimeClient, writer: Mailbox<WriterCommand>) {
        self.client = client
        self.configuration = client.configuration
        self.logger = client.configuration.logger
        self.writer = writer
        self.time = MonotonicTime(clock: client.configuration.clock)
        self.serializer = PhoenixSerializer(version: client.configuration.protocolVersion)
        var random = SplitMix64.systemSeeded()
        self.socket = SocketStateMachine(
            configuration: .init(
                heartbeatInterval: client.configuration.heartbeatInterval,
                heartbeatTimeout: client.configuration.heartbeatTimeout,
                unresponsiveAfter: client.configuration.unresponsiveAfter,
                reconnect: client.configuration.reconnect,
                rateLimitedReconnectDelay: client.configuration.rateLimitedReconnectDelay),
            random: SplitMix64(seed: random.next()))
        self.random = random
        self.tokenSchedule = AccessTokenSchedule(
            fallbackInterval: client.configuration.accessTokenRefreshInterval,
            checkInterval: client.configuration.heartbeatInterval)
    }

    var channelConfiguration: ChannelStateMachine.Configuration {
        ChannelStateMachine.Configuration(
            joinTimeout: self.configuration.joinTimeout,
            rejoin: self.configuration.rejoin,
            rateLimitedRejoinDelay: self.configuration.rateLimitedRejoinDelay,
            broadcastDeduplicationWindow: self.configuration.broadcastDeduplicationWindow)
    }

    // MARK: Loop entry points

    func start(group: inout TaskGroup<Void>) {
        self.logger.debug(
            "realtime client starting",
            metadata: ["realtime.url": "\(Redaction.redact(self.client.connectURL.absoluteString))"])
        self.execute(self.socket.connect(), group: &group)
    }

    func handle(_ event: DriverEvent, group: inout TaskGroup<Void>) {
        switch event {
        case .subscribe(let request):
            self.subscribe(request, group: &group)
        case .unsubscribe(let id):
            self.unsubscribe(id, group: &group)
        case .opened(let id, let connection, let token):
            self.applyFetchedToken(token, group: &group)
            self.connections[id] = connection
            self.execute(self.socket.transportOpened(id), group: &group)
            if self.socket.openConnection != id, self.connections[id] != nil {
                // The machine did not adopt this connection (a stale attempt): close it.
                self.closeConnection(id, code: 1000, reason: "client disconnect", group: &group)
            }
        case .openFailed(let id, let error, let token):
            self.applyFetchedToken(token, group: &group)
            self.logger.debug(
                "realtime connect failed",
                metadata: ["realtime.connection": "\(id)", "realtime.error": "\(Redaction.redact(error.description))"])
            self.execute(
                self.socket.transportFailedToOpen(id, httpStatus: error.httpStatus, message: error.message),
                group: &group)
        case .inbound(let id, let frame):
            self.inboundCredits.release()
            guard self.socket.openConnection == id else { return }
            self.socket.frameReceived()
            self.receive(frame, group: &group)
        case .closed(let id, let close):
            self.connections[id] = nil
            self.logger.debug(
                "realtime connection closed",
                metadata: [
                    "realtime.connection": "\(id)", "realtime.close_code": "\(close.code.map(String.init) ?? "none")",
                ])
            self.execute(self.socket.transportClosed(id, code: close.code, reason: close.reason), group: &group)
        case .timerFired(let key, let generation):
            guard let entry = self.timers[key], entry.generation == generation else { return }
            self.timers[key] = nil
            self.timerFired(key, group: &group)
        case .tokenFetched(let fetch):
            self.tokenFetchInFlight = false
            self.applyFetchedToken(fetch, group: &group)
        case .shutdown:
            self.isShuttingDown = true
        }
    }

    /// Leaves joined channels, closes the socket through the writer (so queued frames go first), ends every
    /// subscription and stops the writer.
    func shutdown(group: inout TaskGroup<Void>) {
        self.isShuttingDown = true
        // Only the leave frames matter now: every timer is cancelled and every subscription ended below.
        for topic in Array(self.channels.keys) {
            guard var machine = self.channels[topic] else { continue }
            let actions = machine.shutDown(refs: &self.socket.refs)
            self.channels[topic] = machine
            for case .push(let message) in actions { self.send(message) }
        }
        let actions = self.socket.disconnect()
        for action in actions {
            switch action {
            case .closeTransport(let id, let code, let reason):
                if let connection = self.connections.removeValue(forKey: id) {
                    self.writer.send(.close(connection, code: code, reason: reason))
                }
            case .reportStatus(let status):
                self.client.statusBroadcaster.publish(status)
            default:
                break
            }
        }
        for (_, connection) in self.connections {
            self.writer.send(.close(connection, code: 1000, reason: "client disconnect"))
        }
        self.connections = [:]
        for (_, entry) in self.timers { entry.cancellation.cancel() }
        self.timers = [:]
        for (_, subscription) in self.subscriptions { subscription.sink.finish() }
        self.subscriptions = [:]
        self.channels = [:]
        self.client.statusBroadcaster.publish(.closed)
        self.logger.debug("realtime client stopped")
    }

    /// Events that arrived after the shutdown (all child tasks have ended): end late subscriptions and close a
    /// connection that opened while the client was stopping.
    func handleAfterShutdown(_ event: DriverEvent) {
        switch event {
        case .subscribe(let request):
            request.sink.finish(throwing: RealtimeClientError(.clientShutDown, "the Realtime client has shut down"))
        case .opened(_, let connection, _):
            self.writer.send(.close(connection, code: 1000, reason: "client disconnect"))
        default:
            break
        }
    }

    // MARK: Writer

    /// The single writer: sends frames and closes connections in the order they were queued.
    static func runWriter(_ writer: Mailbox<WriterCommand>, logger: Logger) async {
        while let command = await writer.next() {
            switch command {
            case .send(let connection, let message):
                do {
                    try await connection.send(message)
                } catch {
                    // The reader sees the connection end and reports it; nothing else to do here.
                    logger.trace("realtime send failed", metadata: ["realtime.error": "\(error.code)"])
                }
            case .close(let connection, let code, let reason):
                await connection.close(code: code, reason: reason)
            }
        }
    }

    func send(_ message: PhoenixMessage) {
        guard let id = self.socket.openConnection ?? self.closingConnectionForShutdown,
            let connection = self.connections[id]
        else {
            self.logger.trace(
                "realtime frame dropped: socket not open", metadata: ["realtime.topic": "\(message.topic)"])
            return
        }
        self.client.metrics.framesOut.increment()
        self.logger.trace(
            "realtime frame out",
            metadata: [
                "realtime.topic": "\(message.topic)", "realtime.event": "\(message.event)",
                "realtime.ref": "\(message.ref?.rawValue ?? "null")",
            ])
        self.writer.send(.send(connection, .text(self.serializer.encode(message))))
    }

    /// During shutdown the socket machine no longer reports an open connection, but the leave frames still go out
    /// on the connection that is about to be closed.
    var closingConnectionForShutdown: SocketStateMachine.ConnectionID? {
        guard self.isShuttingDown else { return nil }
        return self.connections.keys.first
    }

    func closeConnection(
        _ id: SocketStateMachine.ConnectionID,
        code: UInt16,
        reason: String,
        group: inout TaskGroup<Void>
    ) {
        guard let connection = self.connections.removeValue(forKey: id) else { return }
        // Not through the writer: a slow close handshake must not hold up frames for the next connection.
        group.addTask { await connection.close(code: code, reason: reason) }
    }
}
