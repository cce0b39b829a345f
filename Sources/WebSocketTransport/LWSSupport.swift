import CLibWebSockets
import Foundation
import JobSyncCore
import Logging
import NIOConcurrencyHelpers

/// The parts of a `ws://`/`wss://` URL that libwebsockets needs.
struct LWSEndpoint: Sendable, Equatable {
    var secure: Bool
    var host: String
    var port: Int
    /// Path plus `?query`, percent-encoded as given.
    var pathAndQuery: String
    /// The `Host` header value.
    var hostHeader: String

    init(url: URL) throws(WebSocketTransportError) {
        guard let components = URLComponents(url: url, resolvingAgainstBaseURL: false),
            let scheme = components.scheme?.lowercased()
        else {
            throw WebSocketTransportError(code: .invalidURL, message: "the URL cannot be parsed")
        }
        switch scheme {
        case "ws": self.secure = false
        case "wss": self.secure = true
        default:
            throw WebSocketTransportError(code: .invalidURL, message: "unsupported URL scheme '\(scheme)'")
        }
        guard var host = components.host, !host.isEmpty else {
            throw WebSocketTransportError(code: .invalidURL, message: "the URL has no host")
        }
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = String(host.dropFirst().dropLast())
        }
        self.host = host
        let defaultPort = self.secure ? 443 : 80
        self.port = components.port ?? defaultPort
        guard (1...65535).contains(self.port) else {
            throw WebSocketTransportError(code: .invalidURL, message: "the URL port is out of range")
        }
        var path = components.percentEncodedPath
        if path.isEmpty { path = "/" }
        if let query = components.percentEncodedQuery {
            path += "?" + query
        }
        self.pathAndQuery = path
        let bracketed = host.contains(":") ? "[\(host)]" : host
        self.hostHeader = self.port == defaultPort ? bracketed : "\(bracketed):\(self.port)"
    }

    /// `host:port`, safe to print.
    var displayName: String {
        self.host.contains(":") ? "[\(self.host)]:\(self.port)" : "\(self.host):\(self.port)"
    }
}

/// Maps libwebsockets' connection-error text to a typed error.
enum LWSErrorClassifier {
    static func classify(
        lwsText: String?,
        httpStatus: Int?,
        secure: Bool,
        endpoint: String
    ) -> WebSocketTransportError {
        let raw = Redaction.redact(lwsText ?? "")
        let text = raw.lowercased()
        let detail = raw.isEmpty ? "" : " (libwebsockets: \(raw))"
        if text.hasPrefix("hs: ws upgrade") || (httpStatus != nil && httpStatus != 101 && text.hasPrefix("hs:")) {
            let status = httpStatus.map { " with HTTP \($0)" } ?? ""
            return WebSocketTransportError(
                code: .handshakeRejected,
                message: "\(endpoint) rejected the WebSocket upgrade\(status)\(detail)",
                httpStatus: httpStatus
            )
        }
        if text.contains("getaddrinfo") || text.contains("lookup") || text.contains("dns")
            || text.contains("resolve")
        {
            return WebSocketTransportError(
                code: .dnsFailure,
                message: "cannot resolve the host of \(endpoint)\(detail)"
            )
        }
        if text.contains("timed out") || text.contains("timeout") {
            return WebSocketTransportError(code: .timeout, message: "connecting to \(endpoint) timed out\(detail)")
        }
        if text.contains("ssl") || text.contains("tls") || text.contains("certificate") || text.contains("verify")
            || text.contains("error:")
        {
            return WebSocketTransportError(
                code: .tlsFailure,
                message: "TLS handshake with \(endpoint) failed (untrusted certificate, hostname mismatch "
                    + "or protocol error)\(detail)"
            )
        }
        if text.contains("refused") || text.contains("unable to connect") || text.contains("connect failed")
            || text.contains("connect()")
            || text.contains("waiting for connect") || text.contains("unreachable")
        {
            return WebSocketTransportError(
                code: .connectionRefused,
                message: "\(endpoint) refused the connection\(detail)"
            )
        }
        if secure && (text.contains("hung up") || text.contains("read failed")) {
            return WebSocketTransportError(
                code: .tlsFailure,
                message: "\(endpoint) closed the connection during the TLS or HTTP handshake\(detail)"
            )
        }
        return WebSocketTransportError(
            code: .connectionLost,
            message: "connecting to \(endpoint) failed\(detail)"
        )
    }
}

/// Routes libwebsockets' process-global log output to swift-log.
///
/// lws 4.1 has one process-wide log sink, so the logger of the most recently created `LWSWebSocketTransport`
/// receives it. Only errors and warnings are enabled in lws; both are logged at `debug` (a library must not log
/// at higher levels), with secrets redacted.
enum LWSLogRouter {
    private static let logger = NIOLockedValueBox<Logger?>(nil)
    private static let installed: Bool = {
        lws_set_log_level(Int32(LLL_ERR | LLL_WARN), lwsLogEmit)
        return true
    }()

    static func install(_ logger: Logger) {
        _ = Self.installed
        Self.logger.withLockedValue { $0 = logger }
    }

    fileprivate static func emit(level: Int32, line: String) {
        guard let logger = Self.logger.withLockedValue({ $0 }) else { return }
        let text = Redaction.redact(line.trimmingCharacters(in: .whitespacesAndNewlines))
        logger.debug(
            "libwebsockets",
            metadata: ["lws.level": "\(level)", "lws.line": "\(text)"]
        )
    }
}

private func lwsLogEmit(_ level: Int32, _ line: UnsafePointer<CChar>?) {
    guard let line else { return }
    LWSLogRouter.emit(level: level, line: String(cString: line))
}
