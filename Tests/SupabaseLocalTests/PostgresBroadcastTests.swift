import Foundation
import Testing

@testable import SupabaseLocal

/// Broadcast from Database on PostgreSQL (broadcast-from-database.md §B1–§B5): the `realtime` schema SupabaseLocal
/// installs, the shipped migration's trigger and policy, and `PostgresJobsBackend`'s ``BroadcastBackend``.
enum BroadcastTier {
    /// Runs `body` with a running broadcast-enabled backend on a fresh table, then drops the table.
    static func withBackend(_ body: @Sendable (PostgresJobsBackend) async throws -> Void) async throws {
        let configuration = try PostgresJobsBackend.Configuration(
            url: try PostgresTier.url(),
            table: PostgresTier.uniqueTable(.default),
            dropExistingTable: true,
            broadcast: true
        )
        let backend = PostgresJobsBackend(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await backend.run() }
            defer { group.cancelAll() }
            do {
                try await body(backend)
                await PostgresTier.dropTable(of: backend)
            } catch {
                await PostgresTier.dropTable(of: backend)
                throw error
            }
        }
    }

    /// The next `count` rows from `stream` that match `filter`, or a failure after `timeout` (a guard against
    /// hanging). A new stream can still deliver rows committed just before it was made: the poller had not read them.
    static func next(
        _ count: Int, from stream: AsyncStream<BroadcastRow>, timeout: Duration = .seconds(20),
        where filter: @escaping @Sendable (BroadcastRow) -> Bool = { _ in true }
    ) async throws -> [BroadcastRow] {
        try await withThrowingTaskGroup(of: [BroadcastRow]?.self) { group in
            group.addTask {
                var rows: [BroadcastRow] = []
                for await row in stream where filter(row) {
                    rows.append(row)
                    if rows.count == count { break }
                }
                return rows
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            let first = try await group.next() ?? nil
            return try #require(first, "timed out waiting for \(count) row(s) of realtime.messages from the slot")
        }
    }

    /// Fails (throws) unless the SQL boolean `condition` is true on the backend's database.
    static func check(_ backend: PostgresJobsBackend, _ condition: String) async throws {
        try await backend.execute(
            sql: """
                do $check$ begin if not coalesce((\(condition)), false) then \
                raise exception 'check failed'; end if; end $check$
                """)
    }

    /// Whether the SQL boolean `condition` holds (a ``check(_:_:)`` that does not throw).
    static func holds(_ backend: PostgresJobsBackend, _ condition: String) async -> Bool {
        (try? await Self.check(backend, condition)) != nil
    }

    static func unique(_ prefix: String) -> String {
        prefix + "_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
    }

    /// A reader with the given role and a `sub`.
    static func reader(_ role: String) -> BroadcastReader {
        BroadcastReader(
            role: role, claims: ["role": .string(role), "sub": .string("0b6a5f3e-0000-4000-8000-000000000001")])
    }
}

extension SupabaseLocalPostgresTests {
    /// What needs no database: the migration file, the decoder, the configuration flag.
    @Suite struct BroadcastUnits {
        @Test("The shipped migration file is byte for byte the SQL the backend applies")
        func migrationFileEqualsTheAppliedSQL() throws {
            var root = URL(fileURLWithPath: #filePath)
            for _ in 0..<3 { root.deleteLastPathComponent() }
            let file = root.appendingPathComponent(BroadcastMigration.relativePath)
            let text = try String(contentsOf: file, encoding: .utf8)
            #expect(text == BroadcastMigration.sql)
            #expect(BroadcastMigration.sql.contains("security definer"))
            #expect(BroadcastMigration.sql.contains("create policy jobs_broadcast_read on realtime.messages"))
            let statement = try PostgresJobsBackend.statement(runningMigration: BroadcastMigration.sql)
            #expect(statement.contains(BroadcastMigration.sql))
            #expect(throws: SupabaseLocalError.self) {
                try PostgresJobsBackend.statement(runningMigration: "select 1; $jobsync_sql$")
            }
        }

        @Test("broadcastBackend is the backend itself only with Configuration.broadcast")
        func broadcastBackendFollowsTheFlag() throws {
            let off = PostgresJobsBackend(configuration: try .init(url: "postgres://postgres@127.0.0.1:5432/postgres"))
            #expect(off.broadcastBackend == nil)
            #expect(off.configuration.broadcast == false)
            let on = PostgresJobsBackend(
                configuration: try .init(url: "postgres://postgres@127.0.0.1:5432/postgres", broadcast: true))
            #expect(on.broadcastBackend as? PostgresJobsBackend === on)
        }

