/// The one public error type of the `SupabaseRealtime` module.
///
/// ``description`` is safe to print and log: messages never contain API keys, access tokens or URLs with their
/// query string.
public struct RealtimeClientError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: switch over codes with a `default` branch.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable identifier, safe as a metrics label.
        public let rawValue: String

        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// The configuration is unusable (bad URL, empty API key, …).
        public static let invalidConfiguration = Code("invalidConfiguration")
        /// `run()` was called while the client was already running, or after it finished.
        public static let alreadyRunning = Code("alreadyRunning")
        /// The client has shut down; no new subscriptions are accepted.
        public static let clientShutDown = Code("clientShutDown")
        /// The subscription's bounded buffer overflowed because the consumer was too slow; the subscription ended.
        public static let subscriptionOverflow = Code("subscriptionOverflow")
        /// The server closed the channel (`phx_close`) and it will not be rejoined automatically.
        public static let channelClosed = Code("channelClosed")
        /// The server refused the WebSocket handshake (see ``httpStatus``).
        public static let handshakeRejected = Code("handshakeRejected")
        /// The connection failed or was lost.
        public static let connectionFailed = Code("connectionFailed")
        /// A subscription's arguments cannot be honoured (e.g. replay on a public broadcast channel, or a topic
        /// already subscribed with the other privacy).
        public static let invalidSubscription = Code("invalidSubscription")
        /// The access-token provider threw.
        public static let accessTokenUnavailable = Code("accessTokenUnavailable")

        /// The identifier.
        public var description: String { self.rawValue }
    }

    /// The failure kind.
    public var code: Code
    /// A human-readable explanation, safe to print.
    public var message: String
    /// The HTTP status of a refused handshake, if any.
    public var httpStatus: Int?

    /// Creates an error. Never put secrets in `message`.
    public init(_ code: Code, _ message: String, httpStatus: Int? = nil) {
        self.code = code
        self.message = message
        self.httpStatus = httpStatus
    }

    /// `"RealtimeClientError.<code>: <message>"`.
    public var description: String {
        if let httpStatus = self.httpStatus {
            return "RealtimeClientError.\(self.code) (HTTP \(httpStatus)): \(self.message)"
        }
        return "RealtimeClientError.\(self.code): \(self.message)"
    }
}
