import Foundation
import JobSyncCore
import JobSyncTestSupport
import SupabaseREST
import Testing

@testable import JobSync

/// Runs `client.run()` around `body`, then cancels it.
func withRunning<T: Sendable>(
    _ client: JobSyncClient,
    _ body: @Sendable () async throws -> T
) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask {
            try await client.run()
            return nil
        }
        let value = try await body()
        group.cancelAll()
        while let _ = try await group.next() {}
        return value
    }
}

func makeClient(
    source: FakeSource,
    feed: FakeFeed?,
    clock: ManualClock,
    mode: JobSyncClient.WatchMode = .jobs,
    maximumFilteredIDs: Int = 10_000,
    store: JobStore? = nil
) throws -> JobSyncClient {
    try JobSyncClient(
        configuration: .init(
            source: source, feed: feed, mode: mode, clock: clock, maximumFilteredIDs: maximumFilteredIDs,
            jitter: { $0 }),  // always the ceiling: deterministic
        store: store)
}

@Suite("JobSyncClient with a fake feed, a fake source and a manual clock")
struct JobSyncClientTests {
    @Test("realtime disabled: polls at once, then on the backoff schedule, until the job completes")
    func pollingOnly() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        source.put(row(idA, status: "processing", updatedAt: ts(1), progress: "Processing page 1 of 2"))
        let client = try makeClient(source: source, feed: nil, clock: clock)
        client.watch([idA])
        let job = try await withRunning(client) { () async throws -> Job in
            var updates = client.store.updates(for: idA).makeAsyncIterator()
            #expect(statusOf(try await updates.next()) == .processing)
            await source.waitForCalls(2)  // the fetch of the newly watched id and the first poll, both before the change
            source.put(
                row(idA, status: "completed", updatedAt: ts(2), result: .object(["classification": .string("memo")])))
            await clock.waitForSleepers(1)  // the next poll
            clock.advance(by: .seconds(30))
            guard case .updated(let job)? = try await updates.next() else {
                throw JobSyncError(code: .cancelled, message: "")
            }
            return job
        }
        #expect(job.status == .completed)
        #expect(job.result?.view?.classification == "memo")
        #expect(client.statistics.polls >= 1)
        #expect(source.calls.contains { $0.hasPrefix("since:") })  // after the first rows, polls use the watermark
    }

    @Test("all-jobs mode: a backlog larger than the row cap is read in consecutive capped reads, without waiting")
    func backlogReadInCappedReads() async throws {
        let clock = ManualClock()
        let source = FakeSource(maximumRowsPerRead: 10)
        var ids: [JobID] = []
        for n in 0..<35 {
            let id = try JobID(UUID().uuidString.lowercased())
            ids.append(id)
            source.put(row(id, status: "completed", updatedAt: ts(n % 60)))
        }
        let client = try makeClient(source: source, feed: nil, clock: clock, mode: .allJobs)
        try await withRunning(client) { () async throws in
            while client.store.jobsInMemory.total < 35 { await Task.yield() }
        }
        // Four reads (10 + 10 + 10 + 5 rows, each from where the last stopped), and not one clock advance.
        #expect(source.calls.filter { $0.hasPrefix("since:") }.count == 4)
        #expect(clock.now.offset == .zero)
    }

    @Test("a row dated far in the future is merged but moves neither the watermark nor where the next poll starts")
    func futureDatedRow() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        source.put(row(idA, status: "processing", updatedAt: "2100-01-01T00:00:00.000000Z"))
        source.put(row(idB, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: nil, clock: clock)
        client.watch([idA, idB])
        try await withRunning(client) { () async throws in
            await source.waitForCalls(2)  // the fetch of the watched ids and the first poll
            while !source.calls.contains(where: { $0.hasPrefix("since:") }) {
                await clock.waitForSleepers(1)
                clock.advance(by: .seconds(30))
                await Task.yield()
            }
        }
        #expect(client.store.job(idA)?.status == .processing)
        #expect(client.store.watermark == JobTimestamp(ts(1)))
        let since = try #require(source.calls.first { $0.hasPrefix("since:") })
        #expect(since < "since:2099", "\(since)")
    }

    @Test("§10 subscribe, live, reconcile by ids, then changes over the feed; mode live")
    func liveFlow() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "queued", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            #expect(feed.bindings.map(\.filter) == ["id=in.(\(idA.rawValue))"])
            var updates = client.store.updates(for: idA).makeAsyncIterator()
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            #expect(client.statistics.reconciliations == 1)
            #expect(statusOf(try await updates.next()) == .queued)
            let record = row(idA, status: "PROCESSING", updatedAt: ts(2), progress: "Processing page 3 of 10")
            await feed.emit(.change(JobChange(type: .update, record: record, oldRecord: ["id": .string(idA.rawValue)])))
            #expect(statusOf(try await updates.next()) == .processing)
            // The same version again (e.g. from an audit) is not delivered twice.
            await feed.emit(.change(JobChange(type: .update, record: record)))
            await feed.emit(.change(JobChange(type: .update, record: row(idA, status: "completed", updatedAt: ts(3)))))
            #expect(statusOf(try await updates.next()) == .completed)
            #expect(try await updates.next() == nil)
        }
    }

    @Test("§5.4 a 413-truncated change triggers a re-fetch; subscribers see the full row")
    func truncatedRefetch() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        let result: JSONValue = .object([
            "classification": .string("invoice"), "confidence": .number(JSONNumber(text: "0.91")),
        ])
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            source.put(row(idA, status: "completed", updatedAt: ts(4), result: result))
            var updates = client.store.updates(for: idA).makeAsyncIterator()
            #expect(statusOf(try await updates.next()) == .processing)
            let truncated = JobChange(
                type: .update, record: row(idA, status: "completed", updatedAt: ts(4)),
                errors: ["Error 413: Payload Too Large"], isTruncated: true)
            await feed.emit(.change(truncated))
            // The first terminal state subscribers see already carries the re-fetched result.
            guard case .updated(let job)? = try await updates.next() else {
                Issue.record("expected the completed job")
                return
            }
            #expect(job.result?.raw == result)
            #expect(!client.store.isIncomplete(idA))
            // When the re-fetch fails, the truncated state is not merged: the row is fetched again until it succeeds,
            // and subscribers see the newer version once, with its result.
            let newer: JSONValue = .object([
                "classification": .string("receipt"), "confidence": .number(JSONNumber(text: "0.88")),
            ])
            source.put(row(idA, status: "completed", updatedAt: ts(5), result: newer))
            source.failNext(JobSyncError(RESTError(code: .unavailable, message: "down", httpStatus: 503)))
            await feed.emit(
                .change(
                    JobChange(
                        type: .update, record: row(idA, status: "completed", updatedAt: ts(5)),
                        errors: ["Error 413: Payload Too Large"], isTruncated: true)))
            // (The per-job sequence ended with the first terminal state; read the store.)
            for _ in 0..<500 where client.store.job(idA)?.updatedAt != JobTimestamp(ts(5)) {
                try await Task.sleep(for: .milliseconds(10))
            }
            #expect(client.store.job(idA)?.updatedAt == JobTimestamp(ts(5)))
            #expect(client.store.job(idA)?.result?.raw == newer)
            #expect(!client.store.isIncomplete(idA))
            #expect(client.statistics.refetches == 2)
        }
    }

    @Test("DELETE over the feed makes waitForCompletion throw jobDeleted")
    func deletionEndsWait() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        let error = try await withRunning(client) { () async -> JobSyncError? in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            await feed.emit(.change(JobChange(type: .delete, record: nil, oldRecord: ["id": .string(idA.rawValue)])))
            do {
                _ = try await client.waitForCompletion(of: idA, timeout: .seconds(60))
                return nil
            } catch {
                return error as? JobSyncError
            }
        }
        #expect(error?.code == .jobDeleted)
    }

    @Test("a failed job makes waitForCompletion throw jobFailed with the job's error text")
    func failedJob() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        source.put(
            row(idA, status: "FAILED", updatedAt: ts(1), error: "Failed to process PDF: File appears to be corrupted"))
        let client = try makeClient(source: source, feed: nil, clock: clock)
        let error = try await withRunning(client) { () async -> JobSyncError? in
            do {
                _ = try await client.waitForCompletion(of: idA, timeout: .seconds(60))
                return nil
            } catch {
                return error as? JobSyncError
            }
        }
        #expect(error?.code == .jobFailed)
        #expect(error?.jobError == "Failed to process PDF: File appears to be corrupted")
    }

    @Test("waitForCompletion times out on the injected clock")
    func timeout() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "queued", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        let error = try await withRunning(client) { () async -> JobSyncError? in
            async let wait: JobSyncError? = {
                do {
                    _ = try await client.waitForCompletion(of: idA, timeout: .seconds(10))
                    return nil
                } catch {
                    return error as? JobSyncError
                }
            }()
            await clock.waitForSleepers(2)  // the first poll and the timeout
            clock.advance(by: .seconds(10))
            return await wait
        }
        #expect(error?.code == .timeout)
    }

    @Test("a finished job restored from persistence is answered without any request")
    func answeredFromCache() async throws {
        let persistence = try SQLiteJobPersistence(path: ":memory:")
        let seed = try JobStore(configuration: .init(persistence: persistence))
        seed.merge(
            observe(row(idB, status: "completed", updatedAt: ts(9), result: .object(["classification": .string("x")]))))
        let store = try JobStore(configuration: .init(persistence: persistence))
        let source = FakeSource()
        let client = try makeClient(source: source, feed: nil, clock: ManualClock(), store: store)
        let job = try await client.waitForCompletion(of: idB, timeout: .seconds(1))
        #expect(job.result?.view?.classification == "x")
        #expect(source.calls.isEmpty)
    }

    @Test("a restarted process resumes from the persisted store: unfinished jobs are watched and polled again")
    func resumeAfterRestart() async throws {
        let persistence = try SQLiteJobPersistence(path: ":memory:")
        let before = try JobStore(configuration: .init(persistence: persistence))
        before.merge(observe(row(idA, status: "processing", updatedAt: ts(1))))
        before.merge(observe(row(idB, status: "completed", updatedAt: ts(2))))
        let source = FakeSource()
        source.put(row(idA, status: "completed", updatedAt: ts(3)))
        let store = try JobStore(configuration: .init(persistence: persistence))
        let client = try makeClient(source: source, feed: nil, clock: ManualClock(), store: store)
        client.resumeWatching()
        #expect(client.watchedIDs == [idA])
        let job = try await withRunning(client) { () async throws -> Job in
            try await client.waitForCompletion(of: idA, timeout: .seconds(60))
        }
        #expect(job.updatedAt == JobTimestamp(ts(3)))
        #expect(try JobStore(configuration: .init(persistence: persistence)).job(idA)?.status == .completed)
    }

    @Test("while live with a job open, one audit request (versions only) per 5 s; losing the feed falls back to polling; live again reconciles")
    func auditAndFallback() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            let callsBefore = source.calls.count
            clock.advance(by: .seconds(5))
            await source.waitForCalls(callsBefore + 1)
            #expect(source.calls.last?.hasPrefix("versions:") == true)  // one watermark request of versions
            await feed.emit(.notLive(reason: "socket lost"))
            await client.waitForTransportMode(.polling)
            source.put(row(idA, status: "completed", updatedAt: ts(2)))
            var updates = client.store.updates(for: idA).makeAsyncIterator()
            #expect(statusOf(try await updates.next()) == .processing)
            // The first poll comes within 1 s of losing the feed.
            clock.advance(by: .seconds(1))
            #expect(statusOf(try await updates.next()) == .completed)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            #expect(client.statistics.liveTransitions == 2)
            #expect(client.statistics.audits >= 1)
        }
    }

    @Test("§8 a DELETE the feed never delivered is found by the deletion sweep: with a job open, the 60th 5 s audit (300 s) reads by id")
    func deletionSweepFindsDroppedDelete() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            let callsAtLive = source.calls.count
            source.remove(idA)  // deleted on the server; no DELETE ever reaches the feed
            for _ in 1...60 {
                await clock.waitForSleepers(1)  // the next audit timer
                let before = source.calls.count
                clock.advance(by: .seconds(5))
                await source.waitForCalls(before + 1)
            }
            let calls = source.calls[callsAtLive...].map { $0.hasPrefix("versions:") ? "versions" : $0 }
            try #require(calls == Array(repeating: "versions", count: 59) + ["ids:1"])
            while client.statistics.deletionSweeps == 0 { await Task.yield() }  // counted once it is merged
            #expect(client.store.isDeleted(idA))
            #expect(client.statistics.deletionSweeps == 1)
        }
    }

    @Test("§5.6 a change the feed never delivered is found by the cheap audit within 5 s; only its row is read in full")
    func cheapAuditFindsDroppedChange() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        for id in [idA, idB, idC] { source.put(row(id, status: "processing", updatedAt: ts(1))) }
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA, idB, idC])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            await clock.waitForSleepers(2)
            #expect(clock.deadlines == [.seconds(1), .seconds(5)])  // the first poll's old timer; the audit at 5 s
            let callsAtLive = source.calls.count
            var updates = client.store.updates(for: idB).makeAsyncIterator()
            #expect(statusOf(try await updates.next()) == .processing)
            // idC's change reaches the feed; idB's completion is committed but never delivered.
            let delivered = row(idC, status: "processing", updatedAt: ts(3), progress: "Processing page 2 of 3")
            source.put(delivered)
            await feed.emit(.change(JobChange(type: .update, record: delivered)))
            let result: JSONValue = .object(["classification": .string("invoice")])
            source.put(row(idB, status: "completed", updatedAt: ts(2), result: result))
            clock.advance(by: .seconds(5))
            guard case .updated(let job)? = try await updates.next() else {
                Issue.record("expected idB's completion")
                return
            }
            #expect(job.status == .completed)
            #expect(job.result?.raw == result)  // the full row, read by id
            #expect(clock.now.offset == .seconds(5))
            // One versions read, then the full row of idB only (idA unchanged, idC already current).
            let calls = Array(source.calls[callsAtLive...])
            #expect(calls.count == 2)
            #expect(calls.first?.hasPrefix("versions:") == true)
            #expect(source.idRequests.last == [idB])
            #expect(client.statistics.auditFetches == 1)
            // A quiet table: the next audit (idA and idC are still open: 5 s) is one request and reads no row.
            await clock.waitForSleepers(1)
            #expect(clock.deadlines == [.seconds(10)])
            clock.advance(by: .seconds(5))
            while client.statistics.audits < 2 { await Task.yield() }
            #expect(source.calls.count == callsAtLive + 3)
            #expect(source.calls.last?.hasPrefix("versions:") == true)
            #expect(client.statistics.auditFetches == 1)
        }
    }

    @Test("live before anything is watched: the fetch of a newly watched job gives the audit its watermark, 5 s at once")
    func cheapAuditAfterLateWatch() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        try await withRunning(client) { () async throws in
            await client.waitForTransportMode(.live)  // no channel to join: live at once, nothing to reconcile
            await clock.waitForSleepers(2)
            #expect(clock.deadlines == [.seconds(1), .seconds(30)])  // nothing open
            var updates = client.store.updates(for: idA).makeAsyncIterator()
            client.watch([idA])
            #expect(statusOf(try await updates.next()) == .processing)  // fetched by id
            await clock.waitForSleepers(3)
            #expect(clock.deadlines == [.seconds(1), .seconds(5), .seconds(30)])
            source.put(row(idA, status: "completed", updatedAt: ts(2)))  // the feed never delivers it
            clock.advance(by: .seconds(5))
            #expect(statusOf(try await updates.next()) == .completed)
            #expect(source.calls.count == 3)
            #expect(source.calls[1].hasPrefix("versions:") && source.calls[2] == "ids:1")
        }
    }

    @Test("audits every 5 s while a watched job is open, every 30 s once all finished; a job reopened over the feed brings 5 s back")
    func auditIntervalFollowsOpenJobs() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            await clock.waitForSleepers(2)
            #expect(clock.deadlines == [.seconds(1), .seconds(5)])
            // The last open job finishes (over the feed): the pending 5 s audit runs, the next one is 30 s later.
            let done = row(idA, status: "completed", updatedAt: ts(2))
            source.put(done)
            await feed.emit(.change(JobChange(type: .update, record: done)))
            clock.advance(by: .seconds(5))
            await clock.waitForSleepers(1)
            #expect(clock.deadlines == [.seconds(35)])
            #expect(client.statistics.audits == 1)
            // Retried on the server (a newer, unfinished version) and seen over the feed: a 5 s audit at once.
            let retried = row(idA, status: "queued", updatedAt: ts(3))
            source.put(retried)
            await feed.emit(.change(JobChange(type: .update, record: retried)))
            await clock.waitForSleepers(2)
            #expect(clock.deadlines == [.seconds(10), .seconds(35)])
            clock.advance(by: .seconds(5))
            while client.statistics.audits < 2 { await Task.yield() }
            #expect(source.calls.last?.hasPrefix("versions:") == true)
        }
    }

    @Test("full jitter stays within 0…maximum")
    func jitterRange() {
        for _ in 0..<100 {
            let value = JobSyncClient.fullJitter(.seconds(2))
            #expect(value >= .zero && value <= .seconds(2))
        }
        #expect(JobSyncClient.fullJitter(.zero) == .zero)
    }

    @Test("invalid configurations are typed errors")
    func invalidConfiguration() throws {
        #expect(throws: JobSyncError.self) {
            try JobSyncClient(
                configuration: .init(source: FakeSource(supportsWatermark: false), feed: nil, mode: .allJobs))
        }
        #expect(throws: JobSyncError.self) {
            try JobSyncClient(configuration: .init(source: FakeSource(), feed: nil, initialPollDelay: .zero))
        }
        #expect(throws: JobSyncError.self) {
            try JobSyncClient(configuration: .init(source: FakeSource(), feed: nil, openAuditInterval: .zero))
        }
    }

    @Test("250 ids → 3 id=in.(…) bindings of ≤ 100; beyond the limit one table-wide binding, filtered locally")
    func bindings() async throws {
        let ids = (0..<250).map { try! JobID(String(format: "00000000-0000-0000-0000-%012d", $0)) }
        let client = try makeClient(source: FakeSource(), feed: FakeFeed(), clock: ManualClock())
        client.watch(ids)
        let bindings = client.channelPlan().bindings
        #expect(bindings.map { $0.ids?.count } == [100, 100, 50])
        #expect(Set(bindings.flatMap { $0.ids ?? [] }) == Set(ids))

        let feed = FakeFeed()
        let wide = try makeClient(source: FakeSource(), feed: feed, clock: ManualClock(), maximumFilteredIDs: 200)
        wide.watch(ids)
        #expect(wide.channelPlan().bindings == [JobFeedBinding(ids: nil)])
        await wide.apply(JobChange(type: .insert, record: row(idA, status: "queued")))  // not watched
        await wide.apply(JobChange(type: .insert, record: row(ids[7], status: "queued")))
        await wide.apply(JobChange(type: .insert, record: ["id": .string("garbage")]))
        #expect(wide.statistics.changesIgnored == 1)
        #expect(wide.statistics.malformedChanges == 1)
        #expect(wide.store.job(idA) == nil)
        #expect(wide.store.job(ids[7])?.status == .queued)
    }

    @Test("§11.2 a 429 with Retry-After delays the next poll by at least that long")
    func retryAfterDelaysPoll() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let limited = JobSyncError(
            RESTError(code: .rateLimited, message: "slow down", httpStatus: 429, retryAfter: .seconds(7)))
        source.failNext(limited)  // the initial fetch of the watched id
        source.failNext(limited)  // the first poll
        let client = try makeClient(source: source, feed: nil, clock: clock)
        client.watch([idA])
        try await withRunning(client) {
            await client.waitForTransportMode(.offline)
            await clock.waitForSleepers(2)
            #expect(clock.deadlines == [.seconds(7), .seconds(7)])
        }
        #expect(client.statistics.restFailures == 1)
    }

    @Test("a failed fetch of newly watched ids is retried after the machine's backoff, on the injected clock")
    func fetchRetriedOnBackoff() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        source.failNext(JobSyncError(RESTError(code: .unavailable, message: "down", httpStatus: 503)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await clock.waitForSleepers(2)
            // The first poll within 1 s; the fetch retry after the first backoff step, 2 s (jitter: the ceiling).
            #expect(clock.deadlines == [.seconds(1), .seconds(2)])
            #expect(source.calls == ["ids:1"])
            #expect(client.transportMode == .polling)  // a failed fetch is no failed catch-up
            clock.advance(by: .seconds(2))
            while client.store.job(idA) == nil { await Task.yield() }
        }
        #expect(client.statistics.restFailures == 0)
        #expect(client.statistics.fetchFailures == 1)
    }

    @Test("watching a new job while live adds one channel; the others stay up and the mode stays live")
    func addChannelWhileLive() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        source.put(row(idB, status: "queued", updatedAt: ts(2)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            await client.waitForTransportMode(.live)
            var updates = client.store.updates(for: idB).makeAsyncIterator()
            client.watch([idB])
            await feed.waitForSubscriptions(2)
            #expect(feed.bindings.map(\.filter) == ["id=in.(\(idA.rawValue))", "id=in.(\(idB.rawValue))"])
            #expect(client.transportMode == .live)
            await feed.emit(.live)
            #expect(statusOf(try await updates.next()) == .queued)
            #expect(client.transportMode == .live)
            #expect(client.statistics.liveTransitions == 1)
        }
    }
}

