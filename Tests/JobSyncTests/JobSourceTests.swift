import JobSyncCore
import SupabaseREST
import Foundation
import NIOConcurrencyHelpers
import Testing

@testable import JobSync

/// Answers every request with a function of it, recording the requests.
final class RecordingTransport: HTTPTransport {
    private let requests = NIOLockedValueBox<[HTTPRequest]>([])
    private let answer: @Sendable (HTTPRequest) -> HTTPResponse

    init(answer: @escaping @Sendable (HTTPRequest) -> HTTPResponse) {
        self.answer = answer
    }

    var recorded: [HTTPRequest] { self.requests.withLockedValue { $0 } }

    func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
        self.requests.withLockedValue { $0.append(request) }
        return self.answer(request)
    }
}

@Suite("Job sources: Supabase table and the classification status endpoint")
struct JobSourceTests {
    @Test("the table source asks for ids in batches of at most 100 and pages by watermark")
    func tableBatches() async throws {
        let transport = RecordingTransport { _ in HTTPResponse(status: 200, body: Array("[]".utf8)) }
        let client = try PostgRESTClient(
            configuration: .init(baseURL: "http://127.0.0.1:1/rest/v1", apiKey: "k", transport: transport))
        let source = SupabaseTableSource(client: client)
        let ids = (0..<250).map { try! JobID(String(format: "00000000-0000-0000-0000-%012d", $0)) }
        _ = try await source.fetch(ids: ids)
        let inCounts = transport.recorded.map { request in
            request.url.split(separator: "id=in.(")[1].split(separator: ")")[0].split(separator: ",").count
        }
        #expect(inCounts == [100, 100, 50])
        _ = try await source.fetchUpdated(since: JobTimestamp("2026-08-21T10:15:03.401882+00:00"))
        #expect(
            transport.recorded.last?.url
                == "http://127.0.0.1:1/rest/v1/jobs?select=*&updated_at=gte.2026-08-21T10:15:03.401882Z"
                + "&order=updated_at.asc,id.asc&limit=1000")
        #expect(transport.recorded.dropLast().allSatisfy { $0.url.contains("limit=") && !$0.url.contains("offset") })
    }

    @Test("the audit's version read asks for id,updated_at only, keyset-paged from the watermark like a full read")
    func tableVersions() async throws {
        // Two pages: a full one of two rows (page size 2), then the ties after its last row, then past them.
        let transport = RecordingTransport { request in
            let body: String
            if !request.url.contains("id=gt.") && !request.url.contains("updated_at=gt.") {
                body = #"[{"id":"a","updated_at":"2026-08-21T10:15:04Z"},{"id":"b","updated_at":"2026-08-21T10:15:05Z"}]"#
            } else {
                body = "[]"
            }
            return HTTPResponse(status: 200, body: Array(body.utf8))
        }
        let client = try PostgRESTClient(
            configuration: .init(
                baseURL: "http://127.0.0.1:1/rest/v1", apiKey: "k", pageSize: 2, transport: transport))
        let rows = try await SupabaseTableSource(client: client, schema: "app")
            .fetchVersions(since: JobTimestamp("2026-08-21T10:15:03.401882+00:00"))
        #expect(rows.map { $0["id"]?.stringValue } == ["a", "b"])
        let urls = transport.recorded.map(\.url)
        #expect(
            urls.first
                == "http://127.0.0.1:1/rest/v1/jobs?select=id,updated_at&updated_at=gte.2026-08-21T10:15:03.401882Z"
                + "&order=updated_at.asc,id.asc&limit=2")
        #expect(urls.count == 3)  // the ties after `b`, then the rows after its timestamp: both empty
        #expect(urls.allSatisfy { $0.contains("select=id,updated_at") && !$0.contains("offset") })
        #expect(transport.recorded.allSatisfy { $0.headers["Accept-Profile"] == "app" })
    }

    @Test("the table source sends Accept-Profile for a schema other than public, on id and watermark reads")
    func tableSchemaProfile() async throws {
        let transport = RecordingTransport { _ in HTTPResponse(status: 200, body: Array("[]".utf8)) }
        let client = try PostgRESTClient(
            configuration: .init(baseURL: "http://127.0.0.1:1/rest/v1", apiKey: "k", transport: transport))
        _ = try await SupabaseTableSource(client: client, schema: "app").fetch(ids: [idA])
        _ = try await SupabaseTableSource(client: client, schema: "app").fetchUpdated(since: nil)
        _ = try await SupabaseTableSource(client: client).fetch(ids: [idA])
        _ = try await SupabaseTableSource(client: client, schema: "public").fetchUpdated(since: nil)
        #expect(transport.recorded.map { $0.headers["Accept-Profile"] } == ["app", "app", nil, nil])
    }

    @Test("a server that ignores the id filter is an error, never a deletion of the ids it did not return")
    func foreignRows() async throws {
        let other = try JobID("00000000-0000-4000-8000-000000000099")
        let body = #"[{"id":"\#(other.rawValue)","status":"queued"}]"#
        let transport = RecordingTransport { _ in HTTPResponse(status: 200, body: Array(body.utf8)) }
        let client = try PostgRESTClient(
            configuration: .init(baseURL: "http://127.0.0.1:1/rest/v1", apiKey: "k", transport: transport))
        let source = SupabaseTableSource(client: client)
        do {
            _ = try await source.fetch(ids: [idA])
            Issue.record("expected an error")
        } catch {
            #expect(error.restError?.code == .invalidResponse)
        }
    }

    @Test("the status endpoint sends api-key, reads job_id and mixed-case status, and treats 404 as absent")
    func statusEndpoint() async throws {
        let transport = RecordingTransport { request in
            if request.url.hasSuffix(idA.rawValue) {
                let body =
                    #"{"job_id":"\#(idA.rawValue)","status":"PROCESSING","progress":"Processing page 3 of 10","#
                    + #""error":null,"result":null}"#
                return HTTPResponse(status: 200, body: Array(body.utf8))
            }
            return HTTPResponse(status: 404, body: Array(#"{"detail":"Job not found"}"#.utf8))
        }
        let source = try ClassificationStatusSource(
            baseURL: "http://127.0.0.1:1/", apiKey: "secret-key", transport: transport)
        let rows = try await source.fetch(ids: [idA, idB])
        #expect(
            transport.recorded.map(\.url) == [
                "http://127.0.0.1:1/classify/\(idA.rawValue)", "http://127.0.0.1:1/classify/\(idB.rawValue)",
            ])
        #expect(transport.recorded.first?.headers["api-key"] == "secret-key")
        #expect(rows.count == 1)
        let job = try Job(row: rows[0])
        #expect(job.id == idA)
        #expect(job.status == .processing)
        #expect(job.progress == "Processing page 3 of 10")
    }

    @Test("the status endpoint's errors are typed and never contain the key")
    func statusEndpointErrors() async throws {
        let transport = RecordingTransport { _ in
            HTTPResponse(status: 429, headers: ["Retry-After": "3"], body: Array("rate limited".utf8))
        }
        let source = try ClassificationStatusSource(
            baseURL: "http://127.0.0.1:1", apiKey: "secret-key", transport: transport)
        do {
            _ = try await source.fetch(ids: [idA])
            Issue.record("expected an error")
        } catch {
            #expect(error.code == .rest)
            #expect(error.restError?.code == .rateLimited)
            #expect(error.restError?.retryAfter == .seconds(3))
            #expect(!error.description.contains("secret-key"))
        }
        #expect(throws: JobSyncError.self) { try ClassificationStatusSource(baseURL: "ftp://x", apiKey: "k") }
        #expect(throws: JobSyncError.self) { try ClassificationStatusSource(baseURL: "http://x", apiKey: "") }
    }

    @Test("an error body that echoes the api-key header never carries it into the error")
    func statusEndpointEchoedKey() async throws {
        let echo = #"{"message":"invalid api-key secret-key-42","details":"api-key: secret-key-42","hint":"secret-key-42"}"#
        let transport = RecordingTransport { _ in HTTPResponse(status: 403, body: Array(echo.utf8)) }
        let source = try ClassificationStatusSource(
            baseURL: "http://127.0.0.1:1", apiKey: "secret-key-42", transport: transport)
        do {
            _ = try await source.fetch(ids: [idA])
            Issue.record("expected an error")
        } catch {
            let texts = [
                error.description, "\(error)", error.restError?.message, error.restError?.details, error.restError?.hint,
            ]
            #expect(texts.allSatisfy { !($0 ?? "").contains("secret-key-42") }, "\(texts)")
            #expect(error.restError?.message.contains("<redacted>") == true)
        }
    }
}
