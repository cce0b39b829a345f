import Foundation
import Logging
import Testing

@testable import WebSocketTransport
import NIOConcurrencyHelpers

/// Collects events of a connection until `.closed`.
func nextMessage(_ iterator: inout WebSocketEvents.AsyncIterator) async -> WebSocketMessage? {
    guard case .message(let message)? = await iterator.next() else { return nil }
    return message
}

func drainToClose(_ iterator: inout WebSocketEvents.AsyncIterator) async -> WebSocketClose? {
    while let event = await iterator.next() {
        if case .closed(let close) = event { return close }
    }
    return nil
}

func connectError(
    _ transport: LWSWebSocketTransport,
    _ request: WebSocketRequest
) async -> WebSocketTransportError? {
    do {
        let connection = try await transport.connect(request)
        await connection.close(code: 1000, reason: "")
        return nil
    } catch {
        return error
    }
}

/// The threads of this process named `name` (`/proc/self/task/*/comm`).
func threadCount(named name: String) -> Int {
    let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
    return tasks.count { task in
        let comm = try? String(contentsOfFile: "/proc/self/task/\(task)/comm", encoding: .utf8)
        return comm?.trimmingCharacters(in: .newlines) == name
    }
}

@Suite("LWSWebSocketTransport over loopback", .serialized)
struct LWSTransportTests {
    let transport = LWSWebSocketTransport()

    func request(_ port: Int, _ path: String = "/ws", scheme: String = "ws") -> WebSocketRequest {
        WebSocketRequest(url: URL(string: "\(scheme)://127.0.0.1:\(port)\(path)")!)
    }

