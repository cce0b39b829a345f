import HTTPTypes
import Hummingbird
import NIOCore
import Logging
import NIOConcurrencyHelpers

extension SupabaseLocalStack {
    func addRoutes(to router: Router<BasicRequestContext>) {
        router.get("/health") { _, _ in Response(status: .ok) }
        let table = "/rest/v1/" + self.backend.table.name
        router.get(RouterPath(table)) { request, _ in await self.respond { try await self.restSelect(request) } }
        router.head(RouterPath(table)) { request, _ in await self.respond { try await self.restSelect(request) } }
        router.post(RouterPath(table)) { request, _ in await self.respond { try await self.restInsert(request) } }
        router.patch(RouterPath(table)) { request, _ in await self.respond { try await self.restUpdate(request) } }
        router.delete(RouterPath(table)) { request, _ in await self.respond { try await self.restDelete(request) } }
        router.post("/rest/v1/rpc/:function") { request, context in
            await self.respond { try await self.rpc(request, function: context.parameters.get("function") ?? "") }
        }
        router.get("/classify/:job_id") { request, context in
            await self.respond { try await self.classify(request, jobID: context.parameters.get("job_id") ?? "") }
        }
        router.post("/admin/v1/:action") { request, context in
            await self.respond { try await self.admin(request, action: context.parameters.get("action") ?? "") }
        }
        router.get("/admin/v1/stats") { request, _ in
            await self.respond {
                try self.requireServiceKey(request)
                return self.json(200, self.statsJSON())
            }
        }
    }

    /// Turns thrown ``RESTError``s into responses; anything else becomes a 500 without details.
    func respond(_ work: () async throws -> Response) async -> Response {
        do {
            return try await work()
        } catch let error as RESTError {
            var response = self.json(error.status, error.body)
            for (name, value) in error.headers {
                if let field = HTTPField.Name(name) { response.headers[field] = value }
            }
            return response
        } catch {
            self.configuration.logger.debug("request failed", metadata: ["error.type": "\(type(of: error))"])
            return self.json(500, "{\"message\":\"Internal Server Error\"}")
        }
    }

    func json(_ status: Int, _ body: String, headers: HTTPFields = [:]) -> Response {
        var fields = headers
        fields[.contentType] = "application/json; charset=utf-8"
        return Response(status: .init(code: status), headers: fields, body: .init(byteBuffer: ByteBuffer(string: body)))
    }

    func header(_ request: Request, _ name: String) -> String? {
        HTTPField.Name(name).flatMap { request.headers[$0] }
    }

    // MARK: Faults and auth

    /// Applies REST latency and forced failures (fault injection).
    func applyRESTFaults() async throws {
        let (latency, failure) = self.faultState.withLockedValue { faults in
            if faults.restFailure != nil { faults.statistics.restRequestsFailed += 1 }
            return (faults.restLatency, faults.restFailure)
        }
        try await self.sleep(for: latency)
        if let failure {
            let message = failure.status == 429 ? "Too Many Requests" : "Internal Server Error"
            var error = RESTError(
                status: failure.status, body: LocalJSON.object(["message": .string(message)]).encoded())
            if let retryAfter = failure.retryAfterSeconds { error.headers.append(("Retry-After", "\(retryAfter)")) }
            throw error
        }
    }

