import Foundation
import Testing

@testable import WebSocketTransport

@Suite("Transport helpers (no I/O)")
struct UnitTests {
    func append(_ assembler: inout MessageAssembler, _ bytes: [UInt8], binary: Bool, final: Bool)
        -> MessageAssembler.Outcome
    {
        bytes.withUnsafeBytes { assembler.append($0, binary: binary, final: final) }
    }

    @Test("assembler joins chunks and keeps text vs binary")
    func assemble() {
        var assembler = MessageAssembler(maxMessageSize: 10)
        #expect(self.append(&assembler, Array("héllo".utf8.prefix(2)), binary: false, final: false) == .incomplete)
        #expect(
            self.append(&assembler, Array("héllo".utf8.dropFirst(2)), binary: false, final: true)
                == .message(.text("héllo"))
        )
        #expect(self.append(&assembler, [1, 2], binary: true, final: false) == .incomplete)
        // The kind comes from the first chunk of a message.
        #expect(self.append(&assembler, [3], binary: false, final: true) == .message(.binary([1, 2, 3])))
        #expect(self.append(&assembler, [], binary: false, final: true) == .message(.text("")))
    }

    @Test("assembler enforces the limit across chunks, then starts fresh")
    func assembleLimit() {
        var assembler = MessageAssembler(maxMessageSize: 4)
        #expect(self.append(&assembler, [1, 2, 3], binary: true, final: false) == .incomplete)
        #expect(self.append(&assembler, [4, 5], binary: true, final: true) == .tooLarge)
        #expect(self.append(&assembler, [1, 2, 3, 4], binary: true, final: true) == .message(.binary([1, 2, 3, 4])))
    }

    @Test("assembler rejects invalid UTF-8 text")
    func assembleInvalidUTF8() {
        var assembler = MessageAssembler(maxMessageSize: 10)
        #expect(self.append(&assembler, [0xFF, 0xFE], binary: false, final: true) == .invalidUTF8)
    }

    @Test("endpoint keeps path and query and builds the Host header")
    func endpoint() throws {
        let endpoint = try LWSEndpoint(
            url: URL(string: "wss://example.com/realtime/v1/websocket?apikey=a%20b&vsn=1.0.0")!
        )
        #expect(endpoint.secure)
        #expect(endpoint.port == 443)
        #expect(endpoint.pathAndQuery == "/realtime/v1/websocket?apikey=a%20b&vsn=1.0.0")
        #expect(endpoint.hostHeader == "example.com")
        let local = try LWSEndpoint(url: URL(string: "ws://127.0.0.1:54321")!)
        #expect(local.pathAndQuery == "/")
        #expect(local.hostHeader == "127.0.0.1:54321")
        let ipv6 = try LWSEndpoint(url: URL(string: "ws://[::1]:8080/x")!)
        #expect(ipv6.host == "::1")
        #expect(ipv6.hostHeader == "[::1]:8080")
        #expect(throws: WebSocketTransportError.self) { try LWSEndpoint(url: URL(string: "ftp://x/")!) }
    }

    @Test("lws error texts map to typed codes")
    func classify() {
        func code(_ text: String, status: Int? = nil, secure: Bool = false) -> WebSocketTransportError.Code {
            LWSErrorClassifier.classify(lwsText: text, httpStatus: status, secure: secure, endpoint: "h:1").code
        }
        #expect(code("HS: ws upgrade unauthorized", status: 401) == .handshakeRejected)
        #expect(code("HS: ws upgrade response not 101", status: 429) == .handshakeRejected)
        #expect(code("Unable to connect") == .connectionRefused)
        #expect(code("getaddrinfo failed: Name or service not known") == .dnsFailure)
        #expect(code("tls: error:0A000086:SSL routines::certificate verify failed", secure: true) == .tlsFailure)
        #expect(code("Peer hung up", secure: true) == .tlsFailure)
        #expect(code("Peer hung up") == .connectionLost)
        let error = LWSErrorClassifier.classify(
            lwsText: "HS: ws upgrade response not 101",
            httpStatus: 429,
            secure: false,
            endpoint: "h:1"
        )
        #expect(error.httpStatus == 429)
    }

    @Test("close codes that cannot go on the wire are replaced by 1000")
    func wireCloseCodes() {
        #expect(LWSConnection.wireCloseCode(1000) == 1000)
        #expect(LWSConnection.wireCloseCode(4001) == 4001)
        #expect(LWSConnection.wireCloseCode(1011) == 1011)
        #expect(LWSConnection.wireCloseCode(1006) == 1000)
        #expect(LWSConnection.wireCloseCode(1005) == 1000)
        #expect(LWSConnection.wireCloseCode(999) == 1000)
        #expect(LWSConnection.wireCloseCode(2000) == 1000)
        #expect(LWSConnection.wireCloseCode(5000) == 1000)
    }
}
