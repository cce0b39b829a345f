import Foundation
import Testing

@testable import SupabaseLocal

/// End-to-end tier on real PostgreSQL + wal2json.
///
/// Needs `JOBSYNC_TEST_POSTGRES_URL` (start a cluster with `scripts/pg-throwaway.sh start` and export the URL it
/// prints). Without it every test here **fails**, unless `JOBSYNC_SKIP_POSTGRES_TESTS=1` skips the tier explicitly.
enum PostgresTier {
    static let environment = ProcessInfo.processInfo.environment
    static let skipped = Self.environment["JOBSYNC_SKIP_POSTGRES_TESTS"] == "1"

    /// The connection URL, or a recorded failure that says how to provide one.
    static func url() throws -> String {
        try #require(
            Self.environment["JOBSYNC_TEST_POSTGRES_URL"].flatMap { $0.isEmpty ? nil : $0 },
            """
            JOBSYNC_TEST_POSTGRES_URL is not set, so the PostgreSQL end-to-end tier cannot run. Start a cluster with \
            `export JOBSYNC_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start)`, or set \
            JOBSYNC_SKIP_POSTGRES_TESTS=1 to skip this tier on purpose.
            """
        )
    }

    /// A table name of its own per test, so tests can run in parallel on one database.
    static func uniqueTable(_ identity: ReplicaIdentity) -> TableDescriptor {
        var table = TableDescriptor.jobs
        table.name = "jobs_e2e_" + String(UInt32.random(in: 0...UInt32.max), radix: 16)
        table.replicaIdentity = identity
        return table
    }

    /// Runs `body` with a running backend on a fresh table, then stops the backend and checks that it stopped
    /// cleanly.
    static func withBackend(
        _ identity: ReplicaIdentity,
        maxChangesPerPoll: Int = 100,
        _ body: @Sendable (PostgresJobsBackend) async throws -> Void
    ) async throws {
        let configuration = try PostgresJobsBackend.Configuration(
            url: try Self.url(),
            table: Self.uniqueTable(identity),
            dropExistingTable: true,
            maxChangesPerPoll: maxChangesPerPoll
        )
        let backend = PostgresJobsBackend(configuration: configuration)
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await backend.run() }
            defer { group.cancelAll() }
            do {
                try await body(backend)
                await Self.dropTable(of: backend)
            } catch {
                await Self.dropTable(of: backend)
                throw error
            }
        }
    }

    /// Drops the test's table, clock table and trigger function (best effort).
    static func dropTable(of backend: PostgresJobsBackend) async {
        for statement in PostgresJobsSQL(table: backend.table).dropStatements {
            try? await backend.execute(sql: statement)
        }
    }

    /// The next `count` changes from `stream`, or a failure after `timeout` (a guard against hanging, not a
    /// performance assertion: changes normally arrive within ~100 ms).
    static func next(
        _ count: Int,
        from stream: AsyncStream<TableChange>,
        timeout: Duration = .seconds(20)
    ) async throws -> [TableChange] {
        try await withThrowingTaskGroup(of: [TableChange]?.self) { group in
            group.addTask {
                var changes: [TableChange] = []
                for await change in stream {
                    changes.append(change)
                    if changes.count == count { break }
                }
                return changes
            }
            group.addTask {
                try await Task.sleep(for: timeout)
                return nil
            }
            defer { group.cancelAll() }
            let first = try await group.next() ?? nil
            return try #require(first, "timed out waiting for \(count) change(s) from the wal2json slot")
        }
    }

    /// The row's `commitTimestampText` shape: `YYYY-MM-DDTHH:MM:SS.mmmZ`.
    static func isMillisecondUTC(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard bytes.count == 24, bytes[10] == UInt8(ascii: "T"), bytes[19] == UInt8(ascii: "."),
              bytes[23] == UInt8(ascii: "Z")
        else { return false }
        return bytes[20..<23].allSatisfy { $0 >= 48 && $0 <= 57 }
    }
}

