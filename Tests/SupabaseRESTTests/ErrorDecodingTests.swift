import Foundation
import JobSyncCore
import Testing

@testable import SupabaseREST

@Suite("PostgREST error bodies (§11.2) and Retry-After")
struct ErrorDecodingTests {
    @Test("PGRST116 body decodes into code, details, hint and message")
    func pgrst116() {
        let body =
            #"{"code":"PGRST116","details":"The result contains 0 rows","hint":null,"#
            + #""message":"Cannot coerce the result to a single JSON object"}"#
        let error = RESTError.fromResponse(status: 406, body: Array(body.utf8), retryAfter: nil)
        #expect(error.code == .httpError)
        #expect(error.serverCode == "PGRST116")
        #expect(error.details == "The result contains 0 rows")
        #expect(error.hint == nil)
        #expect(error.message == "Cannot coerce the result to a single JSON object")
        #expect(error.httpStatus == 406)
    }

    @Test("status mapping: 401 PGRST303 → jwtExpired, other 401 → unauthorized, 503/504 → unavailable")
    func statusMapping() {
        func code(_ status: Int, _ body: String) -> RESTError.Code {
            RESTError.fromResponse(status: status, body: Array(body.utf8), retryAfter: nil).code
        }
        #expect(code(401, #"{"code":"PGRST303","message":"JWT expired"}"#) == .jwtExpired)
        #expect(code(401, #"{"message":"No API key found in request"}"#) == .unauthorized)
        #expect(code(503, #"{"code":"PGRST001","message":"db down"}"#) == .unavailable)
        #expect(code(504, "gateway timeout <html>") == .unavailable)
        #expect(code(429, "slow down") == .rateLimited)
        let sqlstate = RESTError.fromResponse(
            status: 400,
            body: Array(
                #"{"code":"22P02","details":null,"hint":null,"message":"invalid input syntax for type uuid"}"#.utf8),
            retryAfter: nil)
        #expect(sqlstate.serverCode == "22P02")
        #expect(sqlstate.code == .httpError)
    }

    @Test("server texts echoing the key, the token or a JWT are redacted")
    func redaction() async throws {
        let body = #"{"code":"X","message":"bad key anon-key for token secret-token","hint":"\"eyJa.eyJb.c\""}"#
        let transport = ScriptedTransport([rows(body, status: 400)])
        let client = try makeClient(transport, token: { _ in "secret-token" })
        do {
            _ = try await client.fetch(PostgRESTQuery(table: "jobs"))
            Issue.record("expected an error")
        } catch {
            #expect(!error.description.contains("anon-key"))
            #expect(!error.description.contains("secret-token"))
            #expect(!(error.hint ?? "").contains("eyJ"))
            #expect(error.message.contains("<redacted>"))
        }
    }

    @Test("a 429 through the client carries Retry-After seconds")
    func rateLimitedThroughClient() async throws {
        let transport = ScriptedTransport([rows("Too Many Requests", status: 429, headers: ["Retry-After": "7"])])
        let client = try makeClient(transport)
        do {
            _ = try await client.fetch(PostgRESTQuery(table: "jobs"))
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .rateLimited)
            #expect(error.retryAfter == .seconds(7))
            #expect(error.isTransient)
        }
    }

    @Test("Retry-After: seconds, IMF-fixdate, RFC 850, asctime, past dates and garbage")
    func retryAfterParsing() {
        let now = Date(timeIntervalSince1970: 784_111_777 - 60)  // 60 s before Sun, 06 Nov 1994 08:49:37 GMT
        #expect(RetryAfter.parse("120", now: now) == .seconds(120))
        #expect(RetryAfter.parse(" 0 ", now: now) == .zero)
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:49:37 GMT", now: now) == .seconds(60))
        #expect(RetryAfter.parse("Sunday, 06-Nov-94 08:49:37 GMT", now: now) == .seconds(60))
        #expect(RetryAfter.parse("Sun Nov  6 08:49:37 1994", now: now) == .seconds(60))
        #expect(RetryAfter.parse("Sun, 06 Nov 1994 08:48:00 GMT", now: now) == .zero)
        #expect(RetryAfter.parse("99999999999999999999999", now: now) == RetryAfter.maximum)
        #expect(RetryAfter.parse("soon", now: now) == nil)
        #expect(RetryAfter.parse("-5", now: now) == nil)
    }

    @Test("a 2xx body that is not a JSON array of objects is undecodableBody")
    func undecodable() {
        #expect(throws: RESTError.self) { try PostgRESTClient.decodeRows(rows("<html>")) }
        #expect(throws: RESTError.self) { try PostgRESTClient.decodeRows(rows("[1,2]")) }
        #expect((try? PostgRESTClient.decodeRows(rows(#"[{"a":1}]"#)))?.count == 1)
    }
}

@Suite("Rows are parsed once by the core parser, numbers kept exact")
struct RowDecodingTests {
    @Test("int8 beyond 2^53 and numerics are kept as text; member order and escapes survive")
    func exactNumbers() throws {
        let body = #"[{"id":9007199254740993,"c":0.1234567890123456789,"s":"a\"\u00e9\ud83d\ude00\n"}]"#
        let rows = try PostgRESTClient.decodeRows(HTTPResponse(status: 200, body: Array(body.utf8)))
        let row = try #require(rows.first)
        #expect(row["id"] == .number(JSONNumber(text: "9007199254740993")))
        #expect(row["id"]?.numberValue?.int64 == 9_007_199_254_740_993)
        #expect(row["c"] == .number(JSONNumber(text: "0.1234567890123456789")))
        #expect(row["s"] == .string("a\"é😀\n"))
        #expect(row.keys == ["id", "c", "s"])
    }

    @Test("malformed JSON and absurd nesting are undecodableBody, with the byte offset and without the body")
    func malformed() throws {
        for text in ["", "{", "[1,]", "{\"a\" 1}", "01", "1.", "\"\u{01}\"", "tru", "[1] x", "\"\\ud800\""] {
            let error = try #require(throws: RESTError.self) {
                try PostgRESTClient.decodeRows(HTTPResponse(status: 200, body: Array(text.utf8)))
            }
            #expect(error.code == .undecodableBody, "\(text)")
        }
        let deep = String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)
        let error = try #require(throws: RESTError.self) {
            try PostgRESTClient.decodeRows(HTTPResponse(status: 200, body: Array(deep.utf8)))
        }
        #expect(error.message == "the response body is not JSON (nesting deeper than 512 at byte offset 512)")
    }
}