    @Test("echoes text and binary, preserving the message kind")
    func echo() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("hello ✓"))
            #expect(await nextMessage(&events) == .text("hello ✓"))
            try await connection.send(.binary([0, 1, 2, 255]))
            #expect(await nextMessage(&events) == .binary([0, 1, 2, 255]))
            try await connection.send(.text(""))
            #expect(await nextMessage(&events) == .text(""))
            await connection.close(code: 1000, reason: "done")
        }
    }

    @Test("sends extra handshake headers and keeps path and query")
    func headersAndQuery() async throws {
        try await TestServer.run { port in
            var request = self.request(port, "/ws?apikey=secret-key&vsn=1.0.0")
            request.headers = [("X-Client-Info", "jobsync/1.0"), ("Authorization", "Bearer t0k")]
            let connection = try await self.transport.connect(request)
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("cmd:header:X-Client-Info"))
            #expect(await nextMessage(&events) == .text("jobsync/1.0"))
            try await connection.send(.text("cmd:header:Authorization"))
            #expect(await nextMessage(&events) == .text("Bearer t0k"))
            try await connection.send(.text("cmd:uri"))
            #expect(await nextMessage(&events) == .text("/ws?apikey=secret-key&vsn=1.0.0"))
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("1 MiB and 4 MiB messages both ways", arguments: [1 << 20, 4 << 20])
    func largeMessages(size: Int) async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            let payload = TestPayload.bytes(size)
            try await connection.send(.binary(payload))
            #expect(await nextMessage(&events) == .binary(payload))
            let text = TestPayload.text(size)
            try await connection.send(.text(text))
            #expect(await nextMessage(&events) == .text(text))
            try await connection.send(.text("cmd:send-binary:\(size)"))
            #expect(await nextMessage(&events) == .binary(payload))
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("reassembles a message the server sends in several frames")
    func fragmented() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("cmd:send-fragmented:300000"))
            #expect(await nextMessage(&events) == .binary(TestPayload.bytes(300_000)))
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("an inbound message over the limit closes with 1009 and reports .messageTooLarge")
    func tooLarge() async throws {
        try await TestServer.run { port in
            var request = self.request(port)
            request.maxMessageSize = 1 << 20
            let connection = try await self.transport.connect(request)
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("cmd:send-binary:\(1 << 20)"))
            #expect(await nextMessage(&events)?.byteCountForTest == 1 << 20)
            try await connection.send(.text("cmd:send-binary:\((1 << 20) + 1)"))
            let close = try #require(await drainToClose(&events))
            #expect(close.code == 1009)
            #expect(close.initiatedByPeer == false)
            #expect(close.error?.code == .messageTooLarge)
            await #expect(throws: WebSocketTransportError.self) { try await connection.send(.text("late")) }
        }
    }

    @Test("server close with code and reason is reported")
    func serverClose() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("cmd:close:4001:going away now"))
            let close = try #require(await drainToClose(&events))
            #expect(close == WebSocketClose(code: 4001, reason: "going away now", initiatedByPeer: true))
            #expect(await events.next() == nil)
        }
    }

    @Test("client close completes the handshake and later sends fail with .notConnected")
    func clientClose() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            await connection.close(code: 1000, reason: "bye")
            let close = try #require(await drainToClose(&events))
            #expect(close == WebSocketClose(code: 1000, reason: "bye", initiatedByPeer: false))
            do {
                try await connection.send(.text("after close"))
                Issue.record("send after close succeeded")
            } catch let error as WebSocketTransportError {
                #expect(error.code == .notConnected)
            }
            await connection.close(code: 1000, reason: "again")  // idempotent, returns at once
        }
    }

    @Test("abrupt server drop reports code nil and .connectionLost")
    func abruptDrop() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            try await connection.send(.text("cmd:drop"))
            let close = try #require(await drainToClose(&events))
            #expect(close.code == nil)
            #expect(close.initiatedByPeer)
            #expect(close.error?.code == .connectionLost)
        }
    }

    @Test("connection refused on a closed port")
    func refused() async throws {
        // A bound socket that does not listen: connecting to it is refused.
        let socket = try SilentListener(listening: false)
        defer { socket.close() }
        let error = try #require(await connectError(self.transport, self.request(socket.port)))
        #expect(error.code == .connectionRefused, "\(error)")
    }

    @Test("DNS failure for a .invalid host")
    func dnsFailure() async throws {
        let request = WebSocketRequest(url: URL(string: "ws://nonexistent.invalid/socket?apikey=abc")!)
        let error = try #require(await connectError(self.transport, request))
        #expect(error.code == .dnsFailure, "\(error)")
        #expect(!error.description.contains("apikey"))
    }

    @Test("a header with a line break is rejected before connecting")
    func headerInjection() async throws {
        var request = WebSocketRequest(url: URL(string: "ws://127.0.0.1:1/")!)
        request.headers = [("X-Evil", "a\r\nHost: other")]
        let error = try #require(await connectError(self.transport, request))
        #expect(error.code == .invalidRequest)
    }

    @Test("invalid URL scheme is a typed error")
    func invalidURL() async throws {
        let error = try #require(await connectError(self.transport, WebSocketRequest(url: URL(string: "http://x/")!)))
        #expect(error.code == .invalidURL)
    }

    @Test("handshake rejected with the HTTP status", arguments: [401, 429])
    func handshakeRejected(status: Int) async throws {
        try await TestServer.runPlainHTTP { port in
            let error = try #require(
                await connectError(self.transport, self.request(port, "/reject/\(status)?apikey=k"))
            )
            #expect(error.code == .handshakeRejected)
            #expect(error.httpStatus == status, "\(error)")
            #expect(!error.description.contains("apikey"))
        }
    }

    @Test("many sequential connects and closes do not leak threads")
    func noThreadLeak() async throws {
        try await TestServer.run { port in
            let warmup = try await self.transport.connect(self.request(port))
            #expect(threadCount(named: LWSConnection.serviceThreadName) >= 1)  // its service thread, by that name
            await warmup.close(code: 1000, reason: "")
            // Only the transport's service threads are counted, but other suites of this process run beside this
            // one and open and close connections of their own: the loop is long enough that a leak (one thread
            // per connection, +100) stands far above what they can add or take away meanwhile.
            let before = threadCount(named: LWSConnection.serviceThreadName)
            for index in 0..<100 {
                let connection = try await self.transport.connect(self.request(port))
                var events = connection.events.makeAsyncIterator()
                try await connection.send(.text("n\(index)"))
                #expect(await nextMessage(&events) == .text("n\(index)"))
                await connection.close(code: 1000, reason: "")
            }
            // A detached service thread may still be returning from its function when close() resumes.
            let after = threadCount(named: LWSConnection.serviceThreadName)
            #expect(after <= before + 25, "service threads before: \(before), after 100 connections: \(after)")
        }
    }

    @Test("concurrent sends are each delivered once and sends from one task keep their order")
    func concurrentSends() async throws {
        try await TestServer.run { port in
            let connection = try await self.transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for task in 0..<4 {
                    group.addTask {
                        for index in 0..<50 { try await connection.send(.text("\(task):\(index)")) }
                    }
                }
                try await group.waitForAll()
            }
            var lastIndex = [Int](repeating: -1, count: 4)
            for _ in 0..<200 {
                guard case .text(let text) = await nextMessage(&events) else {
                    Issue.record("missing echo")
                    break
                }
                let parts = text.split(separator: ":").compactMap { Int($0) }
                #expect(parts[1] == lastIndex[parts[0]] + 1)
                lastIndex[parts[0]] = parts[1]
            }
            #expect(lastIndex == [49, 49, 49, 49])
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("a slow consumer gets every message (reading pauses instead of buffering without bound)")
    func backPressure() async throws {
        let transport = LWSWebSocketTransport(maxBufferedInboundMessages: 4, maxBufferedInboundBytes: 1 << 20)
        try await TestServer.run { port in
            let connection = try await transport.connect(self.request(port))
            var events = connection.events.makeAsyncIterator()
            for index in 0..<100 { try await connection.send(.binary(TestPayload.bytes(10_000 + index))) }
            for index in 0..<100 {
                await Task.yield()
                #expect(await nextMessage(&events) == .binary(TestPayload.bytes(10_000 + index)))
            }
            let lws = try #require(connection as? LWSConnection)
            #expect(lws.shared.withLockedValue { $0.receivePauseCount } > 0)
            #expect(lws.shared.withLockedValue { $0.bufferedMessages } == 0)
            await connection.close(code: 1000, reason: "")
        }
    }

    @Test("cancelling the connecting task ends the connect with .cancelled")
    func connectCancelled() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        var request = self.request(listener.port)
        request.connectTimeout = .seconds(60)
        let transport = self.transport
        let task = Task { await connectError(transport, request) }
        task.cancel()
        let error = try #require(await task.value)
        #expect(error.code == .cancelled, "\(error)")
    }

    @Test("connect times out against a server that never answers the upgrade")
    func connectTimeout() async throws {
        let listener = try SilentListener()
        defer { listener.close() }
        var request = self.request(listener.port)
        request.connectTimeout = .milliseconds(300)
        let error = try #require(await connectError(self.transport, request))
        #expect(error.code == .timeout)
    }
}

extension WebSocketMessage {
    var byteCountForTest: Int {
        switch self {
        case .text(let text): text.utf8.count
        case .binary(let bytes): bytes.count
        }
    }
}

/// A TCP listener on 127.0.0.1 that accepts (through the kernel backlog) but never reads or answers.
struct SilentListener {
    let fd: Int32
    let port: Int

    init(listening: Bool = true) throws {
        self.fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        let fd = self.fd
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard bound == 0, !listening || listen(fd, 8) == 0 else { throw CocoaError(.fileWriteUnknown) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        self.port = Int(UInt16(bigEndian: address.sin_port))
    }

    func close() {
        _ = Glibc.close(self.fd)
    }
}
