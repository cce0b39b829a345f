import Foundation
import Testing
import WebSocketTransport

@Suite("InMemoryWebSocketTransport")
struct InMemoryTransportTests {
    let url = URL(string: "ws://localhost/realtime/v1/websocket?apikey=k&vsn=1.0.0")!

    @Test("messages flow both ways and the server sees the request")
    func roundTrip() async throws {
        let transport = InMemoryWebSocketTransport()
        var servers = transport.serverConnections.makeAsyncIterator()
        let connection = try await transport.connect(WebSocketRequest(url: self.url, headers: [("X-A", "1")]))
        let server = try #require(await servers.next())
        #expect(server.request.url == self.url)
        #expect(server.request.headers.first?.value == "1")
        try await connection.send(.text("hello"))
        try await connection.send(.binary([1, 2]))
        var inbound = server.inbound.makeAsyncIterator()
        #expect(await inbound.next() == .message(.text("hello")))
        #expect(await inbound.next() == .message(.binary([1, 2])))
        #expect(server.send(.text("welcome")))
        var events = connection.events.makeAsyncIterator()
        #expect(await events.next() == .message(.text("welcome")))
        #expect(transport.requests.count == 1)
    }

    @Test("server close with a code ends the client's events with that code")
    func serverClose() async throws {
        let transport = InMemoryWebSocketTransport()
        var servers = transport.serverConnections.makeAsyncIterator()
        let connection = try await transport.connect(WebSocketRequest(url: self.url))
        let server = try #require(await servers.next())
        server.send(.text("last"))
        server.close(code: 4000, reason: "bye")
        var events = connection.events.makeAsyncIterator()
        #expect(await events.next() == .message(.text("last")))
        #expect(await events.next() == .closed(WebSocketClose(code: 4000, reason: "bye", initiatedByPeer: true)))
        #expect(await events.next() == nil)
        await #expect(throws: WebSocketTransportError.self) { try await connection.send(.text("x")) }
        #expect(server.send(.text("after")) == false)
    }

    @Test("drop reports a lost connection without a code")
    func drop() async throws {
        let transport = InMemoryWebSocketTransport()
        var servers = transport.serverConnections.makeAsyncIterator()
        let connection = try await transport.connect(WebSocketRequest(url: self.url))
        let server = try #require(await servers.next())
        server.drop()
        var events = connection.events.makeAsyncIterator()
        guard case .closed(let close)? = await events.next() else {
            Issue.record("expected .closed")
            return
        }
        #expect(close.code == nil)
        #expect(close.error?.code == .connectionLost)
        #expect(server.isClosed)
    }

    @Test("client close is seen by the server and is idempotent")
    func clientClose() async throws {
        let transport = InMemoryWebSocketTransport()
        var servers = transport.serverConnections.makeAsyncIterator()
        let connection = try await transport.connect(WebSocketRequest(url: self.url))
        let server = try #require(await servers.next())
        await connection.close(code: 1000, reason: "done")
        await connection.close(code: 1001, reason: "again")
        var inbound = server.inbound.makeAsyncIterator()
        #expect(await inbound.next() == .closed(WebSocketClose(code: 1000, reason: "done", initiatedByPeer: true)))
        var events = connection.events.makeAsyncIterator()
        #expect(await events.next() == .closed(WebSocketClose(code: 1000, reason: "done", initiatedByPeer: false)))
    }

    @Test("refused connects fail with the planned error, in order, then connects succeed again")
    func refuse() async throws {
        let transport = InMemoryWebSocketTransport()
        transport.rejectNextConnect(httpStatus: 429)
        transport.failNextConnect(with: WebSocketTransportError(code: .connectionRefused, message: "refused"))
        do {
            _ = try await transport.connect(WebSocketRequest(url: self.url))
            Issue.record("connect succeeded")
        } catch {
            #expect(error.code == .handshakeRejected)
            #expect(error.httpStatus == 429)
        }
        await #expect(throws: WebSocketTransportError(code: .connectionRefused, message: "refused")) {
            _ = try await transport.connect(WebSocketRequest(url: self.url))
        }
        _ = try await transport.connect(WebSocketRequest(url: self.url))
        #expect(transport.requests.count == 3)
    }

    @Test("a server message over the client's limit closes with 1009 and .messageTooLarge")
    func tooLarge() async throws {
        let transport = InMemoryWebSocketTransport()
        var servers = transport.serverConnections.makeAsyncIterator()
        let connection = try await transport.connect(WebSocketRequest(url: self.url, maxMessageSize: 4))
        let server = try #require(await servers.next())
        #expect(server.send(.binary([1, 2, 3, 4])))
        #expect(server.send(.binary([1, 2, 3, 4, 5])) == false)
        var events = connection.events.makeAsyncIterator()
        #expect(await events.next() == .message(.binary([1, 2, 3, 4])))
        guard case .closed(let close)? = await events.next() else {
            Issue.record("expected .closed")
            return
        }
        #expect(close.code == 1009)
        #expect(close.error?.code == .messageTooLarge)
    }

    @Test("a non-WebSocket scheme is rejected")
    func invalidScheme() async throws {
        let transport = InMemoryWebSocketTransport()
        await #expect(throws: WebSocketTransportError.self) {
            _ = try await transport.connect(WebSocketRequest(url: URL(string: "https://x/")!))
        }
    }
}
