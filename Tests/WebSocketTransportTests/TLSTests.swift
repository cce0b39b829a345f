import Foundation
import Testing
import WebSocketTransport

@Suite("LWSWebSocketTransport over TLS", .serialized)
struct TLSTests {
    let transport = LWSWebSocketTransport()

    func request(_ port: Int, tls: WebSocketTLSOptions = .init()) -> WebSocketRequest {
        WebSocketRequest(url: URL(string: "wss://127.0.0.1:\(port)/ws?apikey=do-not-log")!, tls: tls)
    }

    @Test("a self-signed server is refused by default with .tlsFailure")
    func selfSignedRefused() async throws {
        let certificate = try TestCertificate.generate()
        defer { certificate.remove() }
        try await TestServer.run(tlsCertificate: certificate) { port in
            let error = try #require(await connectError(self.transport, self.request(port)))
            #expect(error.code == .tlsFailure, "\(error)")
            #expect(!error.description.contains("do-not-log"))
        }
    }

    @Test("a self-signed server is accepted when its certificate is given as CA file")
    func caFileAccepted() async throws {
        let certificate = try TestCertificate.generate()
        defer { certificate.remove() }
        try await TestServer.run(tlsCertificate: certificate) { port in
            let tls = WebSocketTLSOptions(caFilePath: certificate.certificatePath)
            let connection = try await self.transport.connect(self.request(port, tls: tls))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("over tls"))
            #expect(await nextMessage(&events) == .text("over tls"))
            let payload = TestPayload.bytes(1 << 20)
            try await connection.send(.binary(payload))
            #expect(await nextMessage(&events) == .binary(payload))
            await connection.close(code: 1000, reason: "")
            #expect(await drainToClose(&events)?.code == 1000)
        }
    }

    @Test("verification can be turned off (tests only)")
    func verificationOff() async throws {
        let certificate = try TestCertificate.generate()
        defer { certificate.remove() }
        try await TestServer.run(tlsCertificate: certificate) { port in
            let tls = WebSocketTLSOptions(verifyCertificates: false)
            let connection = try await self.transport.connect(self.request(port, tls: tls))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("insecure"))
            #expect(await nextMessage(&events) == .text("insecure"))
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("a missing CA file is a .tlsFailure")
    func missingCAFile() async throws {
        let certificate = try TestCertificate.generate()
        defer { certificate.remove() }
        try await TestServer.run(tlsCertificate: certificate) { port in
            let tls = WebSocketTLSOptions(caFilePath: "/nonexistent/ca.pem")
            let error = try #require(await connectError(self.transport, self.request(port, tls: tls)))
            #expect(error.code == .tlsFailure, "\(error)")
        }
    }
}
