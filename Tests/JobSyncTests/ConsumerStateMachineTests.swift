import JobSyncCore
import Testing

@testable import JobSync

/// The durable consumer's decisions, without I/O (the machine behind ``OutcomeConsumer``).
@Suite("Consumer state machine: delivery, acknowledgement, watermark, retries, dead letters")
struct ConsumerStateMachineTests {
    static func settings(attempts: Int = 3, maximum: Int = 100) -> ConsumerStateMachine.Settings {
        .init(
            name: "billing", maximumAttempts: attempts, retryDelay: .seconds(1), maximumRetryDelay: .seconds(3),
            skew: .seconds(5), maximumUnacknowledged: maximum)
    }

    /// A job of `id` in `status`, updated at second `second` of the fixture minute.
    static func job(_ id: JobID, _ status: String, at second: Int) -> JobEvent {
        .updated(try! Job(row: row(id, status: status, updatedAt: ts(second))))
    }

    static func time(_ second: Int) -> JobTimestamp { JobTimestamp(ts(second))! }

    /// A machine whose start-up catch-up (from `watermark`) already ran.
    static func machine(
        watermark: JobTimestamp? = nil, acknowledged: [JobID: JobTimestamp] = [:], attempts: Int = 3,
        maximum: Int = 100
    ) -> ConsumerStateMachine {
        var machine = ConsumerStateMachine(
            settings: Self.settings(attempts: attempts, maximum: maximum),
            state: ConsumerState(watermark: watermark, acknowledged: acknowledged))
        #expect(machine.catchUpWanted)
        let result1 = machine.catchUpStarted()
        #expect(result1 == watermark)
        machine.catchUpEnded(succeeded: true)
        return machine
    }

    @Test("an outcome is delivered once, carries the newest state, and is never offered again once acknowledged")
    func deliverOnceUntilAcknowledged() {
        var machine = Self.machine()
        let result2 = machine.offer(Self.job(idA, "processing", at: 1))
        #expect(result2 == .ignored)  // not an outcome
        let result3 = machine.offer(Self.job(idA, "completed", at: 2))
        #expect(result3 == .queued)
        let result4 = machine.offer(Self.job(idA, "completed", at: 2))
        #expect(result4 == .merged)  // the same version, from a catch-up
        let first = machine.nextDelivery(now: .zero)
        #expect(first?.jobID == idA && first?.kind == .completed && first?.delivery == 1)
        #expect(first?.consumer == "billing")
        let result5 = machine.nextDelivery(now: .zero)
        #expect(result5 == nil)  // one delivery per outcome, not per offer
        let result6 = machine.acknowledge(idA, now: Self.time(50))
        #expect(result6)
        let result7 = machine.acknowledge(idA, now: Self.time(50))
        #expect(!result7)  // twice: a no-op
        let result8 = machine.takeChanges()
        #expect(result8.first == .acknowledged(idA, key: Self.time(2)))
        let result9 = machine.offer(Self.job(idA, "completed", at: 2))
        #expect(result9 == .ignored)
        #expect(machine.unacknowledged == 0)
    }

    @Test("the watermark trails the oldest open outcome by the skew, never moves back, and drops older acks")
    func watermarkAndCompaction() {
        var machine = Self.machine(watermark: Self.time(0))
        let result10 = machine.offer(Self.job(idA, "completed", at: 10))
        #expect(result10 == .queued)
        let result11 = machine.offer(Self.job(idB, "failed", at: 20))
        #expect(result11 == .queued)
        _ = machine.nextDelivery(now: .zero)
        _ = machine.nextDelivery(now: .zero)
        machine.acknowledge(idB, now: Self.time(30))
        // A (10 s) is still open: the watermark waits 5 s before it.
        #expect(machine.watermark == Self.time(5))
        let result12 = machine.takeChanges()
        #expect(result12 == [.acknowledged(idB, key: Self.time(20)), .watermark(Self.time(5))])
        machine.acknowledge(idA, now: Self.time(30))
        // None open: 5 s before the newest seen (20 s). A's acknowledgement (10 s) is below it and forgotten.
        #expect(machine.watermark == Self.time(15))
        #expect(machine.rememberedAcknowledgements == 1)
        let result13 = machine.offer(Self.job(idB, "failed", at: 20))
        #expect(result13 == .ignored)  // remembered
        let result14 = machine.offer(Self.job(idC, "completed", at: 12))
        #expect(result14 == .ignored)  // below the watermark: handled
        let result15 = machine.offer(Self.job(idC, "completed", at: 16))
        #expect(result15 == .queued)  // a late commit within the skew
        _ = machine.nextDelivery(now: .zero)
        machine.acknowledge(idC, now: Self.time(30))
        #expect(machine.watermark == Self.time(15))  // never back, not forward (the newest seen is still 20 s)
    }

