import NIOConcurrencyHelpers
import Testing

@testable import SupabaseLocal

/// The in-memory `realtime.messages` (broadcast-from-database.md §B1, §B2, §B5).
@Suite("Broadcast from Database: in-memory backend (§B1, §B2, §B5)")
struct BroadcastBackendTests {
    /// A wall clock the test moves by hand.
    final class ManualWallClock: Sendable {
        let time: NIOLockedValueBox<LocalTimestamp>
        init(_ text: String) { self.time = NIOLockedValueBox(LocalTimestamp(parsing: text)!) }
        var clock: WallClock { WallClock { self.time.withLockedValue { $0 } } }
        func advance(_ duration: Duration) { self.time.withLockedValue { $0 = $0.advanced(by: duration) } }
        var milliseconds: Int64 { self.time.withLockedValue { $0.microsecondsSinceEpoch / 1000 } }
    }

    static func backend(_ clock: ManualWallClock) -> InMemoryJobsBackend {
        InMemoryJobsBackend(checked: .jobs, clock: clock.clock)
    }

    static func events(_ rows: [BroadcastRow]) -> [String] {
        rows.compactMap { $0.payload?["n"]?.encoded() }
    }

    @Test("§B1.2 send stores the row, adds payload.id = row id unless the payload has one, streams it")
    func send() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        let stream = backend.broadcasts()
        let row = try #require(
            try await backend.send(payload: .object(["a": .int(1)]), event: "ping", topic: "jobs:1", isPrivate: false))
        #expect(row.payload?["id"] == .string(row.id))
        #expect(isUUID(row.id))
        #expect(row.isPrivate == false && row.topic == "jobs:1" && row.event == "ping")
        let own = try #require(
            try await backend.send(payload: .object(["id": .int(7)]), event: "ping", topic: "jobs:1", isPrivate: true))
        #expect(own.payload?["id"] == .int(7))
        #expect(own.id != "7")
        #expect(backend.storedBroadcasts() == [row, own])
        var iterator = stream.makeAsyncIterator()
        #expect(await iterator.next() == row)
        #expect(await iterator.next() == own)
    }

    @Test("§B1.3/§B1.4 the trigger: INSERT/UPDATE/DELETE on topics jobs:<id> and jobs, private, exact payload keys")
    func triggerPayloads() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        let id = "2f6a1c7e-0d5b-4a53-8f3e-0c9d1b2a3e4f"
        let inserted = try await backend.insert(["id": .string(id), "status": .string("queued")])
        let updated = try #require(try await backend.update(primaryKey: .string(id), set: ["status": .string("running")]))
        _ = try await backend.delete(primaryKey: .string(id))
        let rows = backend.storedBroadcasts()
        #expect(rows.count == 6)
        #expect(rows.map(\.topic) == ["jobs:\(id)", "jobs", "jobs:\(id)", "jobs", "jobs:\(id)", "jobs"])
        #expect(rows.map(\.event) == ["INSERT", "INSERT", "UPDATE", "UPDATE", "DELETE", "DELETE"])
        #expect(rows.allSatisfy { $0.isPrivate })
        for row in rows {
            let payload = try #require(row.payload?.objectValue)
            #expect(Set(payload.keys) == ["operation", "schema", "table", "record", "old_record", "id"])
            #expect(payload["id"] == .string(row.id))
            #expect(payload["operation"] == .string(row.event))
            #expect(payload["schema"] == .string("public") && payload["table"] == .string("jobs"))
        }
        #expect(rows[0].payload?["record"] == .object(inserted))
        #expect(rows[0].payload?["old_record"] == .null)
        #expect(rows[2].payload?["record"] == .object(updated))
        #expect(rows[2].payload?["old_record"] == .object(inserted))
        #expect(rows[4].payload?["record"] == .null)
        #expect(rows[4].payload?["old_record"] == .object(updated))
        // Same transaction as the row write: the same inserted_at for both topics.
        #expect(rows[0].insertedAt == rows[1].insertedAt)
        #expect(rows[0].id != rows[1].id)
    }

    @Test("broadcastTrigger off: row writes store no messages")
    func triggerSwitch() async throws {
        let backend = Self.backend(ManualWallClock("2026-09-01T10:00:00Z"))
        backend.broadcastTrigger = false
        _ = try await backend.insert([:])
        #expect(backend.storedBroadcasts().isEmpty)
    }

    @Test("§B5 replay: topic and privacy only, newest ≤ limit oldest first, limit clamped to 1…25")
    func replayClamp() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        let since = clock.milliseconds
        for n in 0..<30 {
            clock.advance(.milliseconds(10))
            _ = try await backend.send(payload: .object(["n": .int(n)]), event: "e", topic: "jobs:1", isPrivate: true)
        }
        _ = try await backend.send(payload: .object(["n": .int(99)]), event: "e", topic: "jobs:1", isPrivate: false)
        _ = try await backend.send(payload: .object(["n": .int(98)]), event: "e", topic: "jobs:2", isPrivate: true)
        let five = try await backend.replay(topic: "jobs:1", isPrivate: true, sinceMilliseconds: since, limit: 5)
        #expect(Self.events(five) == ["25", "26", "27", "28", "29"])
        let many = try await backend.replay(topic: "jobs:1", isPrivate: true, sinceMilliseconds: since, limit: 100)
        #expect(many.count == 25)
        #expect(Self.events(many).first == "5" && Self.events(many).last == "29")
        let zero = try await backend.replay(topic: "jobs:1", isPrivate: true, sinceMilliseconds: since, limit: 0)
        #expect(Self.events(zero) == ["29"])
        let negative = try await backend.replay(topic: "jobs:1", isPrivate: true, sinceMilliseconds: since, limit: -3)
        #expect(Self.events(negative) == ["29"])
        let publicRows = try await backend.replay(topic: "jobs:1", isPrivate: false, sinceMilliseconds: since, limit: 25)
        #expect(Self.events(publicRows) == ["99"])
    }

    @Test("§B5 since: integer milliseconds, inclusive lower bound")
    func replaySince() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        _ = try await backend.send(payload: .object(["n": .int(0)]), event: "e", topic: "t", isPrivate: true)
        clock.advance(.milliseconds(1))
        let boundary = clock.milliseconds
        _ = try await backend.send(payload: .object(["n": .int(1)]), event: "e", topic: "t", isPrivate: true)
        clock.advance(.milliseconds(1))
        _ = try await backend.send(payload: .object(["n": .int(2)]), event: "e", topic: "t", isPrivate: true)
        let rows = try await backend.replay(topic: "t", isPrivate: true, sinceMilliseconds: boundary, limit: 25)
        #expect(Self.events(rows) == ["1", "2"])
        let none = try await backend.replay(topic: "t", isPrivate: true, sinceMilliseconds: boundary + 2, limit: 25)
        #expect(none.isEmpty)
    }

    @Test("§B5 order bug: rows of one transaction replay reversed; switch off gives commit order")
    func orderBug() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        let since = clock.milliseconds
        backend.sendBroadcastTransaction(
            (0..<3).map { BroadcastWrite(payload: .object(["n": .int($0)]), event: "e", topic: "t") })
        let stored = backend.storedBroadcasts()
        #expect(Set(stored.map(\.insertedAt)).count == 1)
        #expect(Self.events(stored) == ["0", "1", "2"])
        #expect(backend.reproduceReplayOrderBug)
        let buggy = try await backend.replay(topic: "t", isPrivate: true, sinceMilliseconds: since, limit: 25)
        #expect(Self.events(buggy) == ["2", "1", "0"])
        backend.reproduceReplayOrderBug = false
        let fixed = try await backend.replay(topic: "t", isPrivate: true, sinceMilliseconds: since, limit: 25)
        #expect(Self.events(fixed) == ["0", "1", "2"])
    }

    @Test("§B1.1 retention: rows older than 72 h by the wall clock go; at most maxRows, oldest first")
    func retention() async throws {
        let clock = ManualWallClock("2026-09-01T10:00:00Z")
        let backend = Self.backend(clock)
        _ = try await backend.send(payload: .object(["n": .int(0)]), event: "e", topic: "t", isPrivate: true)
        clock.advance(.seconds(72 * 3600 - 1))
        _ = try await backend.send(payload: .object(["n": .int(1)]), event: "e", topic: "t", isPrivate: true)
        #expect(Self.events(backend.storedBroadcasts()) == ["0", "1"])
        clock.advance(.seconds(2))
        _ = try await backend.send(payload: .object(["n": .int(2)]), event: "e", topic: "t", isPrivate: true)
        #expect(Self.events(backend.storedBroadcasts()) == ["1", "2"])
        backend.setBroadcastRetention(.seconds(72 * 3600), maxRows: 3)
        for n in 3..<6 {
            _ = try await backend.send(payload: .object(["n": .int(n)]), event: "e", topic: "t", isPrivate: true)
        }
        #expect(Self.events(backend.storedBroadcasts()) == ["3", "4", "5"])
        // Many rows past the cap (the store compacts as it drops): the newest `maxRows` remain, in commit order.
        backend.setBroadcastRetention(.seconds(72 * 3600), maxRows: 2000)
        for batch in 0..<100 {
            backend.sendBroadcastTransaction(
                (0..<100).map {
                    BroadcastWrite(payload: .object(["n": .int(100 + batch * 100 + $0)]), event: "e", topic: "t")
                })
        }
        let kept = backend.storedBroadcasts()
        #expect(kept.count == 2000)
        #expect(Self.events(kept).first == "8100" && Self.events(kept).last == "10099")
    }

    @Test("§B2 read rule: jobsMigration lets authenticated read jobs and jobs:%, not anon; service_role bypasses")
    func readRule() async throws {
        let backend = Self.backend(ManualWallClock("2026-09-01T10:00:00Z"))
        let user = BroadcastReader(role: "authenticated", claims: ["role": .string("authenticated")])
        let anon = BroadcastReader(role: "anon", claims: ["role": .string("anon")])
        let service = BroadcastReader(role: "service_role", claims: [:])
        #expect(try await backend.canRead(topic: "jobs", reader: user))
        #expect(try await backend.canRead(topic: "jobs:42", reader: user))
        #expect(try await !backend.canRead(topic: "todos:1", reader: user))
        #expect(try await !backend.canRead(topic: "jobs:42", reader: anon))
        #expect(try await backend.canRead(topic: "todos:1", reader: service))
        backend.broadcastReadRule = .denyAll
        #expect(try await !backend.canRead(topic: "jobs:42", reader: user))
        backend.broadcastReadRule = BroadcastReadRule(policies: [
            .init(roles: ["authenticated"], topicLike: "jobs:_", requiredClaims: ["sub": .string("u1")])
        ])
        let owner = BroadcastReader(role: "authenticated", claims: ["sub": .string("u1")])
        #expect(try await backend.canRead(topic: "jobs:7", reader: owner))
        #expect(try await !backend.canRead(topic: "jobs:77", reader: owner))
        #expect(try await !backend.canRead(topic: "jobs:7", reader: user))
    }

    @Test("SQL LIKE: % and _")
    func like() {
        #expect(sqlLike("jobs", "jobs%"))
        #expect(sqlLike("jobs:1", "jobs%"))
        #expect(!sqlLike("job", "jobs%"))
        #expect(sqlLike("abc", "a_c"))
        #expect(!sqlLike("abbc", "a_c"))
        #expect(sqlLike("", "%"))
    }
}
