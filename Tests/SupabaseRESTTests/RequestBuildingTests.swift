import Foundation
import JobSyncCore
import NIOConcurrencyHelpers
import Testing

@testable import SupabaseREST

/// A transport that answers from a script and records every request.
final class ScriptedTransport: HTTPTransport {
    private let state: NIOLockedValueBox<(responses: [HTTPResponse], requests: [HTTPRequest])>

    init(_ responses: [HTTPResponse]) {
        self.state = NIOLockedValueBox((responses, []))
    }

    var requests: [HTTPRequest] { self.state.withLockedValue { $0.requests } }

    func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
        let next: HTTPResponse? = self.state.withLockedValue { state in
            state.requests.append(request)
            return state.responses.isEmpty ? nil : state.responses.removeFirst()
        }
        guard let next else { throw RESTError(code: .transport, message: "script exhausted") }
        return next
    }
}

func rows(_ text: String, status: Int = 200, headers: [String: String] = [:]) -> HTTPResponse {
    HTTPResponse(status: status, headers: headers, body: Array(text.utf8))
}

func makeClient(
    _ transport: ScriptedTransport,
    token: PostgRESTClient.AccessTokenProvider? = nil,
    pageSize: Int = 1000
) throws -> PostgRESTClient {
    try PostgRESTClient(
        configuration: .init(
            baseURL: "http://127.0.0.1:54321/rest/v1/",
            apiKey: "anon-key",
            accessToken: token,
            pageSize: pageSize,
            transport: transport
        )
    )
}

