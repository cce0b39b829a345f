import Foundation
import JobSyncCore
import JobSyncTestSupport
import NIOConcurrencyHelpers
import RealtimeProtocol
import Testing
import WebSocketTransport

@testable import SupabaseRealtime

// MARK: - Fake transport

/// A connect attempt the test answers with ``accept()`` or ``reject(_:)``.
final class FakeConnectAttempt: Sendable {
    let request: WebSocketRequest
    private let outcome = NIOLockedValueBox<CheckedContinuation<FakeConnection, any Error>?>(nil)
    private let early = NIOLockedValueBox<Result<FakeConnection, WebSocketTransportError>?>(nil)

    init(request: WebSocketRequest) {
        self.request = request
    }

    func wait() async throws(WebSocketTransportError) -> FakeConnection {
        do {
            return try await withCheckedThrowingContinuation { continuation in
                let ready = self.early.withLockedValue { $0 }
                if let ready {
                    continuation.resume(with: ready.mapError { $0 as any Error })
                } else {
                    self.outcome.withLockedValue { $0 = continuation }
                }
            }
        } catch let error as WebSocketTransportError {
            throw error
        } catch {
            throw WebSocketTransportError(code: .internalError, message: "unexpected")
        }
    }

    private func complete(_ result: Result<FakeConnection, WebSocketTransportError>) {
        let continuation = self.early.withLockedValue { early -> CheckedContinuation<FakeConnection, any Error>? in
            early = result
            return self.outcome.withLockedValue { outcome in
                defer { outcome = nil }
                return outcome
            }
        }
        continuation?.resume(with: result.mapError { $0 as any Error })
    }

    /// Accepts the connection and returns the server side of it.
    @discardableResult
    func accept() -> FakeConnection {
        let connection = FakeConnection()
        self.complete(.success(connection))
        return connection
    }

    /// Refuses the connection.
    func reject(_ error: WebSocketTransportError) {
        self.complete(.failure(error))
    }
}

/// A transport whose connect attempts are handed to the test.
final class FakeTransport: WebSocketTransport {
    let attempts: AsyncStream<FakeConnectAttempt>
    private let attemptSink: AsyncStream<FakeConnectAttempt>.Continuation

    init() {
        (self.attempts, self.attemptSink) = AsyncStream.makeStream()
    }

    func connect(_ request: WebSocketRequest) async throws(WebSocketTransportError) -> any WebSocketConnection {
        let attempt = FakeConnectAttempt(request: request)
        self.attemptSink.yield(attempt)
        return try await attempt.wait()
    }
}

/// One in-memory connection: the test plays the server.
final class FakeConnection: WebSocketConnection {
    let events: WebSocketEvents
    private let eventSink: AsyncStream<WebSocketEvent>.Continuation
    /// What the client sent, then `nil` once it closed.
    let sent: AsyncStream<WebSocketMessage>
    private let sentSink: AsyncStream<WebSocketMessage>.Continuation
    private let closeInfo = NIOLockedValueBox<(code: UInt16, reason: String)?>(nil)

    init() {
        let (events, eventSink) = AsyncStream<WebSocketEvent>.makeStream()
        self.events = WebSocketEvents(events)
        self.eventSink = eventSink
        (self.sent, self.sentSink) = AsyncStream.makeStream()
    }

    func send(_ message: WebSocketMessage) async throws(WebSocketTransportError) {
        self.sentSink.yield(message)
    }

    func close(code: UInt16, reason: String) async {
        self.closeInfo.withLockedValue { $0 = $0 ?? (code, reason) }
        self.sentSink.finish()
        self.eventSink.yield(.closed(WebSocketClose(code: code, reason: reason, initiatedByPeer: false)))
        self.eventSink.finish()
    }

    /// The close the client started, if any.
    var clientClose: (code: UInt16, reason: String)? { self.closeInfo.withLockedValue { $0 } }

    /// Server → client text frame.
    func serverSend(_ text: String) {
        self.eventSink.yield(.message(.text(text)))
    }