    @Test("a resumed consumer ignores what its file says it handled and catches up from its watermark")
    func resume() {
        var machine = ConsumerStateMachine(
            settings: Self.settings(),
            state: ConsumerState(
                watermark: Self.time(10), acknowledged: [idA: Self.time(12), idB: Self.time(3)]))
        #expect(machine.rememberedAcknowledgements == 1)  // B's acknowledgement is below the watermark
        let result16 = machine.catchUpStarted()
        #expect(result16 == Self.time(10))
        let result17 = machine.offer(Self.job(idA, "completed", at: 12))
        #expect(result17 == .ignored)
        let result18 = machine.offer(Self.job(idB, "completed", at: 3))
        #expect(result18 == .ignored)
        let result19 = machine.offer(Self.job(idC, "failed", at: 11))
        #expect(result19 == .queued)
        machine.catchUpEnded(succeeded: true)
        #expect(!machine.catchUpWanted)
    }

    @Test("rejections back off (1 s, 2 s, capped at 3 s) and the last attempt makes a dead letter")
    func retriesThenDeadLetter() {
        var machine = Self.machine(attempts: 3)
        let result20 = machine.offer(Self.job(idA, "failed", at: 2))
        #expect(result20 == .queued)
        let result21 = machine.nextDelivery(now: .zero)
        #expect(result21?.delivery == 1)
        let result22 = machine.reject(idA, reason: "exit 1", now: .zero, date: Self.time(40))
        #expect(result22 == .retry(at: .seconds(1)))
        let result23 = machine.reject(idA, reason: "again", now: .zero, date: Self.time(40))
        #expect(result23 == .unknown)  // not delivered
        #expect(machine.nextRetry == .seconds(1))
        let result24 = machine.retriesDue(now: .milliseconds(999)).due
        #expect(result24 == 0)
        let result25 = machine.nextDelivery(now: .zero)
        #expect(result25 == nil)  // no hot loop: nothing before its time
        let result26 = machine.retriesDue(now: .seconds(1)).due
        #expect(result26 == 1)
        let result27 = machine.nextDelivery(now: .zero)
        #expect(result27?.delivery == 2)
        let result28 = machine.reject(idA, reason: "exit 1", now: .seconds(1), date: Self.time(41))
        #expect(result28 == .retry(at: .seconds(3)))
        let result29 = machine.retriesDue(now: .seconds(3)).due
        #expect(result29 == 1)
        let result30 = machine.nextDelivery(now: .zero)
        #expect(result30?.delivery == 3)
        let letter = DeadLetter(
            jobID: idA, kind: .failed, attempts: 3, reason: "exit 2", at: Self.time(43),
            job: try! Job(row: row(idA, status: "failed", updatedAt: ts(2))))
        let result31 = machine.reject(idA, reason: "exit 2", now: .seconds(3), date: Self.time(43))
        #expect(result31 == .deadLettered(letter))
        let result32 = machine.takeChanges()
        #expect(result32.contains(.deadLettered(letter, key: Self.time(2))))
        #expect(machine.unacknowledged == 0)
        #expect(machine.nextRetry == nil)
        let result33 = machine.offer(Self.job(idA, "failed", at: 2))
        #expect(result33 == .ignored)  // a dead letter is not delivered again
    }

    @Test("a full consumer refuses, owes a catch-up from the oldest refused, and the watermark waits for it")
    func refusalOwesCatchUp() {
        var machine = Self.machine(watermark: Self.time(0), maximum: 2)
        let result34 = machine.offer(Self.job(idA, "completed", at: 10))
        #expect(result34 == .queued)
        let result35 = machine.offer(Self.job(idB, "completed", at: 30))
        #expect(result35 == .queued)
        let result36 = machine.offer(Self.job(idC, "completed", at: 12))
        #expect(result36 == .refused)
        #expect(!machine.catchUpWanted)  // no room yet
        _ = machine.nextDelivery(now: .zero)
        _ = machine.nextDelivery(now: .zero)
        machine.acknowledge(idA, now: Self.time(40))
        #expect(machine.catchUpWanted)  // half the room is free
        machine.acknowledge(idB, now: Self.time(40))
        #expect(machine.watermark == Self.time(12))  // not 25 s: C (12 s) is still owed
        let result37 = machine.catchUpStarted()
        #expect(result37 == Self.time(12))
        let result38 = machine.offer(Self.job(idC, "completed", at: 12))
        #expect(result38 == .queued)
        machine.catchUpEnded(succeeded: true)
        let result39 = machine.nextDelivery(now: .zero)
        #expect(result39?.jobID == idC)
    }

