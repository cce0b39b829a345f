public import Foundation
public import Logging
public import RealtimeProtocol
public import WebSocketTransport

extension RealtimeClient {
    /// Everything the client needs. Secrets (`apiKey`, tokens) are never logged or put in errors.
    public struct Configuration: Sendable {
        /// The WebSocket endpoint without credentials, e.g. `wss://<ref>.supabase.co/realtime/v1/websocket`.
        public var endpoint: URL
        /// The project API key, sent as the `apikey` query parameter (§1.2).
        public var apiKey: String
        /// Returns the user's access token (JWT) or `nil` to use the API key's role. Called before every connect,
        /// after the server closes a channel over token expiry (§8.2), and on a heartbeat once the current token is
        /// due: when less than max(10 s, 10 % of its lifetime) of its `exp` claim would remain by the next heartbeat,
        /// so a refreshed token reaches joined channels before the old one expires (§8.1). A token without a
        /// readable `exp` (or `nil`) is asked for again every ``accessTokenRefreshInterval``.
        public var accessToken: (@Sendable () async throws -> String?)?
        /// The Phoenix serializer version (`vsn`, §1.2). Default 2.0.0.
        public var protocolVersion: ProtocolVersion
        /// Heartbeat interval (§3). Default 25 s.
        public var heartbeatInterval: Duration
        /// How long a heartbeat may wait for its reply. Default 10 s (tolerates the server's 5 s join-error pause).
        /// Frames are signs of life: while they keep arriving, a reply queued behind them (a backlog the client works
        /// through) does not time out; the connection is given up after a whole timeout in which no frame arrived.
        public var heartbeatTimeout: Duration
        /// When set, a heartbeat unanswered for this long, with no frame received in that time either, makes every
        /// live subscription report ``NotLiveReason/Kind/socketUnresponsive`` while the connection is kept (a silent
        /// stall delivers nothing, §13.1), and its late reply makes them ``RealtimeSubscriptionEvent/live`` again.
        /// With a short ``heartbeatInterval`` this detects a stall in seconds without reconnecting on every slow reply.
        /// Default nil (off).
        public var unresponsiveAfter: Duration?
        /// How often a heartbeat asks the access-token provider again when the current token has no readable `exp`
        /// claim, or is `nil` (default 25 s). Tokens with `exp` are asked for shortly before they expire instead.
        public var accessTokenRefreshInterval: Duration
        /// The current date, used only to compare access tokens' `exp` claims with (inject a fixed date in tests;
        /// every timer runs on ``clock``).
        public var now: @Sendable () -> Date
        /// Reconnect delays (§9.3). Default 1, 2, 5, 10 s, then 10 s, ±20 %.
        public var reconnect: BackoffSchedule
        /// The shortest reconnect delay after an HTTP 429 handshake refusal. Default 10 s.
        public var rateLimitedReconnectDelay: Duration
        /// Join reply timeout (§9.3). Default 10 s.
        public var joinTimeout: Duration
        /// Rejoin delays (§9.3). Default 1, 2, 5, then 10 s, ±20 %.
        public var rejoin: BackoffSchedule
        /// Rejoin delay range after a rate-limit close or refusal. Default 10–30 s.
        public var rateLimitedRejoinDelay: ClosedRange<Duration>
        /// The most events a subscription buffers for a slow consumer before it ends with
        /// ``RealtimeClientError/Code/subscriptionOverflow``. Default 4,096. While a subscription holds more than half
        /// of it unread, the client stops reading the socket (so the server slows down) until the consumer catches up,
        /// for at most a second at a time: a consumer that keeps reading never overflows, one that stopped does not
        /// hold up the others.
        public var subscriptionBufferSize: Int
        /// How many message ids (`meta.id`) each ``RealtimeClient/broadcast(topic:isPrivate:events:replay:)``
        /// subscription remembers to drop the duplicates that every rejoin replays (broadcast-from-database.md §B5).
        /// The oldest id is forgotten first, so memory stays at this many ids per subscription. Default 1,000
        /// (a rejoin replays at most 25).
        public var broadcastDeduplicationWindow: Int
        /// Prefix of the channel names the client makes up (`realtime:<prefix>-<n>`). Default `sync`.
        public var channelPrefix: String
        /// Extra headers for the WebSocket upgrade request.
        public var headers: [(name: String, value: String)]
        /// TLS options (verification is on by default).
        public var tls: WebSocketTLSOptions
        /// The largest inbound message accepted. Default 8 MiB (a `postgres_changes` record can reach ~1 MiB).
        public var maxMessageSize: Int
        /// TCP + TLS + upgrade timeout. Default 10 s.
        public var connectTimeout: Duration
        /// The WebSocket implementation.
        public var transport: any WebSocketTransport
        /// The clock for timers and round-trip times (inject a manual clock in tests).
        public var clock: any Clock<Duration>
        /// The logger (trace and debug only; secrets are redacted).
        public var logger: Logger

