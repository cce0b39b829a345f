import Testing

@testable import SupabaseLocal

@Suite("REST and status endpoint over HTTP (§11)")
struct RESTIntegrationTests {
    @Test("Gateway and PostgREST error bodies (§11.1, §11.2)")
    func errors() async throws {
        try await SupabaseLocal.withRunning { stack in
            let missing = try await httpRequest(stack, "GET", "/rest/v1/jobs?select=*")
            #expect(missing.status == 401)
            #expect(
                missing.body
                    == #"{"hint":"No `apikey` request header or url param was found.","message":"No API key found in request"}"#
            )
            var expired = anonHeaders(stack)
            expired["Authorization"] = "Bearer " + stack.mintUserToken(lifetime: .seconds(-1))
            let jwt = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: expired)
            #expect(jwt.status == 401)
            #expect(jwt.body == #"{"code":"PGRST303","details":null,"hint":null,"message":"JWT expired"}"#)
            let uuid = try await httpRequest(stack, "GET", "/rest/v1/jobs?id=eq.nope", headers: anonHeaders(stack))
            #expect(uuid.status == 400 && uuid.body.contains(#""code":"22P02""#))
            let filter = try await httpRequest(stack, "GET", "/rest/v1/jobs?status=bogus", headers: anonHeaders(stack))
            #expect(filter.status == 400 && filter.body.contains(#""code":"PGRST100""#))
        }
    }

    @Test("Writes, filters, order, paging, Content-Range with count=exact, at most maxRows")
    func reads() async throws {
        var configuration = SupabaseLocalConfiguration()
        configuration.maxRows = 3
        try await SupabaseLocal.withRunning(configuration) { stack in
            var headers = anonHeaders(stack)
            headers["Prefer"] = "return=representation"
            let created = try await httpRequest(
                stack, "POST", "/rest/v1/jobs", headers: headers,
                body: #"[{"status":"queued"},{"status":"queued"},{"status":"processing"},{"status":"completed"}]"#)
            #expect(created.status == 201)
            let rows = try LocalJSON(parsing: created.body).arrayValue ?? []
            #expect(rows.count == 4)
            let ids = rows.compactMap { $0["id"]?.stringValue }
            headers["Prefer"] = "count=exact"
            let page = try await httpRequest(stack, "GET", "/rest/v1/jobs?select=id&order=id.asc", headers: headers)
            #expect(page.headers["content-range"] == "0-2/4")
            #expect((try LocalJSON(parsing: page.body).arrayValue ?? []).count == 3)
            let list = ids.prefix(2).joined(separator: ",")
            let inFilter = try await httpRequest(
                stack, "GET", "/rest/v1/jobs?id=in.(\(list))", headers: anonHeaders(stack))
            #expect((try LocalJSON(parsing: inFilter.body).arrayValue ?? []).count == 2)
            let patched = try await httpRequest(
                stack, "PATCH", "/rest/v1/jobs?id=eq.\(ids[0])",
                headers: anonHeaders(stack), body: #"{"status":"failed"}"#)
            #expect(patched.status == 204)
            let deleted = try await httpRequest(
                stack, "DELETE", "/rest/v1/jobs?status=eq.failed", headers: anonHeaders(stack))
            #expect(deleted.status == 204)
            #expect(try await stack.backend.rows().count == 3)
            let duplicate = try await httpRequest(
                stack, "POST", "/rest/v1/jobs", headers: anonHeaders(stack),
                body: #"{"id":"\#(ids[1])"}"#)
            #expect(duplicate.status == 409 && duplicate.body.contains(#""code":"23505""#))
        }
    }

    @Test("GET /classify/{job_id}: shape, 404 for unknown, 401 without the key")
    func classify() async throws {
        try await SupabaseLocal.withRunning { stack in
            let row = try await stack.backend.insert([
                "status": .string("processing"),
                "progress": .string("Processing page 1 of 2"),
            ])
            let id = try #require(row["id"]?.stringValue)
            let key = ["api-key": stack.configuration.classifyAPIKey]
            let found = try await httpRequest(stack, "GET", "/classify/\(id)", headers: key)
            #expect(found.status == 200)
            #expect(
                found.body
                    == #"{"job_id":"\#(id)","status":"processing","progress":"Processing page 1 of 2","error":null,"result":null}"#
            )
            let unknown = try await httpRequest(
                stack, "GET", "/classify/2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f", headers: key)
            #expect(unknown.status == 404)
            let unauthorized = try await httpRequest(stack, "GET", "/classify/\(id)")
            #expect(unauthorized.status == 401)
        }
    }
}

@Suite("REST schema switching (PostgREST Accept-Profile / Content-Profile)")
struct RESTSchemaTests {
    private func appStack() throws -> SupabaseLocalConfiguration {
        var configuration = SupabaseLocalConfiguration()
        var table = TableDescriptor.jobs
        table.schema = "app"
        configuration.backend = try InMemoryJobsBackend(table: table)
        return configuration
    }

    @Test("A table in schema app is served under Accept-Profile: app, written under Content-Profile: app")
    func servesTheTablesSchema() async throws {
        try await SupabaseLocal.withRunning(try self.appStack()) { stack in
            var write = anonHeaders(stack)
            write["Content-Profile"] = "app"
            let created = try await httpRequest(
                stack, "POST", "/rest/v1/jobs", headers: write, body: #"{"status":"queued"}"#)
            #expect(created.status == 201)
            var read = anonHeaders(stack)
            read["Accept-Profile"] = "app"
            let rows = try await httpRequest(stack, "GET", "/rest/v1/jobs?select=status", headers: read)
            #expect(rows.status == 200 && rows.body == #"[{"status":"queued"}]"#)
            // No profile: the default schema (public), which has no such table.
            let plain = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: anonHeaders(stack))
            #expect(plain.status == 404 && plain.body.contains(#""code":"PGRST205""#))
            #expect(plain.body.contains("'public.jobs'"))
            let unprofiled = try await httpRequest(
                stack, "POST", "/rest/v1/jobs", headers: anonHeaders(stack), body: #"{"status":"queued"}"#)
            #expect(unprofiled.status == 404)
            #expect(try await stack.backend.rows().count == 1)
        }
    }

    @Test("An unexposed profile is 406 PGRST106 naming the exposed schemas, for reads and writes")
    func unknownProfile() async throws {
        try await SupabaseLocal.withRunning(try self.appStack()) { stack in
            var read = anonHeaders(stack)
            read["Accept-Profile"] = "nope"
            let answer = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: read)
            #expect(answer.status == 406)
            #expect(
                answer.body
                    == #"{"code":"PGRST106","details":null,"hint":"Only the following schemas are exposed: public, app","message":"Invalid schema: nope"}"#
            )
            var write = anonHeaders(stack)
            write["Content-Profile"] = "nope"
            let written = try await httpRequest(
                stack, "POST", "/rest/v1/jobs", headers: write, body: #"{"status":"queued"}"#)
            #expect(written.status == 406 && written.body.contains("PGRST106"))
            #expect(try await stack.backend.rows().isEmpty)
        }
        // A public table: only public is exposed unless configured.
        try await SupabaseLocal.withRunning { stack in
            var read = anonHeaders(stack)
            read["Accept-Profile"] = "app"
            let answer = try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: read)
            #expect(answer.status == 406 && answer.body.contains("exposed: public\""))
            read["Accept-Profile"] = "public"
            #expect(try await httpRequest(stack, "GET", "/rest/v1/jobs", headers: read).status == 200)
        }
    }
}
