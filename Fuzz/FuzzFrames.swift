// libFuzzer entry for the frame decoders. Built by Fuzz/run.sh together with Sources/RealtimeProtocol/*.swift
// into one module (so it needs no import of RealtimeProtocol), against JobSyncCore (the JSON parser, instrumented
// too) as a module of its own. Each input is tried as JSON, as a vsn 1.0.0 and a vsn 2.0.0 text frame and as a
// vsn 2.0.0 binary frame. Decoders must never trap; on success, invariants are checked with `precondition`, so
// a violated invariant shows up as a crash the fuzzer reports.

import JobSyncCore

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrames(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    // JSON: parse → serialize → parse is the identity on the parsed value.
    if let value = try? JSONValue.parse(bytes) {
        let text = value.serialized()
        precondition((try? JSONValue.parse(text)) == value, "JSON round trip changed the value")
    }
    for version in ProtocolVersion.allCases {
        let serializer = PhoenixSerializer(version: version)
        if let message = try? serializer.decode(textBytes: bytes) {
            let encoded = serializer.encode(message)
            precondition((try? serializer.decode(text: encoded)) == message, "frame round trip changed the message")
            exercisePayloads(message)
        }
    }
    let v2 = PhoenixSerializer(version: .v2)
    if let message = try? v2.decode(binary: bytes) {
        exercisePayloads(message)
    }
    return 0
}

private func exercisePayloads(_ message: PhoenixMessage) {
    let payload = message.payload
    if let reply = try? Reply(payload: payload) {
        _ = reply.errorReason?.kind
        _ = try? JoinReply(response: reply.response)
    }
    if let system = try? SystemMessage(payload: payload) {
        _ = system.errorReason.kind
    }
    if let changes = try? PostgresChangesMessage(payload: payload) {
        _ = changes.change.isTruncated
        if let text = changes.change.commitTimestamp {
            _ = Timestamp.millisecondsSinceEpoch(text)
        }
    }
}
