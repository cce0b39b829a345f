// libFuzzer entry for SupabaseREST's response decoding. Built by `Fuzz/run.sh rest` together with
// Sources/SupabaseREST/*.swift into one module (swift-log is compiled as a separate `Logging` module), so it needs
// no import of SupabaseREST. The first input byte picks an HTTP status; the rest is the body / header text:
// - `PostgRESTClient.decodeRows`: must throw or return one row per array element;
// - `RESTError.fromResponse` (PostgREST/gateway error bodies): must never trap; in its message every `apikey=`
//   (any case) is followed by `<redacted>` or by no value at all (JobSyncCore's `Redaction` removes the value, not
//   the name);
// - `RetryAfter.parse`: must never trap; a result lies in `0...RetryAfter.maximum`;
// - `JSONValue.parse` → `serialized()` → `JSONValue.parse` is the identity on the parsed value.
// Violated invariants are `precondition`s, so they show up as crashes the fuzzer reports.
import Foundation
import JobSyncCore

private let statuses = [200, 400, 401, 403, 404, 406, 409, 429, 500, 502, 503, 504]
private let fixedNow = Date(timeIntervalSince1970: 1_764_000_000)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzREST(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    guard let selector = bytes.first else { return 0 }
    let body = Array(bytes.dropFirst())
    let status = statuses[Int(selector) % statuses.count]

    let parsed = try? JSONValue.parse(body)
    if let parsed {
        precondition((try? JSONValue.parse(parsed.serialized())) == parsed, "JSON round trip changed the value")
    }
    if let rows = try? PostgRESTClient.decodeRows(HTTPResponse(status: 200, body: body)) {
        switch parsed {
        case .array(let values)?: precondition(rows.count == values.count, "row count differs from the array")
        case .object?: precondition(rows.count == 1, "a single object must give one row")
        default: preconditionFailure("decodeRows accepted a body that is neither an array nor an object")
        }
    }
    let error = RESTError.fromResponse(status: status, body: body, retryAfter: nil)
    let message = error.message.lowercased()
    var rest = message[...]
    while let range = rest.range(of: "apikey=") {
        rest = rest[range.upperBound...]
        let value = rest.drop(while: { $0 == " " })
        let empty = value.first.map { $0.isWhitespace || "&#\"',;)]}>".contains($0) } ?? true
        precondition(empty || value.hasPrefix("<redacted>"), "an apikey= value survived sanitizing")
    }
    _ = error.description
    _ = error.isTransient

    let text = String(decoding: body, as: UTF8.self)
    if let delay = RetryAfter.parse(text, now: fixedNow) {
        precondition(delay >= .zero && delay <= RetryAfter.maximum, "Retry-After out of range")
    }
    return 0
}
