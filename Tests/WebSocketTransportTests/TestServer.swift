import Foundation
import HTTPTypes
import Hummingbird
import HummingbirdCore
import HummingbirdTLS
import HummingbirdWebSocket
import Logging
import NIOCore
import NIOWebSocket

/// Request context that keeps the channel, so a test route can drop the TCP connection without a close frame.
struct TestWebSocketContext: RequestContext, WebSocketRequestContext {
    var coreContext: CoreRequestContextStorage
    let webSocket: WebSocketHandlerReference<Self>
    let channel: any Channel

    init(source: ApplicationRequestContextSource) {
        self.coreContext = .init(source: source)
        self.webSocket = .init()
        self.channel = source.channel
    }
}

/// An in-test Hummingbird WebSocket server on 127.0.0.1 with an ephemeral port.
///
/// `/ws` echoes every message; text commands starting with `cmd:` make it act (see `handle`).
enum TestServer {
    static let maxFrameSize = 16 << 20

    static func run(tlsCertificate: TestCertificate? = nil, _ body: @Sendable (Int) async throws -> Void) async throws {
        let router = Router(context: TestWebSocketContext.self)
        router.ws("/ws") { inbound, outbound, context in
            for try await message in inbound.messages(maxSize: Self.maxFrameSize) {
                switch message {
                case .binary(let buffer):
                    try await outbound.write(.binary(buffer))
                case .text(let text):
                    guard text.hasPrefix("cmd:") else {
                        try await outbound.write(.text(text))
                        continue
                    }
                    if try await Self.handle(command: text, outbound: outbound, context: context) == false {
                        return
                    }
                }
            }
        }
        var logger = Logger(label: "test-server")
        logger.logLevel = .critical
        let base = HTTPServerBuilder.http1WebSocketUpgrade(
            webSocketRouter: router,
            configuration: .init(ws: .init(maxFrameSize: Self.maxFrameSize))
        )
        let server: HTTPServerBuilder
        if let tlsCertificate {
            let tls = TLSConfiguration.makeServerConfiguration(
                certificateChain: try NIOSSLCertificate.fromPEMFile(tlsCertificate.certificatePath).map {
                    .certificate($0)
                },
                privateKey: .privateKey(try NIOSSLPrivateKey(file: tlsCertificate.keyPath, format: .pem))
            )
            server = try HTTPServerBuilder.tls(base, tlsConfiguration: tls)
        } else {
            server = base
        }
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: Router(context: TestWebSocketContext.self),
            server: server,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { return }
            do {
                try await body(port)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    /// A plain HTTP/1 server (no WebSocket upgrader) whose `/reject/<status>` answers any GET, including a WebSocket
    /// upgrade request, with that status. (Hummingbird's upgrader answers every refused upgrade with a fixed status.)
    static func runPlainHTTP(_ body: @Sendable (Int) async throws -> Void) async throws {
        let router = Router()
        router.get("/reject/{status}") { _, context -> Response in
            let status = context.parameters.get("status", as: Int.self) ?? 400
            return Response(status: HTTPResponse.Status(code: status))
        }
        var logger = Logger(label: "test-http-server")
        logger.logLevel = .critical
        let (ports, portContinuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router,
            configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { channel in portContinuation.yield(channel.localAddress?.port ?? 0) },
            logger: logger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            guard let port = await iterator.next() else { return }
            do {
                try await body(port)
            } catch {
                group.cancelAll()
                throw error
            }
            group.cancelAll()
        }
    }

    /// Returns `false` when the handler should return (connection ends).
    private static func handle(
        command: String,
        outbound: WebSocketOutboundWriter,
        context: WebSocketRouterContext<TestWebSocketContext>
    ) async throws -> Bool {
        let parts = command.split(separator: ":", maxSplits: 3, omittingEmptySubsequences: false).map(String.init)
        switch parts[1] {
        case "close":
            // cmd:close:<code>:<reason>
            let code = UInt16(parts[2]) ?? 1000
            try await outbound.close(.init(codeNumber: Int(code)), reason: parts.count > 3 ? parts[3] : nil)
            return false
        case "drop":
            try await context.requestContext.channel.close(mode: .all)
            return false
        case "send-binary":
            let count = Int(parts[2]) ?? 0
            try await outbound.write(.binary(ByteBuffer(bytes: TestPayload.bytes(count))))
        case "send-text":
            let count = Int(parts[2]) ?? 0
            try await outbound.write(.text(TestPayload.text(count)))
        case "send-fragmented":
            let count = Int(parts[2]) ?? 0
            let bytes = TestPayload.bytes(count)
            let third = count / 3
            try await outbound.withBinaryMessageWriter { writer in
                try await writer(ByteBuffer(bytes: bytes[0..<third]))
                try await writer(ByteBuffer(bytes: bytes[third..<(2 * third)]))
                try await writer(ByteBuffer(bytes: bytes[(2 * third)...]))
            }
        case "header":
            let name = HTTPField.Name(parts[2])
            let value = name.flatMap { context.request.headers[$0] } ?? "<missing>"
            try await outbound.write(.text(value))
        case "uri":
            try await outbound.write(.text(context.request.uri.description))
        default:
            try await outbound.write(.text("unknown command"))
        }
        return true
    }
}

/// Deterministic payloads both sides can generate and check.
enum TestPayload {
    static func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { UInt8(truncatingIfNeeded: $0 % 251) }
    }

    static func text(_ count: Int) -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyzé".unicodeScalars)
        var scalars = String.UnicodeScalarView()
        var size = 0
        var index = 0
        while size < count {
            let scalar = alphabet[index % alphabet.count]
            if size + UTF8.width(scalar) > count { break }
            scalars.append(scalar)
            size += UTF8.width(scalar)
            index += 1
        }
        while size < count {
            scalars.append("x")
            size += 1
        }
        return String(scalars)
    }
}

/// A self-signed certificate for 127.0.0.1/localhost, generated with the `openssl` CLI into a temp directory.
struct TestCertificate: Sendable {
    let directory: String
    var certificatePath: String { self.directory + "/cert.pem" }
    var keyPath: String { self.directory + "/key.pem" }

    static func generate() throws -> TestCertificate {
        let directory = NSTemporaryDirectory() + "jobsync-ws-tls-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let certificate = TestCertificate(directory: directory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        process.arguments = [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", certificate.keyPath, "-out", certificate.certificatePath, "-days", "2",
            "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:127.0.0.1",
            "-addext", "basicConstraints=critical,CA:TRUE",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        try process.run()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw CocoaError(.fileWriteUnknown)
        }
        return certificate
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: self.directory)
    }
}
