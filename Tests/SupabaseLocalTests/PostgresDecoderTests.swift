import Testing

@testable import SupabaseLocal

/// Tests of the PostgreSQL tier of SupabaseLocal. The nested suites in `Postgres*.swift` files group under this
/// name so that `swift test --filter SupabaseLocalPostgresTests` runs them all.
@Suite enum SupabaseLocalPostgresTests {}

extension SupabaseLocalPostgresTests {
    /// wal2json v2 rows → ``TableChange`` (pure; no database).
    @Suite struct Decoder {
        let decoder = Wal2JSONDecoder(table: .jobs, typeNames: [3802: "jsonb", 1184: "timestamptz"])

        /// Columns as wal2json prints them for the jobs table (types are wal2json's `format_type` text).
        static func columns(status: String, result: String) -> String {
            """
            [{"name":"id","type":"uuid","typeoid":2950,"value":"180b6928-3281-4e04-bdd9-86999ea117db"},\
            {"name":"status","type":"text","typeoid":25,"value":"\(status)"},\
            {"name":"progress","type":"text","typeoid":25,"value":null},\
            {"name":"error","type":"text","typeoid":25,"value":null},\
            {"name":"result","type":"jsonb","typeoid":3802,"value":\(result)},\
            {"name":"created_at","type":"timestamp with time zone","typeoid":1184,\
            "value":"2026-11-29 07:47:34.899418+00"},\
            {"name":"updated_at","type":"timestamp with time zone","typeoid":1184,"value":"2026-11-29 07:47:35+00"}]
            """
        }

        static let pk = #"[{"name":"id","type":"uuid","typeoid":2950}]"#
        static let idIdentity =
            #"[{"name":"id","type":"uuid","typeoid":2950,"value":"180b6928-3281-4e04-bdd9-86999ea117db"}]"#

        @Test("§5.2 INSERT: jsonb text becomes JSON, int8 stays exact, timestamptz in to_jsonb form")
        func insertIsTyped() throws {
            let result = #""{\"confidence\": 0.97, \"n\": 9007199254740993, \"pages\": [1, 2]}""#
            let text = """
                {"action":"I","timestamp":"2026-11-29 07:47:34.900252+00","schema":"public","table":"jobs",\
                "columns":\(Self.columns(status: "queued", result: result)),"pk":\(Self.pk)}
                """
            guard case .change(let change) = try self.decoder.decode(text) else {
                Issue.record("expected a change")
                return
            }
            #expect(change.kind == .insert)
            #expect(change.oldRecord == nil)
            #expect(change.commitTimestamp.commitTimestampText == "2026-11-29T07:47:34.900Z")
            #expect(change.commitTimestamp.postgresJSONText == "2026-11-29T07:47:34.900252+00:00")
            let record = try #require(change.record)
            #expect(
                record["result"]
                    == .object([
                        "confidence": .number("0.97"), "n": .number("9007199254740993"),
                        "pages": .array([.number("1"), .number("2")]),
                    ])
            )
            #expect(record["created_at"] == .string("2026-11-29T07:47:34.899418+00:00"))
            #expect(record["updated_at"] == .string("2026-11-29T07:47:35+00:00"))
            #expect(record["progress"] == .null)
            #expect(record["status"] == .string("queued"))
        }

        @Test("§5.3 UPDATE under default identity: old = PK only")
        func updateDefaultIdentity() throws {
            let text = """
                {"action":"U","timestamp":"2026-11-29 07:47:34.901912+00","schema":"public","table":"jobs",\
                "columns":\(Self.columns(status: "processing", result: "null")),\
                "identity":\(Self.idIdentity),"pk":\(Self.pk)}
                """
            guard case .change(let change) = try self.decoder.decode(text) else {
                Issue.record("expected a change")
                return
            }
            #expect(change.kind == .update)
            #expect(change.oldRecord == ["id": .string("180b6928-3281-4e04-bdd9-86999ea117db")])
            #expect(change.record?["status"] == .string("processing"))
            #expect(change.record?["result"] == .null)
        }

        @Test("§5.3 DELETE: no record, old identity as logged")
        func deleteHasNoRecord() throws {
            let text = """
                {"action":"D","timestamp":"2026-11-29 07:47:34.902097+00","schema":"public","table":"jobs",\
                "identity":\(Self.idIdentity),"pk":\(Self.pk)}
                """
            guard case .change(let change) = try self.decoder.decode(text) else {
                Issue.record("expected a change")
                return
            }
            #expect(change.kind == .delete)
            #expect(change.record == nil)
            #expect(change.oldRecord == ["id": .string("180b6928-3281-4e04-bdd9-86999ea117db")])
        }

        @Test("§5.3 UPDATE under FULL identity: old row typed; unchanged TOAST values filled from it")
        func updateFullIdentityFillsToast() throws {
            // `result` is missing from `columns`, as wal2json prints an unchanged TOASTed value.
            let columns = """
                [{"name":"id","type":"uuid","typeoid":2950,"value":"180b6928-3281-4e04-bdd9-86999ea117db"},\
                {"name":"status","type":"text","typeoid":25,"value":"completed"}]
                """
            let text = """
                {"action":"U","timestamp":"2026-11-29 07:47:34.901912+00","schema":"public","table":"jobs",\
                "columns":\(columns),"identity":\(Self.columns(status: "processing", result: #""{\"a\": 1}""#)),\
                "pk":\(Self.pk)}
                """
            guard case .change(let change) = try self.decoder.decode(text) else {
                Issue.record("expected a change")
                return
            }
            #expect(change.oldRecord?["status"] == .string("processing"))
            #expect(change.oldRecord?["result"] == .object(["a": .number("1")]))
            #expect(change.record?["status"] == .string("completed"))
            #expect(change.record?["result"] == .object(["a": .number("1")]))
        }