    /// Server → client binary frame (vsn 2.0.0, §2.3).
    func serverSend(binary bytes: [UInt8]) {
        self.eventSink.yield(.message(.binary(bytes)))
    }

    /// The server drops or closes the connection.
    func serverClose(code: UInt16?, reason: String = "") {
        self.sentSink.finish()
        self.eventSink.yield(.closed(WebSocketClose(code: code, reason: reason, initiatedByPeer: true)))
        self.eventSink.finish()
    }
}

// MARK: - A scripted server on top of a fake connection

/// Reads client frames (vsn 2.0.0) and answers like the Realtime server.
struct ScriptedServer {
    let connection: FakeConnection
    var iterator: AsyncStream<WebSocketMessage>.Iterator
    let serializer = PhoenixSerializer(version: .v2)

    init(_ connection: FakeConnection) {
        self.connection = connection
        self.iterator = connection.sent.makeAsyncIterator()
    }

    /// The next client frame, decoded; `nil` once the client closed.
    mutating func next() async throws -> PhoenixMessage? {
        guard let message = await self.iterator.next() else { return nil }
        guard case .text(let text) = message else {
            Issue.record("binary frame from the client")
            return nil
        }
        return try self.serializer.decode(text: text)
    }

    /// The next client frame, which must have this event.
    mutating func expect(_ event: PhoenixEvent, sourceLocation: SourceLocation = #_sourceLocation) async throws
        -> PhoenixMessage
    {
        let message = try #require(await self.next(), sourceLocation: sourceLocation)
        #expect(message.event == event, "got \(message.event)", sourceLocation: sourceLocation)
        return message
    }

    func send(_ message: PhoenixMessage) {
        self.connection.serverSend(self.serializer.encode(message))
    }

    /// Replies ok to a join, echoing its bindings with ids 100, 101, …, then optionally sends the system ok.
    func acceptJoin(_ join: PhoenixMessage, subscribed: Bool = true, firstID: Int = 100) {
        let bindings = join.payload["config"]?["postgres_changes"]?.arrayValue ?? []
        let echoed: [JSONValue] = bindings.enumerated().map { index, binding in
            var object: JSONObject = ["id": .number(JSONNumber(firstID + index))]
            object.members += binding.objectValue?.members ?? []
            return .object(object)
        }
        self.reply(to: join, status: "ok", response: ["postgres_changes": .array(echoed)])
        if subscribed { self.subscribed(join) }
    }

    func subscribed(_ join: PhoenixMessage) {
        self.send(PhoenixMessage(
            joinRef: join.joinRef, ref: nil, topic: join.topic, event: .system,
            payload: .object([
                "channel": .string(String(join.topic.rawValue.dropFirst("realtime:".count))),
                "extension": .string("postgres_changes"), "message": .string("Subscribed to PostgreSQL"),
                "status": .string("ok"),
            ])))
    }

    func reply(to message: PhoenixMessage, status: String, response: JSONObject = [:]) {
        self.send(PhoenixMessage(
            joinRef: message.joinRef, ref: message.ref, topic: message.topic, event: .reply,
            payload: .object(["response": .object(response), "status": .string(status)])))
    }

    /// A postgres_changes INSERT on `topic` for binding ids `ids` with row id `rowID`.
    func insert(topic: Topic, ids: [Int], rowID: Int) {
        let data: JSONObject = [
            "columns": .array([]), "commit_timestamp": .string("2026-08-21T10:15:03.412Z"), "errors": .null,
            "record": .object(["id": .number(JSONNumber(rowID))]), "schema": .string("public"),
            "table": .string("jobs"), "type": .string("INSERT"),
        ]
        self.send(PhoenixMessage(
            joinRef: nil, ref: nil, topic: topic, event: .postgresChanges,
            payload: .object(["data": .object(data), "ids": .array(ids.map { .number(JSONNumber($0)) })])))
    }
}