    @Test("a failed catch-up is owed again from where it started; lost store events owe one from the watermark")
    func catchUpFailureAndLostEvents() {
        var machine = ConsumerStateMachine(settings: Self.settings(), state: ConsumerState(watermark: nil))
        let result40 = machine.catchUpStarted()
        #expect(result40 == nil)
        #expect(!machine.catchUpWanted)  // one runs
        machine.catchUpEnded(succeeded: false)
        #expect(machine.catchUpWanted)
        let result41 = machine.catchUpStarted()
        #expect(result41 == nil)  // from the beginning again
        let result42 = machine.offer(Self.job(idA, "completed", at: 20))
        #expect(result42 == .queued)
        _ = machine.nextDelivery(now: .zero)
        machine.acknowledge(idA, now: Self.time(40))
        #expect(machine.watermark == nil)  // reading from the beginning: the watermark waits
        machine.catchUpEnded(succeeded: true)
        #expect(machine.watermark == Self.time(15))
        machine.eventsLost()
        let result43 = machine.catchUpStarted()
        #expect(result43 == Self.time(15))
    }

    @Test("deletions: never refused; a finished job's deletion leaves its outcome the finish; keyed by ack time")
    func deletions() {
        var machine = Self.machine(watermark: Self.time(0), maximum: 2)
        let result44 = machine.offer(Self.job(idA, "completed", at: 10))
        #expect(result44 == .queued)
        let result45 = machine.offer(Self.job(idB, "completed", at: 11))
        #expect(result45 == .queued)
        let result46 = machine.offer(.deleted(idC))
        #expect(result46 == .queued)  // beyond the limit: a catch-up could not read it again
        let result47 = machine.offer(.deleted(idA))
        #expect(result47 == .merged)
        let first = machine.nextDelivery(now: .zero)
        #expect(first?.kind == .completed && first?.job?.status == .completed)
        _ = machine.nextDelivery(now: .zero)
        let result48 = machine.nextDelivery(now: .zero)
        #expect(result48?.kind == .deleted)
        machine.acknowledge(idC, now: Self.time(45))
        let result49 = machine.takeChanges()
        #expect(result49 == [.acknowledged(idC, key: Self.time(45)), .watermark(Self.time(5))])
    }

    @Test("fleet: delivered only once claimed; held elsewhere waits out the lease; acknowledged elsewhere is handled")
    func fleetClaims() {
        var settings = Self.settings()
        settings.lease = .seconds(30)
        var machine = ConsumerStateMachine(settings: settings, state: ConsumerState(watermark: Self.time(0)))
        _ = machine.catchUpStarted()
        machine.catchUpEnded(succeeded: true)
        let offeredA = machine.offer(Self.job(idA, "completed", at: 10))
        let offeredB = machine.offer(Self.job(idB, "failed", at: 11))
        #expect(offeredA == .queued && offeredB == .queued)
        let early = machine.nextDelivery(now: .zero)
        #expect(early == nil)  // nothing is delivered before its claim
        let taken = machine.takeClaims(limit: 8)
        #expect(taken == [idA, idB])
        let again = machine.takeClaims(limit: 8)
        #expect(again.isEmpty)  // in flight: not claimed twice
        let claimedA = machine.claimAnswered(idA, .claimed, now: .seconds(1), date: Self.time(40))
        #expect(claimedA == .held)
        let heldB = machine.claimAnswered(idB, .heldElsewhere(remaining: .seconds(20)), now: .seconds(1), date: Self.time(40))
        #expect(heldB == .waiting(until: .seconds(21)))
        let delivered = machine.nextDelivery(now: .zero)
        #expect(delivered?.jobID == idA)
        #expect(machine.nextDelivery(now: .zero) == nil)
        // A's claim is renewed every third of the lease while it is open; B is claimed again when its holder's lease
        // ends.
        #expect(machine.nextRetry == .seconds(11))
        let renew = machine.retriesDue(now: .seconds(11))
        #expect(renew.due == 0 && renew.renewals == [idA])
        let due = machine.retriesDue(now: .seconds(21))
        #expect(due.due == 1)
        let retaken = machine.takeClaims(limit: 8)
        #expect(retaken == [idB])
        let handled = machine.claimAnswered(idB, .acknowledged, now: .seconds(21), date: Self.time(45))
        #expect(handled == .handledElsewhere)
        #expect(machine.unacknowledged == 1)
        let changes = machine.takeChanges()
        #expect(changes.first == .acknowledged(idB, key: Self.time(11)))  // remembered: never claimed again
        let offeredAgain = machine.offer(Self.job(idB, "failed", at: 11))
        #expect(offeredAgain == .ignored)
        // A renewal that finds A taken over: the claim is lost (another replica may handle it too: at least once).
        let lost = machine.claimAnswered(idA, .heldElsewhere(remaining: .seconds(30)), now: .seconds(22), date: Self.time(46))
        #expect(lost == .lost)
        // A failed claim is tried again after the retry delay; a failed renewal keeps the claim.
        #expect(machine.offer(Self.job(idC, "completed", at: 12)) == .queued)
        let claimC = machine.takeClaims(limit: 8)
        #expect(claimC == [idC])
        let failed = machine.claimAnswered(idC, .failed, now: .seconds(30), date: Self.time(50))
        #expect(failed == .waiting(until: .seconds(31)))
        // A queued outcome whose claim was confirmed two thirds of a lease ago (renewals late) is claimed again
        // before delivery: by the time it is handled the lease may have passed to another replica.
        let idD = try! JobID("44444444-4444-4444-8444-444444444444")
        #expect(machine.offer(Self.job(idD, "completed", at: 13)) == .queued)
        let claimD = machine.takeClaims(limit: 8)
        #expect(claimD == [idD])
        _ = machine.claimAnswered(idD, .claimed, now: .seconds(40), date: Self.time(50))
        let stale = machine.nextDelivery(now: .seconds(60))
        #expect(stale == nil)
        let reclaim = machine.takeClaims(limit: 8)
        #expect(reclaim == [idD])
        _ = machine.claimAnswered(idD, .claimed, now: .seconds(60), date: Self.time(51))
        let fresh = machine.nextDelivery(now: .seconds(61))
        #expect(fresh?.jobID == idD)
    }