@Suite("PostgREST request building (§11.1)")
struct RequestBuildingTests {
    @Test("in.(…) of UUIDs is unquoted and the URL is exact")
    func inFilterOfUUIDs() throws {
        let client = try makeClient(ScriptedTransport([]))
        let query = PostgRESTQuery(
            table: "jobs",
            filters: [
                .init("id", .in(["2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11"]))
            ]
        )
        let request = try client.request(for: query, bearer: "tok")
        #expect(
            request.url
                == "http://127.0.0.1:54321/rest/v1/jobs?select=*&id=in.(2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f,"
                + "8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11)"
        )
        #expect(request.headers["apikey"] == "anon-key")
        #expect(request.headers["Authorization"] == "Bearer tok")
        #expect(request.headers["Accept"] == "application/json")
    }

    @Test("§11.1 reserved characters are double-quoted inside in.(…), with \" and \\ escaped")
    func reservedCharactersQuoted() {
        let filter = PostgRESTFilter("name", .in(["Hebdon,John", "a.b", "plain", "say \"hi\"", "back\\slash", ""]))
        #expect(filter.queryValue == #"in.("Hebdon,John","a.b",plain,"say \"hi\"","back\\slash","")"#)
        #expect(percentEncode(filter.queryValue).hasPrefix("in.(%22Hebdon,John%22,%22a.b%22,plain,"))
    }

    @Test("§11.1 a + in a timestamp offset is sent as %2B; order, limit and offset follow the filters")
    func timestampPlusEncoded() throws {
        let client = try makeClient(ScriptedTransport([]))
        let query = PostgRESTQuery(
            table: "jobs",
            filters: [.init("updated_at", .gte("2026-08-21T10:15:03.401882+00:00"))],
            order: [.init("updated_at"), .init("id")],
            limit: 500,
            offset: 1000
        )
        let request = try client.request(for: query, bearer: "tok")
        #expect(
            request.url
                == "http://127.0.0.1:54321/rest/v1/jobs?select=*&updated_at=gte.2026-08-21T10:15:03.401882%2B00:00"
                + "&order=updated_at.asc,id.asc&limit=500&offset=1000"
        )
    }

    @Test("every scalar operator renders as PostgREST expects")
    func scalarOperators() {
        #expect(PostgRESTFilter("a", .eq("1")).queryValue == "eq.1")
        #expect(PostgRESTFilter("a", .neq("x y")).queryValue == "neq.x y")
        #expect(PostgRESTFilter("a", .gt("1")).queryValue == "gt.1")
        #expect(PostgRESTFilter("a", .lt("1")).queryValue == "lt.1")
        #expect(PostgRESTFilter("a", .lte("1")).queryValue == "lte.1")
        #expect(PostgRESTFilter("a", .isNull).queryValue == "is.null")
        #expect(percentEncode("x y&z=1#") == "x%20y%26z%3D1%23")
        #expect(percentEncode("é") == "%C3%A9")
    }

    @Test("an in.(…) over 100 values, an empty one, or a bad table name is refused before any request")
    func invalidQueries() async throws {
        let transport = ScriptedTransport([])
        let client = try makeClient(transport)
        let tooMany = PostgRESTQuery(table: "jobs", filters: [.init("id", .in((0...100).map(String.init)))])
        await #expect(throws: RESTError.self) { try await client.fetch(tooMany) }
        let empty = PostgRESTQuery(table: "jobs", filters: [.init("id", .in([]))])
        #expect(throws: RESTError.self) { try empty.validate() }
        let badTable = PostgRESTQuery(table: "jobs?apikey=x")
        #expect(throws: RESTError.self) { try badTable.validate() }
        #expect(transport.requests.isEmpty)
    }

    @Test("a schema is asked for with Accept-Profile (PostgREST schema switching); none without one; bad names refused")
    func schemaProfile() async throws {
        let transport = ScriptedTransport([rows("[]")])
        let client = try makeClient(transport)
        let plain = try client.request(for: PostgRESTQuery(table: "jobs"), bearer: "tok")
        #expect(plain.headers["Accept-Profile"] == nil)
        _ = try await client.fetchAll(
            PostgRESTQuery(table: "jobs", schema: "app"), orderedBy: "updated_at", key: "id", maximumRows: 10)
        #expect(transport.requests.map { $0.headers["Accept-Profile"] } == ["app"])  // kept on keyset pages
        #expect(transport.requests.first?.url == "http://127.0.0.1:54321/rest/v1/jobs?select=*&order=updated_at.asc,id.asc&limit=10")
        #expect(throws: RESTError.self) { try PostgRESTQuery(table: "jobs", schema: "app\r\nX: y").validate() }
        #expect(throws: RESTError.self) { try PostgRESTQuery(table: "jobs", schema: "").validate() }
    }

    @Test("a bad base URL, a missing key or a page size over 1,000 is a typed error")
    func invalidConfiguration() {
        #expect(throws: RESTError.self) {
            try PostgRESTClient(configuration: .init(baseURL: "ftp://x/rest/v1", apiKey: "k"))
        }
        #expect(throws: RESTError.self) {
            try PostgRESTClient(configuration: .init(baseURL: "http://x/rest/v1", apiKey: ""))
        }
        #expect(throws: RESTError.self) {
            try PostgRESTClient(configuration: .init(baseURL: "http://x/rest/v1", apiKey: "k", pageSize: 1001))
        }
    }
}

@Suite("PostgREST paging and auth")
struct PagingAndAuthTests {
    /// The query parameters after `select=*`, decoded, for reading request sequences.
    private func parameters(_ request: HTTPRequest) -> String {
        let query = request.url.components(separatedBy: "?").last ?? ""
        return (query.removingPercentEncoding ?? query).components(separatedBy: "&").dropFirst().joined(separator: "&")
    }