@Suite("JobSyncClient transport modes")
struct JobSyncClientTransportModeTests {
    @Test("transportModes() yields the current mode, then each change, and finishes when run() returns")
    func modesSequence() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        let feed = FakeFeed()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: feed, clock: clock)
        client.watch([idA])
        let modes = client.transportModes()
        let collected = Task {
            var seen: [TransportMode] = []
            for await mode in modes { seen.append(mode) }
            return seen
        }
        try await withRunning(client) { () async throws in
            await feed.waitForSubscriptions(1)
            await feed.emit(.live)
            #expect(await client.waitForTransportMode(.live))
            await feed.emit(.notLive(reason: "socket lost"))
            #expect(await client.waitForTransportMode(.polling))
        }
        #expect(await collected.value == [.polling, .live, .polling])  // finished with run()
        // After run() returned: the current mode, then the end; a wait for another mode returns false at once.
        var after: [TransportMode] = []
        for await mode in client.transportModes() { after.append(mode) }
        #expect(after == [.polling])
        #expect(await client.waitForTransportMode(.live) == false)
        #expect(await client.waitForTransportMode(.polling))
    }

    @Test("waitForTransportMode returns false when run() ends first, and when its task is cancelled")
    func waitEnds() async throws {
        let clock = ManualClock()
        let client = try makeClient(source: FakeSource(), feed: FakeFeed(), clock: clock)
        let cancelled = Task { await client.waitForTransportMode(.live) }
        cancelled.cancel()
        #expect(await cancelled.value == false)
        let waiting = Task { await client.waitForTransportMode(.live) }  // made before run() starts: waits for it
        try await withRunning(client) { () async in
            await clock.waitForSleepers(1)  // running: the first poll timer
        }
        #expect(await waiting.value == false)
    }
}