        @Test("§B1.1 wal2json inserts into realtime.messages decode as BroadcastRows; others do not stream")
        func decodesMessages() throws {
            let decoder = Wal2JSONDecoder(table: .jobs)
            func message(action: String = "I", event: String = #""UPDATE""#, extra: String = "") -> String {
                """
                {"action":"\(action)","timestamp":"2026-12-03 05:10:00.5+00","schema":"realtime","table":"messages",\
                "columns":[{"name":"topic","type":"text","typeoid":25,"value":"jobs:42"},\
                {"name":"extension","type":"text","typeoid":25,"value":"broadcast"},\
                {"name":"payload","type":"jsonb","typeoid":3802,\
                "value":"{\\"id\\": \\"m1\\", \\"n\\": 9007199254740993}"},\
                {"name":"event","type":"text","typeoid":25,"value":\(event)},\
                {"name":"private","type":"boolean","typeoid":16,"value":true},\
                {"name":"updated_at","type":"timestamp without time zone","typeoid":1114,\
                "value":"2026-12-03 05:10:00.123456"},\
                {"name":"inserted_at","type":"timestamp without time zone","typeoid":1114,\
                "value":"2026-12-03 05:10:00.123456"},\
                {"name":"id","type":"uuid","typeoid":2950,"value":"9b0d3c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e"},\
                {"name":"binary_payload","type":"bytea","typeoid":17,"value":\(extra.isEmpty ? "null" : extra)}]}
                """
            }
            let expected = BroadcastRow(
                id: "9b0d3c4e-1f2a-4b3c-8d4e-5f6a7b8c9d0e", topic: "jobs:42", event: "UPDATE",
                payload: .object(["id": .string("m1"), "n": .number("9007199254740993")]), binaryPayload: nil,
                isPrivate: true, insertedAt: try #require(LocalTimestamp(parsing: "2026-12-03T05:10:00.123456Z")))
            #expect(try decoder.decode(message()) == .broadcast(expected))
            var binary = expected
            binary.binaryPayload = [0x01, 0x0a, 0xff]
            #expect(try decoder.decode(message(extra: #""010aFF""#)) == .broadcast(binary))
            #expect(try decoder.decode(message(event: "null")) == .undeliverableBroadcast)
            #expect(try decoder.decode(message(action: "D")) == .otherTable(schema: "realtime", table: "messages"))
            #expect(throws: SupabaseLocalError.self) { try decoder.decode(message(extra: #""010""#)) }
            #expect(Wal2JSONDecoder.hexBytes("\\x") == [])
            #expect(Wal2JSONDecoder.hexBytes("\\x0102") == [1, 2])
            #expect(Wal2JSONDecoder.hexBytes("\\xzz") == nil)
        }
    }