    @Test("fetchAll pages with a keyset cursor (ties by key, then past the value), never offset")
    func keysetPages() async throws {
        let transport = ScriptedTransport([
            rows(#"[{"id":"1","u":"a"},{"id":"2","u":"b"}]"#),  // full: rows tied at b may follow
            rows("[]"),  // no more ties at b
            rows(#"[{"id":"3","u":"c"},{"id":"4","u":"c"}]"#),  // full
            rows(#"[{"id":"5","u":"c"}]"#),  // the last tie at c
            rows("[]"),  // nothing after c
        ])
        let client = try makeClient(transport, pageSize: 2)
        let read = try await client.fetchAll(
            PostgRESTQuery(table: "jobs", filters: [.init("t", .eq("x"))]), orderedBy: "u", key: "id", maximumRows: 100)
        #expect(read.rows.map { $0["id"] } == ["1", "2", "3", "4", "5"].map { .string($0) })
        #expect(read.isComplete)
        #expect(
            transport.requests.map(self.parameters) == [
                "t=eq.x&order=u.asc,id.asc&limit=2",
                "t=eq.x&u=eq.b&id=gt.2&order=id.asc&limit=2",
                "t=eq.x&u=gt.b&order=u.asc,id.asc&limit=2",
                "t=eq.x&u=eq.c&id=gt.4&order=id.asc&limit=2",
                "t=eq.x&u=gt.c&order=u.asc,id.asc&limit=2",
            ])
    }

    @Test("a server that ignores the cursor (the same full page every time) is a typed error, not a loop")
    func ignoredCursor() async throws {
        let page = rows(#"[{"id":"1","u":"a"},{"id":"2","u":"b"}]"#)
        let transport = ScriptedTransport(Array(repeating: page, count: 10))
        let client = try makeClient(transport, pageSize: 2)
        await #expect(throws: RESTError.self) {
            _ = try await client.fetchAll(PostgRESTQuery(table: "jobs"), orderedBy: "u", key: "id", maximumRows: 100)
        }
        #expect(transport.requests.count == 2)
        do {
            _ = try await client.fetchAll(PostgRESTQuery(table: "jobs"), orderedBy: "u", key: "id", maximumRows: 100)
        } catch {
            #expect(error.code == .invalidResponse)
        }
    }

    @Test("a server that answers endless new rows stops at the row cap: at most maximumRows kept")
    func rowCap() async throws {
        let pages = (0..<50).map { index in
            rows(#"[{"id":"\#(2 * index)","u":"\#(index)"},{"id":"\#(2 * index + 1)","u":"\#(index)"}]"#)
        }
        let transport = ScriptedTransport(pages)
        let client = try makeClient(transport, pageSize: 2)
        let read = try await client.fetchAll(PostgRESTQuery(table: "jobs"), orderedBy: "u", key: "id", maximumRows: 7)
        #expect(read.rows.count == 7)
        #expect(!read.isComplete)
        #expect(transport.requests.count == 4)
    }

    @Test("§11.2 401 PGRST303 refreshes the token and retries once")
    func jwtExpiredRetriesOnce() async throws {
        let expired = rows(#"{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}"#, status: 401)
        let transport = ScriptedTransport([expired, rows("[]")])
        let refreshes = NIOLockedValueBox<[Bool]>([])
        let client = try makeClient(
            transport,
            token: { force in
                refreshes.withLockedValue { $0.append(force) }
                return force ? "fresh" : "stale"
            })
        let result = try await client.fetch(PostgRESTQuery(table: "jobs"))
        #expect(result.isEmpty)
        #expect(refreshes.withLockedValue { $0 } == [false, true])
        #expect(transport.requests.map { $0.headers["Authorization"] } == ["Bearer stale", "Bearer fresh"])
    }

    @Test("§11.2 a second 401 after the refresh is jwtExpired, and the message has no token")
    func jwtExpiredTwice() async throws {
        let expired = rows(
            #"{"code":"PGRST301","details":null,"hint":null,"message":"JWT eyJa.eyJb.sig invalid"}"#, status: 401)
        let transport = ScriptedTransport([expired, expired])
        let client = try makeClient(transport, token: { _ in "tok" })
        do {
            _ = try await client.fetch(PostgRESTQuery(table: "jobs"))
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .jwtExpired)
            #expect(transport.requests.count == 2)
            #expect(!error.description.contains("eyJ"))
            #expect(!error.description.contains("anon-key"))
        }
    }

    @Test("without a token provider the API key is the bearer token")
    func keyFallback() async throws {
        let transport = ScriptedTransport([rows("[]")])
        _ = try await makeClient(transport).fetch(PostgRESTQuery(table: "jobs"))
        #expect(transport.requests.first?.headers["Authorization"] == "Bearer anon-key")
    }
}