        @Test("Rows of other tables are reported, not decoded")
        func otherTable() throws {
            let text = #"{"action":"I","timestamp":"2026-11-29 07:47:34+00","schema":"public","table":"other","#
                + #""columns":[]}"#
            #expect(try self.decoder.decode(text) == .otherTable(schema: "public", table: "other"))
        }

        @Test("Malformed rows throw typed errors", arguments: [
            "not json",
            "[]",
            #"{"schema":"public","table":"jobs","action":"X","timestamp":"2026-11-29 07:47:34+00"}"#,
            #"{"schema":"public","table":"jobs","action":"I","timestamp":"yesterday"}"#,
            #"{"schema":"public","table":"jobs","action":"I","timestamp":"2026-11-29 07:47:34+00","columns":{}}"#,
            #"{"schema":"public","table":"jobs","action":"I","timestamp":"2026-11-29 07:47:34+00","columns":[{"#
                + #""name":"result","typeoid":3802,"value":"{oops"}]}"#,
        ])
        func malformed(text: String) {
            #expect(throws: SupabaseLocalError.self) { try self.decoder.decode(text) }
        }

        @Test("Type names come from OIDs, then the descriptor; timestamp without zone gets a T")
        func typing() throws {
            #expect(try Wal2JSONDecoder.typed(.string("2026-01-02 03:04:05.5"), typeName: "timestamp")
                == .string("2026-01-02T03:04:05.5"))
            #expect(try Wal2JSONDecoder.typed(.number("12345678901234567890"), typeName: "numeric")
                == .number("12345678901234567890"))
            #expect(try Wal2JSONDecoder.typed(.string("{a,b}"), typeName: "_text") == .string("{a,b}"))
            #expect(try Wal2JSONDecoder.typed(.string("\"x\""), typeName: "jsonb") == .string("x"))
        }
    }

    /// `postgres://` URL parsing.
    @Suite struct ConnectionURL {
        @Test func parsesTheThrowawayClusterURL() throws {
            let url = try PostgresConnectionURL(parsing: "postgres://postgres@127.0.0.1:35339/postgres")
            #expect(url.host == "127.0.0.1")
            #expect(url.port == 35339)
            #expect(url.username == "postgres")
            #expect(url.password == nil)
            #expect(url.database == "postgres")
        }

        @Test func decodesCredentialsAndHidesThePassword() throws {
            let url = try PostgresConnectionURL(parsing: "postgresql://app%40x:s3cr%2Ft@[::1]/jobs?sslmode=disable")
            #expect(url.username == "app@x")
            #expect(url.password == "s3cr/t")
            #expect(url.host == "::1")
            #expect(url.port == 5432)
            #expect(url.database == "jobs")
            #expect(!url.description.contains("s3cr"))
        }

        @Test func unixSocketDirectory() throws {
            let url = try PostgresConnectionURL(parsing: "postgres://me@/db?host=%2Ftmp%2Fpg&application_name=x")
            #expect(url.unixSocketDirectory == "/tmp/pg")
            #expect(url.database == "db")
        }

        @Test("Bad URLs throw invalidConfiguration without echoing the URL", arguments: [
            "http://u:hunter2@host/db",
            "postgres://u:hunter2@host:99999/db",
            "postgres://u:hunter2@host/db?sslmode=require",
            "postgres://u:hunter2%zz@host/db",
        ])
        func rejects(text: String) {
            let error = #expect(throws: SupabaseLocalError.self) { try PostgresConnectionURL(parsing: text) }
            #expect(error?.code == .invalidConfiguration)
            #expect(error?.message.contains("hunter2") == false)
        }
    }

    /// DDL and statement text.
    @Suite struct SQL {
        @Test func quotesIdentifiers() {
            #expect(PostgresJobsSQL.quoted(#"we"ird"#) == #""we""ird""#)
        }

        @Test("§5.3 replica identity is applied at setup")
        func replicaIdentity() {
            var table = TableDescriptor.jobs
            #expect(PostgresJobsSQL(table: table).setupStatements(dropExisting: false).last
                == #"alter table "public"."jobs" replica identity default"#)
            table.replicaIdentity = .full
            let statements = PostgresJobsSQL(table: table).setupStatements(dropExisting: true)
            #expect(statements.last == #"alter table "public"."jobs" replica identity full"#)
            #expect(statements.first == #"drop table if exists "public"."jobs" cascade"#)
        }

        @Test("§5.6 the slot is read with Realtime's exact options")
        func getChanges() {
            #expect(PostgresJobsSQL.getChanges(maxChanges: 100) == "select data from pg_logical_slot_get_changes("
                + "$1::text::name, null, 100, 'include-pk', 'true', 'include-transaction', 'false', "
                + "'include-timestamp', 'true', 'include-type-oids', 'true', 'format-version', '2', "
                + "'actions', 'insert,update,delete')")
        }
    }
}
