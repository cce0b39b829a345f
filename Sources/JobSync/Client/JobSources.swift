import Foundation
public import JobSyncCore
public import SupabaseREST

/// ``JobSource`` over a Supabase (PostgREST) table: `GET …/jobs?select=*&id=in.(…)` in batches of ≤ 100, and
/// watermark reads `updated_at=gte.<watermark>` in `updated_at, id` order with a keyset cursor (pages of ≤ 1,000
/// rows, never `offset`), at most ``maximumRowsPerRead`` rows per read; the audit's version reads
/// (``fetchVersions(since:)``) are the same with `select=id,updated_at`.
///
/// Answers the query cannot have produced (more rows than ids asked, a row of an id not asked for, a page that does
/// not advance) are ``JobSyncError/Code/rest`` errors with ``RESTError/Code/invalidResponse``: the client backs off
/// and never takes them as truth (an absent id would otherwise count as deleted).
public struct SupabaseTableSource: JobSource {
    /// The REST client.
    public let client: PostgRESTClient
    /// The table name (default `jobs`).
    public let table: String
    /// The table's schema (default `public`); any other is asked for with PostgREST's `Accept-Profile` header
    /// and must be exposed by the server.
    public let schema: String
    /// Whether the table has an `updated_at` column (default `true`).
    public let hasUpdatedAt: Bool
    /// The most rows one watermark read returns (default 10,000); the next catch-up continues after them.
    public let maximumRowsPerRead: Int

    /// Creates a source.
    public init(
        client: PostgRESTClient, table: String = "jobs", schema: String = "public", hasUpdatedAt: Bool = true,
        maximumRowsPerRead: Int = 10_000
    ) {
        self.client = client
        self.table = table
        self.schema = schema
        self.hasUpdatedAt = hasUpdatedAt
        self.maximumRowsPerRead = max(1, maximumRowsPerRead)
    }

    public var supportsWatermark: Bool { self.hasUpdatedAt }

    /// The `Accept-Profile` to send: none for `public`, PostgREST's (and Supabase's) default schema.
    private var profile: String? { self.schema == "public" ? nil : self.schema }

    public func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject] {
        guard !ids.isEmpty else { return [] }
        var rows: [JSONObject] = []
        var start = 0
        while start < ids.count {
            let batch = ids[start..<min(start + PostgRESTFilter.maximumInValues, ids.count)].map(\.rawValue)
            start += batch.count
            // One page: never more rows than ids asked (a server ignoring `limit` or the filter is caught below).
            let query = PostgRESTQuery(
                table: self.table, filters: [.init("id", .in(batch))], limit: batch.count, schema: self.profile)
            let page: [JSONObject]
            do {
                page = try await self.client.fetch(query)
            } catch {
                throw JobSyncError(error)
            }
            let asked = Set(batch)
            guard page.count <= batch.count,
                page.allSatisfy({ row in row["id"]?.stringValue.map { asked.contains($0) } ?? false })
            else {
                throw JobSyncError(
                    RESTError(
                        code: .invalidResponse,
                        message: "the server answered \(page.count) rows for \(batch.count) ids, not only ids asked for"))
            }
            rows += page
        }
        return rows
    }

    public func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        try await self.read(select: "*", since: since)
    }

    /// `id` and `updated_at` of the rows with `updated_at >= since` (`select=id,updated_at`, keyset-paged like
    /// ``fetchUpdated(since:)``): about 80 bytes a row instead of the whole row.
    public func fetchVersions(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        try await self.read(select: "id,updated_at", since: since)
    }

    /// A watermark read of the columns `select`, at most ``maximumRowsPerRead`` rows.
    private func read(select: String, since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        var query = PostgRESTQuery(table: self.table, select: select, schema: self.profile)
        if let since { query.filters.append(.init("updated_at", .gte(since.description))) }
        do {
            return try await self.client.fetchAll(
                query, orderedBy: "updated_at", key: "id", maximumRows: self.maximumRowsPerRead
            ).rows
        } catch {
            throw JobSyncError(error)
        }
    }
}

/// ``JobSource`` over the classification service's status endpoint: `GET {base}/classify/{id}` with header
/// `api-key`, answering `{"job_id","status","progress","error","result"}`. A 404 means the job does not exist.
/// It has no timestamps, so no watermark: every poll costs one request per unfinished watched job.
public struct ClassificationStatusSource: JobSource {
    private let base: String
    private let apiKey: String
    private let transport: any HTTPTransport
    private let timeout: Duration

    /// Creates a source.
    ///
    /// - Parameters:
    ///   - baseURL: the service base, e.g. `https://api.example.com` (http or https).
    ///   - apiKey: sent as `api-key`; never logged or put in errors.
    /// - Throws: ``JobSyncError/Code/invalidConfiguration`` for a bad URL or a missing key.
    public init(
        baseURL: String,
        apiKey: String,
        transport: any HTTPTransport = URLSessionHTTPTransport(),
        timeout: Duration = .seconds(10)
    ) throws(JobSyncError) {
        var base = baseURL
        while base.hasSuffix("/") { base.removeLast() }
        let lower = base.lowercased()
        guard lower.hasPrefix("http://") || lower.hasPrefix("https://"), !base.contains("?"), URL(string: base) != nil
        else {
            throw JobSyncError(
                code: .invalidConfiguration, message: "the status endpoint URL must be http(s) without a query")
        }
        guard !apiKey.isEmpty else {
            throw JobSyncError(code: .invalidConfiguration, message: "the status endpoint API key is missing")
        }
        self.base = base
        self.apiKey = apiKey
        self.transport = transport
        self.timeout = timeout
    }

    public var supportsWatermark: Bool { false }

    public func fetch(ids: [JobID]) async throws(JobSyncError) -> [JSONObject] {
        var rows: [JSONObject] = []
        for id in ids {
            let request = HTTPRequest(
                url: self.base + "/classify/" + id.rawValue,
                headers: ["api-key": self.apiKey, "Accept": "application/json"],
                timeout: self.timeout)
            let response: HTTPResponse
            do {
                response = try await self.transport.send(request)
            } catch {
                throw JobSyncError(error, jobID: id)
            }
            if response.status == 404 { continue }
            guard (200..<300).contains(response.status) else {
                let retryAfter = response.headers["retry-after"].flatMap { RetryAfter.parse($0, now: Date()) }
                // The service may echo the request (its `api-key` header included) in an error body.
                throw JobSyncError(
                    RESTError.fromResponse(status: response.status, body: response.body, retryAfter: retryAfter)
                        .redacting([self.apiKey]),
                    jobID: id)
            }
            guard var object = (try? JSONValue.parse(response.body))?.objectValue else {
                throw JobSyncError(
                    RESTError(
                        code: .undecodableBody, message: "the status body is not a JSON object",
                        httpStatus: response.status),
                    jobID: id)
            }
            if object["id"] == nil { object["id"] = object["job_id"] }
            rows.append(object)
        }
        return rows
    }

    public func fetchUpdated(since: JobTimestamp?) async throws(JobSyncError) -> [JSONObject] {
        throw JobSyncError(code: .invalidConfiguration, message: "the status endpoint cannot list jobs by watermark")
    }
}
