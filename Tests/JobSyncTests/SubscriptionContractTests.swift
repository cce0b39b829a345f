import Foundation
import JobSyncTestSupport
import Testing

@testable import JobSync

/// One test per rule of the subscription contract after a job's final event (``JobUpdates``, docs/ARCHITECTURE.md
/// "Subscription contract"). Each would fail if its rule broke.
@Suite("Subscription contract after a job's final event")
struct SubscriptionContractTests {
    private static func drain(_ updates: JobUpdates) async throws -> [JobEvent] {
        var events: [JobEvent] = []
        for try await event in updates { events.append(event) }
        return events
    }

    private static func describe(_ events: [JobEvent]) -> [String] {
        events.map { event in
            switch event {
            case .updated(let job): "\(job.id == idA ? "A" : job.id == idB ? "B" : "C"):\(job.status)"
            case .deleted(let id): "\(id == idA ? "A" : id == idB ? "B" : "C"):deleted"
            }
        }
    }

    @Test("per job: the sequence ends at the terminal state; a later deletion or retried version is not delivered")
    func perJobEndsAtTerminal() async throws {
        let store = try JobStore()
        var iterator = store.updates(for: idA).makeAsyncIterator()
        store.merge(observe(row(idA, status: "processing", updatedAt: ts(1))))
        store.merge(observe(row(idA, status: "failed", updatedAt: ts(2))))
        store.merge(observe(row(idA, status: "queued", updatedAt: ts(3))))  // retried: a newer version
        store.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime))
        var events: [JobEvent] = []
        while let event = try await iterator.next() { events.append(event) }
        #expect(Self.describe(events) == ["A:failed"])  // latest wins while queued; nothing after the final event
    }

    @Test("job set: a job's part ends at its final event, so its deletion by retention does not reach the open set")
    func jobSetIgnoresDeletionAfterTerminal() async throws {
        let store = try JobStore()
        let updates = store.updates(forJobs: [idA, idB])
        var iterator = updates.makeAsyncIterator()
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(1))))
        #expect(Self.describe([try #require(await iterator.next())]) == ["A:completed"])
        store.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime))  // B still open
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(5))))  // re-inserted, newer
        #expect(iterator.handle.subscriber.pendingCount == 0)  // neither was queued
        store.merge(observe(row(idB, status: "processing", updatedAt: ts(2))))
        store.merge(observe(row(idB, status: "failed", updatedAt: ts(3))))
        var rest: [JobEvent] = []
        while let event = try await iterator.next() { rest.append(event) }  // ends: every job had its final event
        #expect(Self.describe(rest) == ["B:failed"])
    }

    @Test("job set: a job deleted before finishing ends its part with the deletion")
    func jobSetDeletionBeforeTerminal() async throws {
        let store = try JobStore()
        store.merge(observe(row(idA, status: "queued", updatedAt: ts(1))))
        let updates = store.updates(forJobs: [idA])
        store.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime))
        #expect(Self.describe(try await Self.drain(updates)) == ["A:deleted"])
    }

    @Test("all jobs: every change, including a deletion after the terminal state and a retried job's new version")
    func allJobsSeesEverything() async throws {
        let store = try JobStore()
        var iterator = store.allUpdates().makeAsyncIterator()
        var events: [JobEvent] = []
        store.merge(observe(row(idA, status: "failed", updatedAt: ts(1))))
        events.append(try #require(await iterator.next()))
        store.merge(observe(row(idA, status: "queued", updatedAt: ts(2))))
        events.append(try #require(await iterator.next()))
        store.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime))
        events.append(try #require(await iterator.next()))
        #expect(Self.describe(events) == ["A:failed", "A:queued", "A:deleted"])
    }

    @Test("buffering: a deletion never hides the terminal state queued before it; both arrive, in order")
    func deletionDoesNotHideQueuedTerminal() async throws {
        let store = try JobStore()
        var iterator = store.allUpdates().makeAsyncIterator()
        store.merge(observe(row(idA, status: "processing", updatedAt: ts(1))))
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(2))))  // replaces processing (latest wins)
        store.merge(JobObservation(jobID: idA, kind: .deleted, source: .realtime))  // must not replace completed
        store.merge(observe(row(idB, status: "queued", updatedAt: ts(1))))
        var events: [JobEvent] = []
        for _ in 0..<2 { events.append(try #require(await iterator.next())) }
        try #require(Self.describe(events) == ["A:completed", "B:queued"])
        events.append(try #require(await iterator.next()))
        #expect(Self.describe(events) == ["A:completed", "B:queued", "A:deleted"])
        #expect(iterator.handle.subscriber.pendingCount == 0)
    }

    @Test("waitForCompletion: answers at the first terminal state, at once when the store already has it")
    func waitAnswersAtTerminal() async throws {
        let client = try makeClient(source: FakeSource(), feed: nil, clock: ManualClock())
        client.store.merge(observe(row(idA, status: "completed", updatedAt: ts(1))))
        #expect(try await client.waitForCompletion(of: idA, timeout: .seconds(1)).status == .completed)
        client.store.merge(observe(row(idB, status: "processing", updatedAt: ts(1))))
        async let waited = client.waitForCompletion(of: idB, timeout: .seconds(60))
        while client.store.subscriberCount == 0 { await Task.yield() }
        client.store.merge(observe(row(idB, status: "completed", updatedAt: ts(2))))
        client.store.merge(JobObservation(jobID: idB, kind: .deleted, source: .realtime))  // after: irrelevant
        #expect(try await waited.updatedAt == JobTimestamp(ts(2)))
    }
}