extension SupabaseLocalPostgresTests {
    @Suite(
        .enabled(if: !PostgresTier.skipped, "JOBSYNC_SKIP_POSTGRES_TESTS=1"),
        .timeLimit(.minutes(1))
    )
    struct EndToEnd {
        static let id = "6f1e1a52-3b9c-4c1e-9b8e-2f3d4c5b6a79"
        static let resultSQL = #"'{"classification": "invoice", "confidence": 0.97, "pages": 9007199254740993}'"#

        @Test("§5.2/§5.3 SQL insert/update/delete arrive typed, with commit timestamps; default identity = PK")
        func sqlChangesDefaultIdentity() async throws {
            try await PostgresTier.withBackend(.default) { backend in
                let table = PostgresJobsSQL(table: backend.table).qualifiedTable
                let stream = backend.changes()
                try await backend.execute(sql: "insert into \(table) (id) values ('\(Self.id)')")
                try await backend.execute(
                    sql: "update \(table) set status = 'completed', result = \(Self.resultSQL) where id = '\(Self.id)'"
                )
                try await backend.execute(sql: "delete from \(table) where id = '\(Self.id)'")
                let changes = try await PostgresTier.next(3, from: stream)
                #expect(changes.map(\.kind) == [.insert, .update, .delete])
                #expect(changes.allSatisfy { $0.table == backend.table.name && $0.schema == "public" })

                let insert = changes[0]
                #expect(insert.oldRecord == nil)
                #expect(insert.record?["id"] == .string(Self.id))
                #expect(insert.record?["status"] == .string("queued"))
                #expect(insert.record?["result"] == .null)

                let update = changes[1]
                let result = try #require(update.record?["result"])
                #expect(
                    result
                        == .object([
                            "classification": .string("invoice"), "confidence": .number("0.97"),
                            "pages": .number("9007199254740993"),
                        ]),
                    "result must arrive as JSON, not as a string, with int8-sized numbers exact"
                )
                #expect(update.oldRecord == ["id": .string(Self.id)], "default identity: old = primary key only")

                let delete = changes[2]
                #expect(delete.record == nil)
                #expect(delete.oldRecord == ["id": .string(Self.id)])

                // Commit timestamps: ordered, never before the row's own updated_at (set inside the transaction),
                // shown by Realtime with millisecond precision.
                #expect(insert.commitTimestamp < update.commitTimestamp)
                #expect(update.commitTimestamp < delete.commitTimestamp)
                let updatedAtText = try #require(update.record?["updated_at"]?.stringValue)
                #expect(updatedAtText.hasSuffix("+00:00") && updatedAtText.contains("T"))
                let updatedAt = try #require(LocalTimestamp(parsing: updatedAtText))
                #expect(updatedAt <= update.commitTimestamp)
                #expect(changes.allSatisfy { PostgresTier.isMillisecondUTC($0.commitTimestamp.commitTimestampText) })
            }
        }

        @Test("§5.3 REPLICA IDENTITY FULL: old = the whole old row, typed")
        func sqlChangesFullIdentity() async throws {
            try await PostgresTier.withBackend(.full) { backend in
                let table = PostgresJobsSQL(table: backend.table).qualifiedTable
                let stream = backend.changes()
                try await backend.execute(
                    sql: "insert into \(table) (id, status, result) values ('\(Self.id)', 'processing', '{\"a\": [1]}')"
                )
                try await backend.execute(
                    sql: "update \(table) set status = 'completed', progress = 'done', result = \(Self.resultSQL) "
                        + "where id = '\(Self.id)'"
                )
                try await backend.execute(sql: "delete from \(table) where id = '\(Self.id)'")
                let changes = try await PostgresTier.next(3, from: stream)
                #expect(changes.map(\.kind) == [.insert, .update, .delete])
                let inserted = try #require(changes[0].record)
                let updated = try #require(changes[1].record)

                let oldOnUpdate = try #require(changes[1].oldRecord)
                #expect(oldOnUpdate == inserted, "FULL identity: UPDATE old = the row before the update")
                #expect(oldOnUpdate["status"] == .string("processing"))
                #expect(oldOnUpdate["result"] == .object(["a": .array([.number("1")])]))
                #expect(Set(oldOnUpdate.keys) == Set(backend.table.columns.map(\.name)))

                #expect(changes[2].oldRecord == updated, "FULL identity: DELETE old = the deleted row")
                #expect(changes[2].oldRecord?["progress"] == .string("done"))
            }
        }