@Suite("ChannelPlan")
struct ChannelPlanTests {
    static func ids(_ range: Range<Int>) -> Set<JobID> {
        Set(range.map { try! JobID(String(format: "00000000-0000-0000-0000-%012d", $0)) })
    }

    @Test("new ids get channels of their own; a small removal keeps the channels; shape changes rebuild")
    func decisions() {
        var plan = ChannelPlan(mode: .jobs, watched: Self.ids(0..<150), maximumFilteredIDs: 1_000)
        #expect(plan.bindings.map { $0.ids?.count } == [100, 50])
        #expect(plan.watchedChanged(Self.ids(0..<150)) == .keep)
        guard case .add(let first, let added) = plan.watchedChanged(Self.ids(0..<360)) else {
            Issue.record("watching 210 more ids did not add channels")
            return
        }
        #expect(first == 2)
        #expect(added.map { $0.ids?.count } == [100, 100, 10])
        #expect(Set(added.flatMap { $0.ids ?? [] }) == Self.ids(150..<360))
        #expect(plan.watchedChanged(Self.ids(0..<300)) == .keep)  // 60 of 360 unwatched: the channels stay
        #expect(plan.watchedChanged(Self.ids(0..<100)) == .rebuild)  // more than half unwatched
    }

    @Test("beyond the filtered limit one table-wide binding; back under it, filtered again; all-jobs never changes")
    func tableWide() {
        var plan = ChannelPlan(mode: .jobs, watched: Self.ids(0..<150), maximumFilteredIDs: 200)
        #expect(plan.watchedChanged(Self.ids(0..<250)) == .rebuild)
        var wide = ChannelPlan(mode: .jobs, watched: Self.ids(0..<250), maximumFilteredIDs: 200)
        #expect(wide.bindings == [JobFeedBinding(ids: nil)])
        #expect(wide.watchedChanged(Self.ids(0..<300)) == .keep)
        #expect(wide.watchedChanged(Self.ids(0..<10)) == .rebuild)
        // Two channels at most (200 / 100): a third one rebuilds instead.
        var full = ChannelPlan(mode: .jobs, watched: Self.ids(0..<150), maximumFilteredIDs: 200)
        #expect(full.watchedChanged(Self.ids(0..<199)) == .rebuild)
        var all = ChannelPlan(mode: .allJobs, watched: [], maximumFilteredIDs: 200)
        #expect(all.bindings == [JobFeedBinding(ids: nil)])
        #expect(all.watchedChanged(Self.ids(0..<500)) == .keep)
        #expect(ChannelPlan(mode: .jobs, watched: [], maximumFilteredIDs: 200).bindings.isEmpty)
    }
}

