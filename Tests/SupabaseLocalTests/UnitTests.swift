import Testing

@testable import SupabaseLocal

@Suite("LocalJSON, timestamps, JWTs")
struct ValueTests {
    @Test("Numbers keep their exact text; jsonb order is length then bytes")
    func json() throws {
        let value = try LocalJSON(parsing: #"{"big":9007199254740993,"ab":1.50,"a":[true,null,"\u00e9\n"]}"#)
        #expect(value["big"] == .number("9007199254740993"))
        #expect(value.encoded() == #"{"a":[true,null,"é\n"],"ab":1.50,"big":9007199254740993}"#)
        #expect(value.encoded(style: .jsonb) == #"{"a": [true, null, "é\n"], "ab": 1.50, "big": 9007199254740993}"#)
        #expect(throws: SupabaseLocalError.self) { try LocalJSON(parsing: "[1,") }
        #expect(throws: SupabaseLocalError.self) { try LocalJSON(parsing: #"{"a":01}"#) }
    }

    @Test("Timestamps: Postgres JSON text, commit text, parsing with offsets")
    func timestamps() throws {
        let stamp = try #require(LocalTimestamp(parsing: "2026-08-21T10:15:03.401882+00:00"))
        #expect(stamp.postgresJSONText == "2026-08-21T10:15:03.401882+00:00")
        #expect(stamp.commitTimestampText == "2026-08-21T10:15:03.401Z")
        #expect(
            LocalTimestamp(parsing: "2026-08-21 12:15:03.401882+02")?.microsecondsSinceEpoch
                == stamp.microsecondsSinceEpoch)
        #expect(
            LocalTimestamp(parsing: "2026-08-21T10:16:40.0012Z")?.postgresJSONText == "2026-08-21T10:16:40.0012+00:00")
        #expect(LocalTimestamp(parsing: "2026-08-21T10:16:40Z")?.postgresJSONText == "2026-08-21T10:16:40+00:00")
        #expect(LocalTimestamp(parsing: "yesterday") == nil)
    }

    @Test("JWT verification outcomes and the texts of §1.3, §4.4, §8.1")
    func jwt() {
        let signer = LocalJWTSigner(secret: "unit-secret-unit-secret-unit-secret-01")
        let now = LocalTimestamp(parsing: "2026-08-21T10:00:00Z")!
        let good = signer.mint(role: "authenticated", now: now, lifetime: .seconds(60))
        #expect((try? signer.verify(good, now: now).get())?.role == "authenticated")
        let expired = signer.mint(role: "authenticated", now: now, lifetime: .seconds(-42))
        #expect(signer.verify(expired, now: now) == .failure(.expired(secondsAgo: 42)))
        #expect(JWTTexts.joinReason(.expired(secondsAgo: 42)) == "InvalidJWTToken: Token has expired 42 seconds ago")
        #expect(signer.verify("not-a-jwt", now: now) == .failure(.malformed))
        #expect(signer.verify(nil, now: now) == .failure(.missing))
        let other = LocalJWTSigner(secret: "another-secret-another-secret-another")
        #expect(
            signer.verify(other.mint(role: "anon", now: now, lifetime: .seconds(60)), now: now)
                == .failure(.badSignature))
        #expect(signer.verify(signer.sign(claims: ["role": .string("anon")]), now: now) == .failure(.missingClaims))
        #expect(JWTTexts.handshake(.missingClaims) == "Fields `role` and `exp` are required in JWT")
        #expect(JWTTexts.joinReason(.badSignature) == "JwtSignatureError: Failed to validate JWT signature")
        #expect(JWTTexts.channelMessage(.badSignature) == ":signature_error")
    }
}

@Suite("Realtime filters (§6.1, §4.5)")
struct FilterTests {
    static func resolve(_ raw: [String: LocalJSON]) -> Result<ResolvedBinding, BindingError> {
        BindingResolver.resolve(Binding(raw: raw), table: .jobs)
    }