    @Test("fleet: a claim handled here is renewed until jobsync_ack answers; a failed send goes first again")
    func fleetAcknowledgements() {
        var settings = Self.settings(attempts: 1)
        settings.lease = .seconds(30)
        var machine = ConsumerStateMachine(settings: settings, state: ConsumerState(watermark: Self.time(0)))
        _ = machine.catchUpStarted()
        machine.catchUpEnded(succeeded: true)
        #expect(machine.offer(Self.job(idA, "completed", at: 10)) == .queued)
        #expect(machine.offer(Self.job(idB, "failed", at: 11)) == .queued)
        let taken = machine.takeClaims(limit: 8)
        #expect(taken == [idA, idB])
        _ = machine.claimAnswered(idA, .claimed, now: .seconds(1), date: Self.time(40))
        _ = machine.claimAnswered(idB, .claimed, now: .seconds(1), date: Self.time(40))
        let first = machine.nextDelivery(now: .seconds(2))
        let second = machine.nextDelivery(now: .seconds(2))
        #expect(first?.jobID == idA && second?.jobID == idB)
        #expect(!machine.hasAcknowledgementsToSend)
        // Handled here: A acknowledged, B dead-lettered (one attempt); both are to be sent, neither is open.
        let acknowledged = machine.acknowledge(idA, now: Self.time(41))
        #expect(acknowledged)
        let letter = machine.reject(idB, reason: "bad", now: .seconds(3), date: Self.time(42))
        guard case .deadLettered = letter else {
            Issue.record("expected a dead letter, got \(letter)")
            return
        }
        #expect(machine.unacknowledged == 0 && machine.hasAcknowledgementsToSend)
        let sends = [machine.nextAcknowledgementToSend(), machine.nextAcknowledgementToSend()]
        #expect(sends == [idA, idB])
        #expect(machine.nextAcknowledgementToSend() == nil)  // in flight: not sent twice
        // Their claims are still renewed every third of the lease while the requests are on the way.
        #expect(machine.nextRetry == .seconds(11))
        let renew = machine.retriesDue(now: .seconds(11))
        #expect(renew.renewals == [idA, idB].sorted())
        let renewed = machine.claimAnswered(idA, .claimed, now: .seconds(11), date: Self.time(50))
        #expect(renewed == .held)
        // B answered: no longer renewed. A got no answer: sent again once retried (first), and still renewed.
        machine.acknowledgementAnswered(idB)
        machine.acknowledgementFailed(idA)
        #expect(!machine.hasAcknowledgementsToSend)
        machine.retryFailedAcknowledgements()
        #expect(machine.nextAcknowledgementToSend() == idA)
        #expect(machine.nextRetry == .seconds(21))
        let later = machine.retriesDue(now: .seconds(21))
        #expect(later.renewals == [idA])
        // A renewal that finds A taken over: lost (its acknowledgement will be refused), and not renewed again.
        let lost = machine.claimAnswered(
            idA, .heldElsewhere(remaining: .seconds(30)), now: .seconds(21), date: Self.time(55))
        #expect(lost == .lost)
        #expect(machine.nextRetry == nil)
        machine.acknowledgementAnswered(idA)
        #expect(machine.claimAnswered(idA, .claimed, now: .seconds(22), date: Self.time(56)) == .unknown)
        // Without a lease (not a fleet) nothing is sent.
        var single = Self.machine()
        #expect(single.offer(Self.job(idC, "completed", at: 12)) == .queued)
        _ = single.nextDelivery(now: .zero)
        #expect(single.acknowledge(idC, now: Self.time(43)) && !single.hasAcknowledgementsToSend)
    }
}