@Suite("FeedLiveness")
struct FeedLivenessTests {
    @Test("live when every established channel is live; a late channel neither blocks nor drops live mode")
    func lateChannels() {
        var liveness = FeedLiveness(generation: 1, channels: 2)
        #expect(!liveness.allLive)
        let first = liveness.markLive(0)
        let second = liveness.markLive(1)
        #expect(first == nil && second == nil)
        #expect(liveness.allLive)
        liveness.add(2, ids: [idC], late: true)
        #expect(liveness.allLive)
        let lateDown = liveness.markNotLive(2)
        #expect(!lateDown)
        let lateIDs = liveness.markLive(2)
        #expect(lateIDs == [idC])
        let establishedDown = liveness.markNotLive(2)
        #expect(establishedDown)  // established now: losing it leaves live mode
        #expect(!liveness.allLive)
    }

    @Test("a late channel whose subscription ends before it was live takes the feed out of live mode")
    func lateChannelEnded() {
        var liveness = FeedLiveness(generation: 1, channels: 1)
        _ = liveness.markLive(0)
        liveness.add(1, ids: [idC], late: true)
        let joining = liveness.markNotLive(1)
        #expect(!joining)  // still joining: live mode stays
        #expect(liveness.allLive)
        let ended = liveness.markEnded(1)
        #expect(ended)  // the subscription failed: nothing covers idC
        #expect(!liveness.allLive)
        let unknown = liveness.markEnded(7)
        #expect(!unknown)  // not a channel of this generation
        let lateIDs = liveness.markLive(1)
        #expect(lateIDs == nil)  // back: no longer late (the reconciliation after the loss covers its ids)
        #expect(liveness.allLive)
    }
}