    @Test("Unparsable filters give the server's texts")
    func errors() {
        let base: [String: LocalJSON] = ["event": .string("*"), "schema": .string("public"), "table": .string("jobs")]
        var raw = base
        raw["filter"] = .string("foo=hey")
        #expect(Self.resolve(raw) == .failure(BindingError(message: #"Error parsing `filter` params: ["foo", "hey"]"#)))
        raw["filter"] = .string("id=in.abc")
        #expect(
            Self.resolve(raw)
                == .failure(
                    BindingError(
                        message: "Error parsing `filter` params: `in` filter value must be wrapped by parentheses")))
        raw["filter"] = .string("subject=eq.hey")
        guard case .failure(let unknown) = Self.resolve(raw) else {
            Issue.record("expected an error")
            return
        }
        #expect(
            unknown.message.hasPrefix("Unable to subscribe to changes with given parameters. An exception happened"))
        #expect(unknown.message.hasSuffix("invalid column for filter subject"))
        raw["filter"] = .string(
            "id=in.(" + (0...100).map { _ in "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f" }.joined(separator: ",") + ")")
        guard case .failure(let tooMany) = Self.resolve(raw) else {
            Issue.record("expected an error")
            return
        }
        #expect(tooMany.message.hasSuffix("too many values for `in` filter. Maximum 100"))
        raw["filter"] = .null
        #expect(Self.resolve(raw) == .failure(BindingError(message: "Error parsing `filter` params: nil")))
        guard
            case .failure(let noTable) = Self.resolve([
                "event": .string("*"), "schema": .string("public"),
                "table": .string("nope"),
            ])
        else {
            Issue.record("expected an error")
            return
        }
        #expect(
            noTable.message.hasPrefix(
                "Unable to subscribe to changes with given parameters. Please check Realtime is enabled"))
        guard case .failure(let none) = Self.resolve(["event": .string("*")]) else {
            Issue.record("expected an error")
            return
        }
        #expect(none.message.hasPrefix("No subscription params provided."))
    }

    @Test("Classic operators evaluate by column type; DELETE uses the old identity")
    func evaluation() throws {
        let id = "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"
        let row: TableRow = [
            "id": .string(id), "status": .string("processing"),
            "updated_at": .string("2026-08-21T10:15:03.401882+00:00"),
        ]
        func matches(_ filter: String, _ kind: TableChange.Kind = .update, old: TableRow? = nil) throws -> Bool {
            let binding = try Self.resolve([
                "schema": .string("public"), "table": .string("jobs"),
                "filter": .string(filter),
            ]).get()
            let change = TableChange(
                kind: kind, schema: "public", table: "jobs",
                commitTimestamp: LocalTimestamp(microsecondsSinceEpoch: 0),
                record: kind == .delete ? nil : row, oldRecord: old)
            return binding.matches(change)
        }
        #expect(try matches("status=eq.processing"))
        #expect(try !matches("status=neq.processing"))
        #expect(try matches("id=in.(\(id.uppercased()), 8d0b5a0e-3c2f-4c39-9a43-6a1f5f2a9b11)"))
        #expect(try matches("updated_at=gt.2026-08-21T10:15:03Z"))
        #expect(try !matches("updated_at=lt.2026-08-21T10:15:03Z"))
        #expect(try matches("status=gte.processing") && matches("status=lte.processing"))
        #expect(try matches("id=eq.\(id)", .delete, old: ["id": .string(id)]))
        #expect(try !matches("status=eq.processing", .delete, old: ["id": .string(id)]))
    }
}

@Suite("PostgREST query parsing (§11)")
struct PostgRESTQueryTests {
    @Test("Filters, quoted in-lists, order, paging")
    func parse() throws {
        let query = try PostgRESTQuery.parse(
            #"select=id,status&status=in.(%22a,b%22,queued)&order=updated_at.desc,id.asc&limit=5&offset=2&error=is.null"#,
            table: .jobs)
        #expect(query.columns.map(\.name) == ["id", "status"])
        #expect(query.conditions.count == 2)
        #expect(query.order.map(\.ascending) == [false, true])
        #expect(query.limit == 5 && query.offset == 2)
        guard case .compare(let filter) = query.conditions[0].test else {
            Issue.record("expected compare")
            return
        }
        #expect(filter.values == ["a,b", "queued"])
    }