    /// The gateway's `apikey` check and PostgREST's `Authorization` check (§11.1, §11.2). Returns the role.
    @discardableResult
    func authorizeREST(_ request: Request) throws(RESTError) -> String {
        let (_, query) = splitURI(request.uri.description)
        guard let apiKey = self.header(request, "apikey") ?? query["apikey"] else {
            throw RESTError(
                status: 401,
                body: LocalJSON.object([
                    "message": .string("No API key found in request"),
                    "hint": .string("No `apikey` request header or url param was found."),
                ]).encoded())
        }
        let now = self.configuration.wallClock.now()
        let verifier = self.verifier()
        guard case .success(let keyClaims) = self.signer.verify(apiKey, now: now) else {
            throw RESTError(
                status: 401,
                body: LocalJSON.object([
                    "message": .string("Invalid API key"),
                    "hint": .string("Double check your Supabase `anon` or `service_role` API key."),
                ]).encoded())
        }
        guard let authorization = self.header(request, "authorization") else { return keyClaims.role }
        let token = authorization.hasPrefix("Bearer ") ? String(authorization.dropFirst(7)) : authorization
        switch verifier.verify(token, now: now) {
        case .success(let claims):
            return claims.role
        case .failure(.expired):
            var error = RESTError.postgrest(401, code: "PGRST303", message: "JWT expired")
            error.headers.append(
                ("WWW-Authenticate", "Bearer error=\"invalid_token\", error_description=\"JWT expired\""))
            throw error
        case .failure(.malformed), .failure(.missing):
            let parts = token.split(separator: ".", omittingEmptySubsequences: false).count
            throw .postgrest(
                401, code: "PGRST301",
                message: parts == 3
                    ? "JWSError (CompactDecodeError Invalid JSON)"
                    : "Expected 3 parts in JWT; got \(parts)")
        case .failure(.badSignature):
            throw .postgrest(401, code: "PGRST301", message: "JWSError JWSInvalidSignature")
        case .failure(.missingClaims), .failure(.invalidExpiration):
            return keyClaims.role
        }
    }

    func requireServiceKey(_ request: Request) throws(RESTError) {
        let bearer = self.header(request, "authorization").map {
            $0.hasPrefix("Bearer ") ? String($0.dropFirst(7)) : $0
        }
        let key = self.header(request, "apikey") ?? bearer
        guard key == self.serviceKey else {
            throw RESTError(status: 401, body: "{\"message\":\"service_role key required\"}")
        }
    }

    // MARK: PostgREST

    /// The schemas REST serves (PostgREST's `db-schemas`), the default first.
    var exposedSchemas: [String] {
        if let configured = self.configuration.exposedSchemas, !configured.isEmpty { return configured }
        let table = self.backend.table.schema
        return table == "public" ? ["public"] : ["public", table]
    }

    /// PostgREST's schema switching: `Accept-Profile` (GET, HEAD) or `Content-Profile` (writes) names one of the
    /// exposed schemas, no header means the first. An unexposed schema is `406 PGRST106` (PostgREST's
    /// `errors.rst`; realtime-protocol.md §11.2 lists the PGRST codes but not this one); an exposed schema without
    /// the table is `404 PGRST205`, as for a missing table.
    func requireTableSchema(_ request: Request, write: Bool) throws(RESTError) {
        let requested = try self.requestedSchema(request, write: write)
        let table = self.backend.table
        guard requested == table.schema else {
            throw .postgrest(
                404, code: "PGRST205",
                message: "Could not find the table '\(requested).\(table.name)' in the schema cache")
        }
    }

    /// The exposed schema a request names with `Accept-Profile` (reads) or `Content-Profile` (writes and RPC), or
    /// the default one; `406 PGRST106` for any other.
    func requestedSchema(_ request: Request, write: Bool) throws(RESTError) -> String {
        let exposed = self.exposedSchemas
        let requested = self.header(request, write ? "content-profile" : "accept-profile") ?? exposed[0]
        guard exposed.contains(requested) else {
            throw .postgrest(
                406, code: "PGRST106", message: "Invalid schema: \(requested)",
                hint: "Only the following schemas are exposed: " + exposed.joined(separator: ", "))
        }
        return requested
    }

    private func contentRange(offset: Int, count: Int, total: Int?) -> String {
        let range = count == 0 ? "*" : "\(offset)-\(offset + count - 1)"
        return range + "/" + (total.map(String.init) ?? "*")
    }

    private func prefers(_ request: Request, _ token: String) -> Bool {
        (self.header(request, "prefer") ?? "").split(separator: ",").contains {
            String($0).trimmingSpaces == token
        }
    }