        /// Creates a configuration from an explicit WebSocket endpoint.
        /// - Parameters:
        ///   - endpoint: a `ws://` or `wss://` URL; any `apikey`/`vsn` query items are replaced.
        ///   - apiKey: the project API key.
        ///   - transport: the WebSocket implementation.
        ///   - clock: the clock; `ContinuousClock()` in production.
        ///   - logger: the logger.
        public init(
            endpoint: URL,
            apiKey: String,
            transport: any WebSocketTransport,
            clock: any Clock<Duration> = ContinuousClock(),
            logger: Logger
        ) {
            self.endpoint = endpoint
            self.apiKey = apiKey
            self.accessToken = nil
            self.protocolVersion = .v2
            self.heartbeatInterval = .seconds(25)
            self.heartbeatTimeout = .seconds(10)
            self.unresponsiveAfter = nil
            self.accessTokenRefreshInterval = .seconds(25)
            self.now = { Date() }
            self.reconnect = .reconnect
            self.rateLimitedReconnectDelay = .seconds(10)
            self.joinTimeout = .seconds(10)
            self.rejoin = .rejoin
            self.rateLimitedRejoinDelay = .seconds(10) ... .seconds(30)
            self.subscriptionBufferSize = 4_096
            self.broadcastDeduplicationWindow = 1_000
            self.channelPrefix = "sync"
            self.headers = []
            self.tls = WebSocketTLSOptions()
            self.maxMessageSize = 8 << 20
            self.connectTimeout = .seconds(10)
            self.transport = transport
            self.clock = clock
            self.logger = logger
        }

        /// Creates a configuration from a project URL: `https://<ref>.supabase.co` becomes
        /// `wss://<ref>.supabase.co/realtime/v1/websocket` (and `http` becomes `ws`), §1.1.
        /// - Throws: ``RealtimeClientError/Code/invalidConfiguration`` if the URL is not http(s) with a host.
        public init(
            projectURL: URL,
            apiKey: String,
            transport: any WebSocketTransport,
            clock: any Clock<Duration> = ContinuousClock(),
            logger: Logger
        ) throws(RealtimeClientError) {
            self.init(
                endpoint: try Self.realtimeEndpoint(projectURL: projectURL), apiKey: apiKey, transport: transport,
                clock: clock, logger: logger)
        }

        /// `<project>/realtime/v1/websocket` with the scheme mapped to ws/wss.
        static func realtimeEndpoint(projectURL: URL) throws(RealtimeClientError) -> URL {
            guard var components = URLComponents(url: projectURL, resolvingAgainstBaseURL: false),
                let scheme = components.scheme?.lowercased(), components.host?.isEmpty == false
            else {
                throw RealtimeClientError(.invalidConfiguration, "the project URL has no scheme or host")
            }
            switch scheme {
            case "https", "wss": components.scheme = "wss"
            case "http", "ws": components.scheme = "ws"
            default:
                throw RealtimeClientError(.invalidConfiguration, "unsupported project URL scheme '\(scheme)'")
            }
            var path = components.path
            while path.hasSuffix("/") { path.removeLast() }
            components.path = path + "/realtime/v1/websocket"
            components.query = nil
            components.fragment = nil
            guard let url = components.url else {
                throw RealtimeClientError(.invalidConfiguration, "cannot build the Realtime URL")
            }
            return url
        }

        /// The URL actually dialled: the endpoint plus `apikey` and `vsn` (§1.1, §1.2).
        func connectURL() throws(RealtimeClientError) -> URL {
            guard var components = URLComponents(url: self.endpoint, resolvingAgainstBaseURL: false),
                let scheme = components.scheme?.lowercased(), scheme == "ws" || scheme == "wss",
                components.host?.isEmpty == false
            else {
                throw RealtimeClientError(.invalidConfiguration, "the endpoint must be a ws:// or wss:// URL")
            }
            guard !self.apiKey.isEmpty else {
                throw RealtimeClientError(.invalidConfiguration, "the API key is empty")
            }
            var items = (components.queryItems ?? []).filter { $0.name != "apikey" && $0.name != "vsn" }
            items.append(URLQueryItem(name: "apikey", value: self.apiKey))
            items.append(URLQueryItem(name: "vsn", value: self.protocolVersion.rawValue))
            components.queryItems = items
            guard let url = components.url else {
                throw RealtimeClientError(.invalidConfiguration, "cannot build the connect URL")
            }
            return url
        }

        func validate() throws(RealtimeClientError) {
            _ = try self.connectURL()
            guard self.subscriptionBufferSize > 0 else {
                throw RealtimeClientError(.invalidConfiguration, "subscriptionBufferSize must be positive")
            }
            guard self.broadcastDeduplicationWindow > 0 else {
                throw RealtimeClientError(.invalidConfiguration, "broadcastDeduplicationWindow must be positive")
            }
            guard self.heartbeatInterval > .zero, self.heartbeatTimeout > .zero, self.joinTimeout > .zero,
                (self.unresponsiveAfter ?? .seconds(1)) > .zero
            else {
                throw RealtimeClientError(.invalidConfiguration, "heartbeat and join timeouts must be positive")
            }
        }
    }
}

// The API key must never reach a log through `"\(configuration)"`, `dump` or a debugger summary.
extension RealtimeClient.Configuration: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String {
        "RealtimeClient.Configuration(endpoint: \(self.endpoint), apiKey: <redacted>, vsn: \(self.protocolVersion.rawValue))"
    }

    public var debugDescription: String { self.description }

    public var customMirror: Mirror {
        Mirror(self, children: ["endpoint": self.endpoint, "apiKey": "<redacted>", "vsn": self.protocolVersion.rawValue])
    }
}
