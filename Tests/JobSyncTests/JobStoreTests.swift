import Foundation
import Testing

@testable import JobSync

@Suite("JobStore subscriptions and persistence")
struct JobStoreTests {
    @Test("per-job: current state first, then changes, finishing after terminal; no duplicate versions")
    func perJobSequence() async throws {
        let store = try JobStore()
        store.merge(observe(row(idA, status: "queued", updatedAt: ts(1))))
        var iterator = store.updates(for: idA).makeAsyncIterator()
        let first = try await iterator.next()
        #expect(first == .updated(try Job(row: row(idA, status: "queued", updatedAt: ts(1)))))
        store.merge(observe(row(idA, status: "processing", updatedAt: ts(2))))
        store.merge(observe(row(idA, status: "processing", updatedAt: ts(2)), source: .reconciliation))  // duplicate
        store.merge(observe(row(idB, status: "completed", updatedAt: ts(2))))  // another job
        let second = try await iterator.next()
        #expect(statusOf(second) == .processing)
        #expect(iterator.handle.subscriber.pendingCount == 0)  // the duplicate and job B were not queued
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(3))))
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(4))))  // after finish: not delivered
        let third = try await iterator.next()
        #expect(third?.isFinal == true)
        #expect(try await iterator.next() == nil)
    }

    @Test("a slow subscriber's buffer keeps only the newest state per job (latest wins)")
    func latestWins() async throws {
        let store = try JobStore()
        var iterator = store.allUpdates().makeAsyncIterator()
        for second in 1...50 {
            store.merge(observe(row(idA, status: "processing", updatedAt: ts(second))))
        }
        store.merge(observe(row(idB, status: "queued", updatedAt: ts(1))))
        #expect(iterator.handle.subscriber.pendingCount == 2)
        let first = try await iterator.next()
        guard case .updated(let job)? = first else {
            Issue.record("expected an update")
            return
        }
        #expect(job.updatedAt == JobTimestamp(ts(50)))
        #expect(try await iterator.next()?.jobID == idB)
    }

    @Test("more pending jobs than the capacity ends the sequence with subscriberTooSlow and frees the buffer")
    func bufferBound() async throws {
        let store = try JobStore(configuration: .init(subscriberCapacity: 2))
        var iterator = store.allUpdates().makeAsyncIterator()
        for id in [idA, idB, idC] { store.merge(observe(row(id, status: "queued", updatedAt: ts(1)))) }
        #expect(iterator.handle.subscriber.pendingCount == 0)
        await #expect(throws: JobSyncError.self) { _ = try await iterator.next() }
    }

    @Test("a set subscription ends when every job is terminal or deleted")
    func setSubscription() async throws {
        let store = try JobStore()
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(1))))
        var seen: [JobEvent] = []
        let updates = store.updates(forJobs: [idA, idB])
        var iterator = updates.makeAsyncIterator()
        store.merge(observe(row(idB, status: "processing", updatedAt: ts(1))))
        store.merge(JobObservation(jobID: idB, kind: .deleted, source: .realtime))
        while let event = try await iterator.next() { seen.append(event) }
        #expect(seen.count == 2)  // A's terminal state, then B's deletion (B's processing coalesced away)
        #expect(seen.last == .deleted(idB))
    }

    @Test("deletion finishes a per-job subscription; a deleted job's subscription answers at once")
    func deletionFinishes() async throws {
        let store = try JobStore()
        store.merge(JobObservation(jobID: idC, kind: .vanished, source: .reconciliation))
        var events: [JobEvent] = []
        for try await event in store.updates(for: idC) { events.append(event) }
        #expect(events == [.deleted(idC)])
    }

    @Test("cancelling the consumer ends the sequence and unregisters it")
    func cancellation() async throws {
        let store = try JobStore()
        let task = Task {
            var count = 0
            for try await _ in store.allUpdates() { count += 1 }
            return count
        }
        task.cancel()  // before or after registration: either way the sequence ends
        #expect(try await task.value == 0)
        #expect(store.subscriberCount == 0)
    }

    @Test("dropping an iterator (break) unregisters its subscriber")
    func breakUnregisters() async throws {
        let store = try JobStore()
        store.merge(observe(row(idA, status: "queued", updatedAt: ts(1))))
        for try await _ in store.updates(for: idA) { break }
        #expect(store.subscriberCount == 0)
    }

    @Test("closing the store ends every subscription")
    func closeEnds() async throws {
        let store = try JobStore()
        var iterator = store.allUpdates().makeAsyncIterator()
        store.close()
        #expect(try await iterator.next() == nil)
    }

    @Test("a bad persistence path is a typed error")
    func badPath() {
        #expect(throws: JobSyncError.self) { try SQLiteJobPersistence(path: "/nonexistent-dir/x/y.sqlite") }
    }
}

func statusOf(_ event: JobEvent?) -> JobStatus? {
    if case .updated(let job)? = event { return job.status }
    return nil
}

/// The store's retention policy as subscribers see it.
@Suite("JobStore retention")
struct JobStoreRetentionTests {
    @Test("a finished job that left memory and is read again reaches a subscription naming it, never an all-jobs one")
    func restoredReachesNamedSubscriptionsOnly() async throws {
        let store = try JobStore(configuration: .init(retention: .init(period: .seconds(600), maximumFinishedJobs: 0)))
        var all = store.allUpdates().makeAsyncIterator()
        store.merge(observe(row(idA, status: "completed", updatedAt: ts(5))))
        #expect(statusOf(try await all.next()) == .completed)
        #expect(store.job(idA) == nil)  // no persistence: gone from memory, remembered by version
        var iterator = store.updates(for: idA).makeAsyncIterator()  // subscribes now: nothing to seed it with
        guard case .restored = store.merge(observe(row(idA, status: "completed", updatedAt: ts(5)), source: .poll))
        else {
            Issue.record("the same version read again is restored")
            return
        }
        #expect(statusOf(try await iterator.next()) == .completed)
        #expect(try await iterator.next() == nil)
        store.merge(observe(row(idB, status: "queued", updatedAt: ts(6))))
        #expect(try await all.next()?.jobID == idB)  // the restored completion was not delivered again
    }
}