    func restSelect(_ request: Request) async throws -> Response {
        try await self.applyRESTFaults()
        try self.authorizeREST(request)
        try self.requireTableSchema(request, write: false)
        let table = self.backend.table
        let query = try PostgRESTQuery.parse(request.uri.query, table: table)
        if let oversized = self.faultState.withLockedValue({ faults in
            if faults.oversizedRESTBody != nil { faults.statistics.oversizedRESTBodies += 1 }
            return faults.oversizedRESTBody
        }) {
            return self.oversizedResponse(oversized)
        }
        let ignoring = self.faultState.withLockedValue { faults in
            if faults.restIgnoresQuery { faults.statistics.restQueriesIgnored += 1 }
            return faults.restIgnoresQuery
        }
        let rows = try await self.backend.rows()
        let matched = ignoring ? rows : query.apply(to: rows)
        var offset = ignoring ? 0 : query.offset
        var limit = min(query.limit ?? self.configuration.maxRows, self.configuration.maxRows)
        if !ignoring, let range = self.header(request, "range") {
            let bounds = range.split(separator: "-", omittingEmptySubsequences: false)
            if bounds.count == 2, let first = Int(bounds[0]) {
                offset = first
                if let last = Int(bounds[1]), last >= first { limit = min(limit, last - first + 1) }
            }
        }
        let page = Array(matched.dropFirst(offset).prefix(limit))
        let total =
            self.prefers(request, "count=exact") || self.prefers(request, "count=planned")
                || self.prefers(request, "count=estimated") ? matched.count : nil
        var headers: HTTPFields = [:]
        headers[.contentRange] = self.contentRange(offset: offset, count: page.count, total: total)
        if (self.header(request, "accept") ?? "").contains("application/vnd.pgrst.object+json") {
            guard page.count == 1 else {
                throw RESTError.postgrest(
                    406, code: "PGRST116", message: "Cannot coerce the result to a single JSON object",
                    details: "The result contains \(page.count) rows")
            }
            return self.json(200, renderRow(page[0], columns: query.columns), headers: headers)
        }
        return self.json(200, renderRows(page, columns: query.columns), headers: headers)
    }

    /// The ``OversizedRESTBody`` fault's answer, written 64 KiB at a time and counted as it goes.
    private func oversizedResponse(_ oversized: OversizedRESTBody) -> Response {
        let chunkSize = 64 << 10
        let total: Int?
        if case .declared(let bytes) = oversized { total = max(2, bytes) } else { total = nil }
        let faultState = self.faultState
        let body = ResponseBody(contentLength: total) { writer in
            var written = 0
            while total.map({ written < $0 }) ?? true {
                var size = chunkSize
                if let total { size = min(size, total - written) }
                var buffer = ByteBuffer(repeating: UInt8(ascii: " "), count: size)
                if written == 0 { buffer.setInteger(UInt8(ascii: "["), at: buffer.readerIndex) }
                if let total, written + size == total {
                    buffer.setInteger(UInt8(ascii: "]"), at: buffer.writerIndex - 1)
                }
                do {
                    try await writer.write(buffer)
                } catch {
                    // The client hung up (closed the connection) before the end.
                    faultState.withLockedValue { $0.statistics.oversizedRESTBodiesAbandoned += 1 }
                    throw error
                }
                written += size
                faultState.withLockedValue { $0.statistics.oversizedRESTBodyBytesSent += size }
            }
            try await writer.finish(nil)
        }
        var headers: HTTPFields = [:]
        headers[.contentType] = "application/json; charset=utf-8"
        return Response(status: .ok, headers: headers, body: body)
    }

    private func readBody(_ request: Request) async throws -> LocalJSON {
        let buffer = try await request.body.collect(upTo: 10 << 20)
        do {
            return try LocalJSON(parsing: Array(buffer: buffer))
        } catch {
            throw RESTError.postgrest(400, code: "PGRST102", message: "Empty or invalid json")
        }
    }

    /// Checks a row body against the table; unknown columns are PGRST204, bad uuids 22P02.
    private func checkRow(_ object: [String: LocalJSON]) throws(RESTError) -> TableRow {
        let table = self.backend.table
        for (key, value) in object {
            guard let column = table.column(named: key) else {
                throw .postgrest(
                    400, code: "PGRST204",
                    message: "Could not find the '\(key)' column of '\(table.name)' in the schema cache")
            }
            if let text = value.stringValue, column.type != "text", column.type != "jsonb",
                TypedValue.parse(text, type: column.type) == nil
            {
                throw .invalidInput(type: column.type, value: text)
            }
        }
        return object
    }