    @Test("Errors: PGRST100 bad filter, 22P02 bad uuid, 42703 unknown column")
    func errors() {
        #expect(throws: RESTError.self) { try PostgRESTQuery.parse("status=zz.1", table: .jobs) }
        do {
            _ = try PostgRESTQuery.parse("id=eq.nope", table: .jobs)
            Issue.record("expected an error")
        } catch {
            #expect(error.status == 400)
            #expect(
                error.body
                    == #"{"code":"22P02","details":null,"hint":null,"message":"invalid input syntax for type uuid: \"nope\""}"#
            )
        }
        do {
            _ = try PostgRESTQuery.parse("status=queued", table: .jobs)
            Issue.record("expected an error")
        } catch {
            #expect(error.body.contains(#""code":"PGRST100""#))
        }
        do {
            _ = try PostgRESTQuery.parse("colour=eq.red", table: .jobs)
            Issue.record("expected an error")
        } catch {
            #expect(error.body.contains(#""code":"42703""#))
        }
    }
}

@Suite("In-memory backend and simulator")
struct BackendTests {
    @Test("Defaults, strictly increasing updated_at, one change per write in order")
    func writes() async throws {
        let backend = try InMemoryJobsBackend(clock: fixedWallClock("2026-08-21T10:00:00Z"))
        let changes = backend.changes()
        let row = try await backend.insert([:])
        let id = try #require(row["id"])
        #expect(row["status"] == .string("queued"))
        #expect(row["result"] == .null)
        var last = try #require(LocalTimestamp(parsing: row["updated_at"]?.stringValue ?? ""))
        for step in 1...3 {
            let updated = try #require(try await backend.update(primaryKey: id, set: ["progress": .string("\(step)")]))
            let stamp = try #require(LocalTimestamp(parsing: updated["updated_at"]?.stringValue ?? ""))
            #expect(stamp > last)
            last = stamp
        }
        _ = try await backend.delete(primaryKey: id)
        await #expect(throws: SupabaseLocalError.self) { try await backend.insert(["id": .string("nope")]) }
        var kinds: [TableChange.Kind] = []
        for await change in changes {
            kinds.append(change.kind)
            if change.kind == .delete {
                #expect(change.oldRecord == ["id": id])
                break
            }
        }
        #expect(kinds == [.insert, .update, .update, .update, .delete])
    }

    @Test("Replica identity full carries the whole old row")
    func fullIdentity() async throws {
        var table = TableDescriptor.jobs
        table.replicaIdentity = .full
        let backend = try InMemoryJobsBackend(table: table)
        let changes = backend.changes()
        let row = try await backend.insert(["status": .string("queued")])
        _ = try await backend.update(primaryKey: row["id"]!, set: ["status": .string("processing")])
        var iterator = changes.makeAsyncIterator()
        _ = await iterator.next()
        let update = try #require(await iterator.next())
        #expect(update.oldRecord?["status"] == .string("queued"))
        #expect(update.record?["status"] == .string("processing"))
    }

    @Test("Simulator: same seed, same plan; every job ends terminal with the documented shapes")
    func simulator() async throws {
        var settings = JobSimulator.Configuration()
        settings.queueDelay = .zero
        settings.pageInterval = .zero
        settings.failureRate = 0.5
        settings.seed = 7
        let backend = try InMemoryJobsBackend()
        let simulator = JobSimulator(backend: backend, configuration: settings)
        #expect(simulator.plan(count: 20) == simulator.plan(count: 20))
        let plans = try await simulator.run(count: 20)
        let rows = try await backend.rows()
        #expect(rows.count == 20)
        for plan in plans {
            let row = try #require(rows.first { $0["id"] == .string(plan.id) })
            if let error = plan.error {
                #expect(row["status"] == .string("failed"))
                #expect(row["error"] == .string(error))
                #expect(JobSimulator.errorMessages.contains(error))
            } else {
                #expect(row["status"] == .string("completed"))
                let result = try #require(row["result"])
                #expect(result["page_results"]?.arrayValue?.count == plan.pages)
                #expect(result["total_pages"] == .int(plan.pages))
            }
        }
        #expect(plans.contains { $0.error != nil } && plans.contains { $0.error == nil })
    }
}
