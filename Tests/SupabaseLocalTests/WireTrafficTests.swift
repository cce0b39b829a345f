import Testing

@testable import SupabaseLocal

/// The server's byte counts per kind of connection (what the benchmarks' cost table reads).
@Suite("Wire traffic")
struct WireTrafficTests {
    /// A WebSocket frame's header on the wire for a payload of `count` bytes (RFC 6455 §5.2).
    static func frameHeader(_ count: Int, masked: Bool) -> Int {
        (count < 126 ? 2 : count < 65_536 ? 4 : 10) + (masked ? 4 : 0)
    }

    @Test("REST: requests and bytes both ways counted; no WebSocket traffic")
    func rest() async throws {
        try await SupabaseLocal.withRunning { stack in
            _ = try await httpRequest(stack, "GET", "/rest/v1/jobs?select=*", headers: anonHeaders(stack))
            _ = try await httpRequest(stack, "GET", "/rest/v1/jobs?select=id", headers: anonHeaders(stack))
            let traffic = stack.wireTraffic
            #expect(traffic.restRequests == 2)
            #expect(traffic.rest.bytesIn > "GET /rest/v1/jobs?select=* HTTP/1.1\r\n".utf8.count * 2)
            #expect(traffic.rest.bytesOut > "HTTP/1.1 200 OK\r\n".utf8.count * 2)
            #expect(traffic.websocket == WireTraffic.Counts())
        }
    }

    @Test("WebSocket: an upgraded connection counts as WebSocket; frames counted with their headers, exactly")
    func webSocket() async throws {
        try await SupabaseLocal.withRunning { stack in
            try await withTestSocket(stack) { socket in
                socket.send(#"[null,"1","phoenix","heartbeat",{}]"#)
                _ = try #require(await socket.receive())
                let before = stack.wireTraffic
                #expect(before.websocket.connections == 1 && before.rest.connections == 0)
                #expect(before.restRequests == 0)
                socket.send(RealtimeIntegrationTests.join)
                let reply = try #require(await socket.receive())
                let system = try #require(await socket.receive())
                let after = stack.wireTraffic
                let sent = RealtimeIntegrationTests.join.utf8.count
                #expect(after.websocket.bytesIn - before.websocket.bytesIn == sent + Self.frameHeader(sent, masked: true))
                let received = [reply, system].map { $0.utf8.count + Self.frameHeader($0.utf8.count, masked: false) }
                #expect(after.websocket.bytesOut - before.websocket.bytesOut == received.reduce(0, +))
                #expect(after.rest == before.rest)
            }
        }
    }
}