    /// End-to-end on PostgreSQL. Serialized: one test drops the shared `jobs_broadcast_read` policy for a moment, and
    /// the replay test counts the rows of its topics.
    @Suite(
        .enabled(if: !PostgresTier.skipped, "JOBSYNC_SKIP_POSTGRES_TESTS=1"),
        .timeLimit(.minutes(1)),
        .serialized
    )
    struct Broadcast {
        @Test("§B1.3/§B1.4 the trigger broadcasts to <table>:<id> and <table>; broadcasts() streams committed rows")
        func triggerWritesBothTopicsAndRowsStreamAfterCommit() async throws {
            try await BroadcastTier.withBackend { backend in
                let name = backend.table.name
                let table = PostgresJobsSQL(table: backend.table).qualifiedTable
                let id = UUID().uuidString.lowercased()
                let stream = backend.broadcasts()
                try await backend.execute(sql: "insert into \(table) (id) values ('\(id)')")
                try await backend.execute(sql: "update \(table) set status = 'completed' where id = '\(id)'")
                try await backend.execute(sql: "delete from \(table) where id = '\(id)'")
                let rows = try await BroadcastTier.next(6, from: stream)
                #expect(rows.map(\.topic) == Array(repeating: ["\(name):\(id)", name], count: 3).flatMap { $0 })
                #expect(rows.map(\.event) == ["INSERT", "INSERT", "UPDATE", "UPDATE", "DELETE", "DELETE"])
                #expect(rows.allSatisfy { $0.isPrivate && $0.binaryPayload == nil })
                #expect(Set(rows.map(\.id)).count == 6)
                for row in rows {
                    let payload = try #require(row.payload?.objectValue)
                    #expect(Set(payload.keys) == ["id", "operation", "schema", "table", "record", "old_record"])
                    #expect(payload["id"] == .string(row.id))
                    #expect(payload["operation"] == .string(row.event))
                    #expect(payload["schema"] == .string("public"))
                    #expect(payload["table"] == .string(name))
                }
                #expect(rows[0].payload?["old_record"] == .null)
                #expect(rows[0].payload?["record"]?["id"] == .string(id))
                #expect(rows[2].payload?["record"]?["status"] == .string("completed"))
                #expect(rows[2].payload?["old_record"]?["status"] == .string("queued"))
                #expect(rows[4].payload?["record"] == .null)
                #expect(rows[4].payload?["old_record"]?["id"] == .string(id))
                // Each statement is a transaction of its own: later commits, later inserted_at.
                #expect(rows[0].insertedAt < rows[2].insertedAt && rows[2].insertedAt < rows[4].insertedAt)

                // What streamed is what is stored: the row topic's replay is the same three rows.
                let replayed = try await backend.replay(
                    topic: "\(name):\(id)", isPrivate: true, sinceMilliseconds: 0, limit: 25)
                #expect(replayed == [rows[0], rows[2], rows[4]])

                // A rolled-back write broadcasts nothing: the next rows are the committed marker's.
                let lost = UUID().uuidString.lowercased()
                let marker = UUID().uuidString.lowercased()
                await #expect(throws: SupabaseLocalError.self) {
                    try await backend.execute(
                        sql: """
                            do $x$ begin insert into \(table) (id) values ('\(lost)'); \
                            raise exception 'roll back'; end $x$
                            """)
                }
                try await backend.execute(sql: "insert into \(table) (id) values ('\(marker)')")
                let after = try await BroadcastTier.next(2, from: stream)
                #expect(after.map(\.topic) == ["\(name):\(marker)", name])
                let stored = try await backend.replay(
                    topic: "\(name):\(lost)", isPrivate: true, sinceMilliseconds: 0, limit: 25)
                #expect(stored.isEmpty)
            }
        }

        @Test("§B1.3 broadcast_changes aborts the writer on STATEMENT level or an unknown operation")
        func broadcastChangesRaises() async throws {
            try await BroadcastTier.withBackend { backend in
                for (operation, level) in [("INSERT", "STATEMENT"), ("TRUNCATE", "ROW")] {
                    let error = await #expect(throws: SupabaseLocalError.self) {
                        try await backend.execute(
                            sql: """
                                do $x$ begin perform realtime.broadcast_changes('t', 'e', '\(operation)', 't', \
                                'public', null::record, null::record, '\(level)'); end $x$
                                """)
                    }
                    #expect(error?.message.contains("Failed to process the row") == true)
                }
            }
        }

        @Test("§B5 replay: newest ≤ 25 oldest first, limit clamped to 1…25, since filter, privacy filter")
        func replaySemantics() async throws {
            try await BroadcastTier.withBackend { backend in
                let topic = BroadcastTier.unique("replay")
                var sent: [BroadcastRow] = []
                for index in 0..<30 {
                    let row = try await backend.send(
                        payload: .object(["n": .int(index)]), event: "tick", topic: topic, isPrivate: true)
                    sent.append(try #require(row))
                    try await Task.sleep(for: .milliseconds(2))
                }
                #expect(sent.allSatisfy { $0.payload?["id"] == .string($0.id) && $0.topic == topic && $0.isPrivate })
                let all = try await backend.replay(topic: topic, isPrivate: true, sinceMilliseconds: 0, limit: 100)
                #expect(all == Array(sent[5...]))
                let one = try await backend.replay(topic: topic, isPrivate: true, sinceMilliseconds: 0, limit: 0)
                #expect(one == [sent[29]])
                let three = try await backend.replay(topic: topic, isPrivate: true, sinceMilliseconds: 0, limit: 3)
                #expect(three == Array(sent[27...]))

                // since (ms, inclusive): just after row 20's inserted_at, so rows 21… (sent ≥ 2 ms apart).
                let since = (sent[20].insertedAt.microsecondsSinceEpoch + 999) / 1000
                let recent = try await backend.replay(
                    topic: topic, isPrivate: true, sinceMilliseconds: since, limit: 25)
                #expect(recent == Array(sent[21...]))
                let exact = sent[10].insertedAt.microsecondsSinceEpoch
                if exact % 1000 == 0 {
                    let inclusive = try await backend.replay(
                        topic: topic, isPrivate: true, sinceMilliseconds: exact / 1000, limit: 25)
                    #expect(inclusive.first == sent[10])
                }
                let tomorrow = Int64(Date().timeIntervalSince1970 * 1000) + 86_400_000
                #expect(try await backend.replay(topic: topic, isPrivate: true, sinceMilliseconds: tomorrow, limit: 25)
                    .isEmpty)

                // Privacy: a public row on the same topic replays only as public.
                let open = try #require(
                    try await backend.send(payload: .object([:]), event: "open", topic: topic, isPrivate: false))
                #expect(!open.isPrivate)
                let privateRows = try await backend.replay(
                    topic: topic, isPrivate: true, sinceMilliseconds: 0, limit: 25)
                #expect(privateRows == Array(sent[5...]))
                let publicRows = try await backend.replay(
                    topic: topic, isPrivate: false, sinceMilliseconds: 0, limit: 25)
                #expect(publicRows == [open])
                #expect(try await backend.replay(topic: topic + "x", isPrivate: true, sinceMilliseconds: 0, limit: 25)
                    .isEmpty)