/// What the client holds for the jobs it watches, and when it lets go (the memory model; see `JobStore.Retention`).
@Suite("JobSyncClient watch lifetime")
struct JobSyncClientWatchLifetimeTests {
    @Test("waitForCompletion unwatches what it watched itself; a job watched explicitly stays watched")
    func waitReleasesItsWatch() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        source.put(row(idB, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: nil, clock: clock)
        client.watch([idB])
        try await withRunning(client) { () async throws in
            async let a = client.waitForCompletion(of: idA, timeout: .seconds(3600))
            async let b = client.waitForCompletion(of: idB, timeout: .seconds(3600))
            await source.waitForCalls(1)
            #expect(client.watchedIDs == [idA, idB])
            source.put(row(idA, status: "completed", updatedAt: ts(2)))
            source.put(row(idB, status: "completed", updatedAt: ts(2)))
            while client.store.job(idA)?.status != .completed || client.store.job(idB)?.status != .completed {
                await clock.waitForSleepers(1)
                clock.advance(by: .seconds(30))
                await Task.yield()
            }
            _ = try await (a, b)
        }
        #expect(client.watchedIDs == [idB])
        #expect(client.store.job(idA)?.status == .completed)  // finished: kept for the retention period
    }

    @Test("a wait that times out unwatches its job and drops its unfinished state; a second wait holds it on")
    func timedOutWaitDropsState() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        source.put(row(idA, status: "processing", updatedAt: ts(1)))
        let client = try makeClient(source: source, feed: nil, clock: clock)
        try await withRunning(client) { () async throws in
            let short = Task { try await client.waitForCompletion(of: idA, timeout: .seconds(5)) }
            let long = Task { try await client.waitForCompletion(of: idA, timeout: .seconds(60)) }
            while client.store.job(idA) == nil { await Task.yield() }
            await clock.waitForSleepers(3)  // two wait timers and the poll
            clock.advance(by: .seconds(5))
            await #expect(throws: JobSyncError.self) { try await short.value }
            #expect(client.watchedIDs == [idA])  // the long wait still holds it
            #expect(client.store.job(idA)?.status == .processing)
            clock.advance(by: .seconds(55))
            await #expect(throws: JobSyncError.self) { try await long.value }
        }
        #expect(client.watchedIDs.isEmpty)
        #expect(client.store.job(idA) == nil)
        #expect(client.channelPlan().bindings.isEmpty)
    }

    @Test("unwatch shrinks the bindings and drops unfinished states; a stale row read later cannot bring one back")
    func unwatchShrinks() async throws {
        let clock = ManualClock()
        let source = FakeSource()
        var ids: [JobID] = []
        for _ in 0..<250 {
            let id = try JobID(UUID().uuidString.lowercased())
            ids.append(id)
            source.put(row(id, status: "processing", updatedAt: ts(2)))
        }
        let client = try makeClient(source: source, feed: nil, clock: clock)
        client.watch(ids)
        #expect(client.channelPlan().bindings.count == 3)
        try await withRunning(client) { () async throws in
            while client.store.jobsInMemory.total < 250 { await Task.yield() }
        }
        client.unwatch(ids[100...])
        #expect(client.channelPlan().bindings.count == 1)
        #expect(client.store.jobsInMemory.total == 100)
        #expect(client.store.job(ids[200]) == nil)
        #expect(
            client.store.merge(observe(row(ids[200], status: "queued", updatedAt: ts(1)), source: .poll))
                == .ignored(.stale))
    }
}