        @Test("Backend writes: defaults, strictly increasing updated_at, typed rows, errors, changes")
        func backendOperations() async throws {
            try await PostgresTier.withBackend(.default) { backend in
                let stream = backend.changes()
                let row = try await backend.insert(["progress": .string("Processing page 1 of 2")])
                let id = try #require(row["id"])
                #expect(row["status"] == .string("queued"))
                #expect(row["result"] == .null)
                #expect(row["created_at"]?.stringValue?.hasSuffix("+00:00") == true)

                var previous = try #require(row["updated_at"]?.stringValue.flatMap(LocalTimestamp.init(parsing:)))
                for step in 0..<5 {
                    let updated = try #require(try await backend.update(primaryKey: id, set: ["progress": .int(step)]))
                    let stamp = try #require(updated["updated_at"]?.stringValue.flatMap(LocalTimestamp.init(parsing:)))
                    #expect(stamp > previous, "updated_at must strictly increase")
                    previous = stamp
                }
                let done = try await backend.update(
                    primaryKey: id,
                    set: ["status": .string("completed"), "result": .object(["classification": .string("memo")])]
                )
                #expect(done?["result"] == .object(["classification": .string("memo")]))
                #expect(try await backend.rows().count == 1)

                let duplicate = await #expect(throws: SupabaseLocalError.self) { try await backend.insert(["id": id]) }
                #expect(duplicate?.code == .duplicateKey)
                let unknown = await #expect(throws: SupabaseLocalError.self) {
                    try await backend.insert(["nope": .null])
                }
                #expect(unknown?.code == .invalidRow)
                #expect(try await backend.update(primaryKey: .string("not-a-uuid"), set: [:]) == nil)
                #expect(try await backend.update(primaryKey: .string(Self.id), set: [:]) == nil)

                let deleted = try await backend.delete(primaryKey: id)
                #expect(deleted?["status"] == .string("completed"))
                #expect(try await backend.delete(primaryKey: id) == nil)
                #expect(try await backend.rows().isEmpty)

                // 1 insert + 6 updates + 1 delete, in commit order.
                let changes = try await PostgresTier.next(8, from: stream)
                #expect(changes.map(\.kind) == [.insert] + Array(repeating: .update, count: 6) + [.delete])
                #expect(changes[6].record?["status"] == .string("completed"))
                #expect(backend.statistics.malformedRows == 0)
            }
        }

        @Test("§5.6 a full batch is followed by an immediate re-read: 250 changes in one commit, all in order")
        func largeTransaction() async throws {
            try await PostgresTier.withBackend(.default, maxChangesPerPoll: 100) { backend in
                let table = PostgresJobsSQL(table: backend.table).qualifiedTable
                let stream = backend.changes()
                try await backend.execute(
                    sql: "insert into \(table) (progress) select 'row ' || n from generate_series(1, 250) as n"
                )
                try await backend.execute(sql: "update \(table) set status = 'processing'")
                let changes = try await PostgresTier.next(500, from: stream)
                let inserted = changes.prefix(250).compactMap { $0.record?["progress"]?.stringValue }
                #expect(inserted == (1...250).map { "row \($0)" })
                #expect(changes.suffix(250).allSatisfy { $0.kind == .update })
            }
        }

        @Test("Stopping the backend ends change streams and fails later operations")
        func stopping() async throws {
            let configuration = try PostgresJobsBackend.Configuration(
                url: try PostgresTier.url(), table: PostgresTier.uniqueTable(.default), dropExistingTable: true
            )
            let backend = PostgresJobsBackend(configuration: configuration)
            let stream = backend.changes()
            let runner = Task { try await backend.run() }
            _ = try await backend.rows()
            await PostgresTier.dropTable(of: backend)
            runner.cancel()
            try await runner.value
            var iterator = stream.makeAsyncIterator()
            #expect(await iterator.next() == nil)
            let error = await #expect(throws: SupabaseLocalError.self) { try await backend.rows() }
            #expect(error?.code == .backendFailure)
            await #expect(throws: SupabaseLocalError.self) { try await backend.run() }
        }
    }
}
