import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Client frames encoded byte-exact against realtime-protocol.md.
@Suite("Codec: client frames")
struct CodecEncodeTests {
    let v1 = PhoenixSerializer(version: .v1)
    let v2 = PhoenixSerializer(version: .v2)

    @Test("§3 heartbeat, vsn 2.0.0, byte-exact")
    func heartbeatV2() {
        #expect(self.v2.encode(PhoenixSerializer.heartbeat(ref: "26")) == #"[null,"26","phoenix","heartbeat",{}]"#)
    }

    @Test("§3 heartbeat, vsn 1.0.0: the doc's keys plus an explicit null join_ref")
    func heartbeatV1() throws {
        let text = self.v1.encode(PhoenixSerializer.heartbeat(ref: "26"))
        #expect(text == #"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"26","join_ref":null}"#)
        // Same JSON content as the doc's frame, once the null join_ref is ignored.
        let documented = try JSONValue.parse(#"{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"26"}"#)
        var parsed = try #require(try JSONValue.parse(text).objectValue)
        parsed["join_ref"] = nil
        #expect(JSONValue.object(parsed) == documented)
    }

    @Test("§2.1 join, vsn 1.0.0, byte-exact with the doc's key order")
    func joinV1() {
        let message = PhoenixMessage(
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .join,
            payload: .object(["config": .object([:])]))
        let expected =
            #"{"topic":"realtime:todos-sync","event":"phx_join","payload":{"config":{}},"ref":"3","join_ref":"3"}"#
        #expect(self.v1.encode(message) == expected)
    }

    @Test("§2.2 join, vsn 2.0.0, byte-exact")
    func joinV2Minimal() {
        let message = PhoenixMessage(
            joinRef: "3", ref: "3", topic: "realtime:todos-sync", event: .join,
            payload: .object(["config": .object([:])]))
        #expect(self.v2.encode(message) == #"["3","3","realtime:todos-sync","phx_join",{"config":{}}]"#)
    }

    @Test("§4.2 realtime-js join payload, vsn 2.0.0, byte-exact")
    func joinV2Full() {
        let payload = JoinPayload(
            postgresChanges: [
                PostgresChangeBinding(
                    event: .all, schema: "public", table: "todos",
                    filter: "user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11")
            ],
            accessToken: "eyJhbGciOi...")
        let message = PhoenixSerializer.join(topic: .realtime("todos-sync"), joinRef: "3", payload: payload)
        let expected =
            #"["3","3","realtime:todos-sync","phx_join",{"config":{"broadcast":{"ack":false,"self":false},"#
            + #""presence":{"key":"","enabled":false},"postgres_changes":[{"event":"*","schema":"public","#
            + #""table":"todos","filter":"user_id=eq.8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11"}],"private":false},"#
            + #""access_token":"eyJhbGciOi..."}]"#
        #expect(self.v2.encode(message) == expected)
    }

    @Test("§4.2 + §15.6 binding without a filter omits the key; events are upper-case")
    func bindingWithoutFilter() {
        let events: [(PostgresChangeEvent, String)] = [
            (.all, "*"), (.insert, "INSERT"), (.update, "UPDATE"), (.delete, "DELETE"),
        ]
        for (event, wire) in events {
            let binding = PostgresChangeBinding(event: event, schema: "public", table: "jobs")
            #expect(binding.jsonValue.serialized() == #"{"event":"\#(wire)","schema":"public","table":"jobs"}"#)
        }
    }

    @Test("§4.2 join without access token omits the key")
    func joinWithoutToken() {
        let text = JoinPayload(isPrivate: true).jsonValue.serialized()
        #expect(
            text
                == #"{"config":{"broadcast":{"ack":false,"self":false},"presence":{"key":"","enabled":false},"#
                + #""postgres_changes":[],"private":true}}"#)
    }

    @Test("§8.1 access_token push, vsn 2.0.0, byte-exact")
    func accessTokenV2() {
        let message = PhoenixSerializer.accessToken(
            topic: "realtime:todos-sync", joinRef: "3", ref: "41", token: "eyJhbGciOi...new")
        #expect(
            self.v2.encode(message)
                == #"["3","41","realtime:todos-sync","access_token",{"access_token":"eyJhbGciOi...new"}]"#)
    }

    @Test("§9.1 phx_leave, vsn 2.0.0, byte-exact")
    func leaveV2() {
        let message = PhoenixSerializer.leave(topic: "realtime:todos-sync", joinRef: "3", ref: "57")
        #expect(self.v2.encode(message) == #"["3","57","realtime:todos-sync","phx_leave",{}]"#)
    }

    @Test("§2.1 V1 encoding always writes both ref keys")
    func v1RefsAlwaysPresent() throws {
        let message = PhoenixMessage(joinRef: nil, ref: nil, topic: "t", event: .unknown("custom"), payload: .null)
        let object = try #require(try JSONValue.parse(self.v1.encode(message)).objectValue)
        #expect(object.keys == ["topic", "event", "payload", "ref", "join_ref"])
        #expect(object["ref"] == .null)
        #expect(object["join_ref"] == .null)
    }

    @Test("§2.2 strings with quotes, control characters and non-ASCII are escaped and round-trip")
    func escapingRoundTrip() throws {
        let topic = Topic(rawValue: "realtime:a\"b\\c\n\u{01}é😀")
        let message = PhoenixMessage(joinRef: "1", ref: "2", topic: topic, event: .broadcast, payload: .object([:]))
        let text = self.v2.encode(message)
        #expect(text.contains(#"a\"b\\c\n\u0001é😀"#))
        #expect(try self.v2.decode(text: text) == message)
    }
}