                // §B5's order bug: rows of one transaction share inserted_at (its now()); they stream in insert
                // order, and replay returns both.
                let tied = BroadcastTier.unique("tied")
                let stream = backend.broadcasts()
                try await backend.execute(
                    sql: """
                        do $x$ begin perform realtime.send('{}', 'first', '\(tied)'); \
                        perform realtime.send('{}', 'second', '\(tied)'); end $x$
                        """)
                let streamed = try await BroadcastTier.next(2, from: stream) { $0.topic == tied }
                #expect(streamed.map(\.event) == ["first", "second"])
                #expect(streamed[0].insertedAt == streamed[1].insertedAt)
                let tiedReplay = try await backend.replay(topic: tied, isPrivate: true, sinceMilliseconds: 0, limit: 25)
                #expect(Set(tiedReplay) == Set(streamed))
            }
        }

        @Test("§B1.2 send adds a top-level id unless present; a failing send is lost, its writer still commits")
        func sendSemantics() async throws {
            try await BroadcastTier.withBackend { backend in
                let topic = BroadcastTier.unique("send")
                let stream = backend.broadcasts()
                let added = try #require(
                    try await backend.send(payload: .object(["a": .int(1)]), event: "e", topic: topic, isPrivate: true))
                #expect(added.payload == .object(["a": .int(1), "id": .string(added.id)]))
                let own = try #require(
                    try await backend.send(
                        payload: .object(["id": .string("mine")]), event: "e", topic: topic, isPrivate: true))
                #expect(own.payload == .object(["id": .string("mine")]))
                #expect(own.id != "mine")
                let streamed = try await BroadcastTier.next(2, from: stream)
                #expect(streamed == [added, own])

                // A send the database refuses (here a constraint; on Supabase RLS or a missing partition) is lost:
                // send answers nil instead of throwing, and nothing is stored or streamed.
                let doomed = BroadcastTier.unique("doomed")
                try await backend.execute(
                    sql: "alter table realtime.messages add constraint \(doomed) check (topic <> '\(doomed)') "
                        + "not valid")
                let refused = try await backend.send(
                    payload: .object(["a": .int(2)]), event: "e", topic: doomed, isPrivate: true)
                try await backend.execute(sql: "alter table realtime.messages drop constraint \(doomed)")
                #expect(refused == nil)
                #expect(
                    try await backend.replay(topic: doomed, isPrivate: true, sinceMilliseconds: 0, limit: 25).isEmpty)
                let marker = try #require(
                    try await backend.send(payload: .object([:]), event: "marker", topic: topic, isPrivate: true))
                #expect(try await BroadcastTier.next(1, from: stream) == [marker])

                // NULL topic: only a warning; the insert in the same transaction commits, the message is not stored.
                let table = PostgresJobsSQL(table: backend.table).qualifiedTable
                let id = UUID().uuidString.lowercased()
                let lostEvent = BroadcastTier.unique("lost")
                try await backend.execute(
                    sql: """
                        do $x$ begin insert into \(table) (id) values ('\(id)'); \
                        perform realtime.send('{"k": 1}'::jsonb, '\(lostEvent)', null); end $x$
                        """)
                #expect(try await backend.rows().contains { $0["id"] == .string(id) })
                #expect(
                    await BroadcastTier.holds(
                        backend, "select count(*) = 3 from realtime.messages where topic = '\(topic)'"))
                #expect(
                    !(await BroadcastTier.holds(
                        backend, "select exists (select 1 from realtime.messages where event = '\(lostEvent)')")))
                // The check itself can fail the other way: a stored event is found.
                #expect(
                    await BroadcastTier.holds(
                        backend, "select exists (select 1 from realtime.messages where topic = '\(topic)')"))
            }
        }

        @Test("§B1.2 send_binary stores bytes, streams and replays them with no JSON payload")
        func binarySend() async throws {
            try await BroadcastTier.withBackend { backend in
                let topic = BroadcastTier.unique("binary")
                let stream = backend.broadcasts()
                try await backend.execute(
                    sql: #"do $x$ begin perform realtime.send_binary('\x00017fff', 'bytes', '\#(topic)'); end $x$"#)
                let row = try #require(try await BroadcastTier.next(1, from: stream).first)
                #expect(row.binaryPayload == [0x00, 0x01, 0x7f, 0xff])
                #expect(row.payload == nil)
                #expect(row.event == "bytes" && row.topic == topic && row.isPrivate)
                let replayed = try await backend.replay(topic: topic, isPrivate: true, sinceMilliseconds: 0, limit: 25)
                #expect(replayed == [row])
            }
        }

        @Test("§B2 canRead: authenticated on jobs topics; not anon, nor after the policy is dropped; service_role")
        func readAuthorization() async throws {
            try await BroadcastTier.withBackend { backend in
                let name = backend.table.name
                let rowTopic = "\(name):\(UUID().uuidString.lowercased())"
                let authenticated = BroadcastTier.reader("authenticated")
                #expect(try await backend.canRead(topic: name, reader: authenticated))
                #expect(try await backend.canRead(topic: rowTopic, reader: authenticated))
                #expect(try await backend.canRead(topic: "jobs", reader: authenticated))
                #expect(try await !backend.canRead(topic: "orders:1", reader: authenticated))
                #expect(try await !backend.canRead(topic: name, reader: BroadcastTier.reader("anon")))
                #expect(try await !backend.canRead(topic: name, reader: BroadcastTier.reader("no_such_role_x")))
                let service = BroadcastTier.reader("service_role")
                #expect(try await backend.canRead(topic: name, reader: service))
                #expect(try await backend.canRead(topic: "orders:1", reader: service))
                // The probes were rolled back.
                #expect(try await backend.replay(topic: name, isPrivate: true, sinceMilliseconds: 0, limit: 25).isEmpty)
                #expect(try await backend.replay(topic: "orders:1", isPrivate: true, sinceMilliseconds: 0, limit: 25)
                    .isEmpty)

                try await backend.execute(sql: "drop policy jobs_broadcast_read on realtime.messages")
                let withoutPolicy = try await backend.canRead(topic: rowTopic, reader: authenticated)
                let serviceWithoutPolicy = try await backend.canRead(topic: rowTopic, reader: service)
                // Restore the policy (the migration is idempotent) before asserting.
                try await backend.execute(
                    sql: try PostgresJobsBackend.statement(runningMigration: BroadcastMigration.sql))
                #expect(!withoutPolicy)
                #expect(serviceWithoutPolicy)
                #expect(try await backend.canRead(topic: rowTopic, reader: authenticated))
            }
        }

        @Test("The applied migration: security definer function, empty search_path, policy, trigger; idempotent")
        func appliedMigration() async throws {
            try await BroadcastTier.withBackend { backend in
                try await BroadcastTier.check(
                    backend,
                    """
                    select p.prosecdef and p.proconfig = array['search_path=""'] from pg_proc p \
                    where p.oid = 'public.jobs_broadcast()'::regprocedure
                    """)
                try await BroadcastTier.check(
                    backend,
                    """
                    select count(*) = 1 from pg_policies where schemaname = 'realtime' and tablename = 'messages' \
                    and policyname = 'jobs_broadcast_read' and cmd = 'SELECT' and roles = '{authenticated}'
                    """)
                try await BroadcastTier.check(
                    backend,
                    """
                    select relrowsecurity from pg_class where oid = 'realtime.messages'::regclass
                    """)
                try await BroadcastTier.check(
                    backend, "select rolbypassrls from pg_roles where rolname = 'service_role'")
                try await BroadcastTier.check(
                    backend,
                    """
                    select count(*) = 1 from pg_trigger where tgrelid = '\(PostgresJobsSQL(table: backend.table)
                        .qualifiedTable)'::regclass and tgfoid = 'public.jobs_broadcast()'::regprocedure
                    """)
                // Applying the schema and the migration again changes nothing and fails nothing.
                for statement in PostgresRealtimeSchema.statements {
                    try await backend.execute(sql: statement)
                }
                try await backend.execute(
                    sql: try PostgresJobsBackend.statement(runningMigration: BroadcastMigration.sql))
                #expect(await !BroadcastTier.holds(backend, "select 1 = 2"))
            }
        }
    }
}