    func restInsert(_ request: Request) async throws -> Response {
        try await self.applyRESTFaults()
        try self.authorizeREST(request)
        try self.requireTableSchema(request, write: true)
        let body = try await self.readBody(request)
        let objects: [[String: LocalJSON]]
        if let object = body.objectValue {
            objects = [object]
        } else if let array = body.arrayValue, array.allSatisfy({ $0.objectValue != nil }) {
            objects = array.compactMap(\.objectValue)
        } else {
            throw RESTError.postgrest(400, code: "PGRST102", message: "Empty or invalid json")
        }
        var inserted: [TableRow] = []
        for object in objects {
            let row = try self.checkRow(object)
            do {
                inserted.append(try await self.backend.insert(row))
            } catch let error as SupabaseLocalError where error.code == .duplicateKey {
                let key = row["id"]?.stringValue ?? ""
                throw RESTError.postgrest(
                    409, code: "23505",
                    message: "duplicate key value violates unique constraint \"\(self.backend.table.name)_pkey\"",
                    details: "Key (id)=(\(key)) already exists.")
            }
        }
        return self.writeResponse(request, rows: inserted, created: true)
    }

    private func writeResponse(_ request: Request, rows: [TableRow], created: Bool) -> Response {
        var headers: HTTPFields = [:]
        headers[.contentRange] = self.contentRange(offset: 0, count: rows.count, total: nil)
        if self.prefers(request, "return=representation") {
            return self.json(
                created ? 201 : 200, renderRows(rows, columns: self.backend.table.columns), headers: headers)
        }
        return Response(status: created ? .created : .noContent, headers: headers)
    }

    private func targetRows(_ request: Request, verb: String) async throws -> [TableRow] {
        let query = try PostgRESTQuery.parse(request.uri.query, table: self.backend.table)
        guard !query.conditions.isEmpty else {
            throw RESTError.postgrest(400, code: "21000", message: "\(verb) requires a WHERE clause")
        }
        return query.apply(to: try await self.backend.rows())
    }

    func restUpdate(_ request: Request) async throws -> Response {
        try await self.applyRESTFaults()
        try self.authorizeREST(request)
        try self.requireTableSchema(request, write: true)
        guard let object = try await self.readBody(request).objectValue else {
            throw RESTError.postgrest(400, code: "PGRST102", message: "Empty or invalid json")
        }
        let values = try self.checkRow(object)
        var updated: [TableRow] = []
        let key = self.backend.table.primaryKey[0].name
        for row in try await self.targetRows(request, verb: "UPDATE") {
            if let pk = row[key], let new = try await self.backend.update(primaryKey: pk, set: values) {
                updated.append(new)
            }
        }
        return self.writeResponse(request, rows: updated, created: false)
    }

    func restDelete(_ request: Request) async throws -> Response {
        try await self.applyRESTFaults()
        try self.authorizeREST(request)
        try self.requireTableSchema(request, write: true)
        var deleted: [TableRow] = []
        let key = self.backend.table.primaryKey[0].name
        for row in try await self.targetRows(request, verb: "DELETE") {
            if let pk = row[key], let old = try await self.backend.delete(primaryKey: pk) { deleted.append(old) }
        }
        return self.writeResponse(request, rows: deleted, created: false)
    }

    // MARK: Classification service status endpoint

    func classify(_ request: Request, jobID: String) async throws -> Response {
        try await self.applyRESTFaults()
        guard self.header(request, "api-key") == self.configuration.classifyAPIKey else {
            throw RESTError(status: 401, body: "{\"detail\":\"Invalid or missing API key\"}")
        }
        let id = jobID.lowercased()
        guard isUUID(id), let row = try await self.backend.row(primaryKey: .string(id)) else {
            throw RESTError(status: 404, body: "{\"detail\":\"Job not found\"}")
        }
        var out = "{\"job_id\":"
        LocalJSON.writeString(id, to: &out)
        for name in ["status", "progress", "error", "result"] {
            out += ",\"\(name)\":"
            (row[name] ?? .null).write(to: &out, style: .compact)
        }
        return self.json(200, out + "}")
    }
}
