import DequeModule
import HeapModule
import JobSyncCore

/// The decisions of one durable consumer, without I/O: which outcome is delivered next, what an acknowledgement or a
/// rejection changes, when a rejected outcome is due again, when it becomes a dead letter, how far the watermark
/// moves, and which acknowledgements can be forgotten; in fleet mode also which outcomes to claim, which claims to
/// renew (until each acknowledgement sent to `jobsync_ack` is answered) and which acknowledgements to send.
/// ``OutcomeConsumer`` drives it and writes its ``ConsumerChange``s to SQLite.
///
/// ## The watermark
/// Every outcome whose `updated_at` is below the watermark is handled: acknowledged, dead-lettered, or before the
/// consumer's start position. Catch-up reads start at the watermark, and an offer below it is ignored. The watermark
/// trails the oldest unacknowledged outcome (and the newest one seen, when none is open) by ``Settings/skew``, so a
/// change committed a little after a newer one is still read. Acknowledgements below the watermark are forgotten:
/// nothing below it is read or accepted again, so the state stays as small as the skew window.
package struct ConsumerStateMachine: Sendable {
    package struct Settings: Sendable, Hashable {
        package var name: String
        package var maximumAttempts: Int
        package var retryDelay: Duration
        package var maximumRetryDelay: Duration
        package var skew: Duration
        package var maximumUnacknowledged: Int
        /// Fleet mode: the claim lease; an outcome is claimed before delivery and renewed every third of it.
        package var lease: Duration?

        package init(
            name: String, maximumAttempts: Int, retryDelay: Duration, maximumRetryDelay: Duration, skew: Duration,
            maximumUnacknowledged: Int, lease: Duration? = nil
        ) {
            self.lease = lease
            self.name = name
            self.maximumAttempts = maximumAttempts
            self.retryDelay = retryDelay
            self.maximumRetryDelay = maximumRetryDelay
            self.skew = skew
            self.maximumUnacknowledged = maximumUnacknowledged
        }
    }

    /// Where an unacknowledged outcome is.
    enum Stage: Hashable {
        /// Fleet mode: to be claimed before delivery.
        case unclaimed
        /// Fleet mode: the claim request is in flight.
        case claiming
        /// Fleet mode: another replica holds it (or the claim failed); claim again at this time.
        case heldElsewhere(until: Duration)
        /// In the delivery queue.
        case queued
        /// Handed to the handler; waiting for its acknowledgement or rejection.
        case delivered
        /// Rejected; queued again at this time.
        case retrying(at: Duration)
    }

    /// One unacknowledged outcome.
    struct Entry: Hashable {
        var kind: Outcome.Kind
        var job: Job?
        /// The `updated_at` of the state offered (`nil`: a deletion of a job never seen).
        var key: JobTimestamp?
        var stage: Stage
        var deliveries = 0
        var rejections = 0
        /// Fleet mode: when the request of this replica's last granted claim or renewal was sent (the lease runs
        /// from no earlier than that).
        var claimedAt: Duration?
        /// Fleet mode: when the last renewal was sent (answered or not), for the renewal schedule.
        var renewalSentAt: Duration?
    }

    /// What an offer did.
    package enum OfferResult: Hashable {
        /// A new outcome, queued for delivery.
        case queued
        /// An open outcome of this job took the newer state; nothing new to deliver.
        case merged
        /// Already handled (acknowledged, dead-lettered or below the watermark), or not an outcome.
        case ignored
        /// Refused: ``Settings/maximumUnacknowledged`` are open. A catch-up reads it again later.
        case refused
    }

    /// A fleet claim's answer (`jobsync_claim`).
    package enum ClaimAnswer: Hashable {
        /// This replica holds it.
        case claimed
        /// Another replica's lease is live for about this long.
        case heldElsewhere(remaining: Duration)
        /// Some replica acknowledged it: handled.
        case acknowledged
        /// The request failed: claim again after the retry delay.
        case failed
    }

    /// What a claim answer did.
    package enum ClaimResult: Hashable {
        /// Queued for delivery, or a renewal confirmed.
        case held
        /// Another replica has it: claimed again at this time.
        case waiting(until: Duration)
        /// Handled by another replica (remembered as acknowledged).
        case handledElsewhere
        /// A renewal found the claim lost to another replica while this one still had the outcome.
        case lost
        /// No open outcome of this job.
        case unknown
    }

    /// What a rejection did.
    package enum RejectResult: Hashable {
        /// Queued again at this time.
        case retry(at: Duration)
        /// Attempts exhausted: write this dead letter.
        case deadLettered(DeadLetter)
        /// No delivered outcome of this job is open (acknowledged meanwhile, or a stale outcome).
        case unknown
    }

    package let settings: Settings
    private var entries: [JobID: Entry] = [:]
    private var queue: Deque<JobID> = []
    /// Fleet mode: outcomes to claim, in order.
    private var claims: Deque<JobID> = []
    /// Fleet mode: outcomes handled here (acknowledged or dead-lettered) whose `jobsync_ack` is not answered yet, with
    /// their claims: renewed until it is, so no replica takes one over while its acknowledgement is on the way.
    private var acknowledging: [JobID: Entry] = [:]
    /// Fleet mode: acknowledgements to send to `jobsync_ack`, in order (those in flight are not in it).
    private var acknowledgementsToSend: Deque<JobID> = []
    /// Fleet mode: acknowledgements whose request got no answer, until the driver retries them.
    private var failedAcknowledgements: [JobID] = []
    /// The open outcomes' keys, smallest first; pairs whose entry is gone or changed key are skipped lazily.
    private var keys = Heap<Key>()
    /// Acknowledged (or dead-lettered) jobs at or above the watermark, with their keys.
    private var handled: [JobID: JobTimestamp] = [:]
    /// The handled keys, smallest first (lazily pruned like `keys`).
    private var handledKeys = Heap<Key>()
    package private(set) var watermark: JobTimestamp?
    private var highestSeen: JobTimestamp?
    /// Where the catch-up owed must read from (`.some(nil)`: the beginning), because outcomes were refused or
    /// events lost; `nil` when none is owed. The watermark may not pass it.
    private var owedFrom: JobTimestamp??
    /// Where the catch-up read in progress started (`.some(nil)`: the beginning); `nil` when none runs. The
    /// watermark may not pass it either, so nothing the read has yet to offer falls below it.
    private var reading: JobTimestamp??
    /// Changes to write, in order.
    private var changes: [ConsumerChange] = []

    struct Key: Comparable, Hashable {
        var key: JobTimestamp
        var id: JobID
        static func < (lhs: Key, rhs: Key) -> Bool { (lhs.key, lhs.id) < (rhs.key, rhs.id) }
    }

    /// A consumer resumed from `state` (its watermark and remembered acknowledgements).
    package init(settings: Settings, state: ConsumerState) {
        self.settings = settings
        self.watermark = state.watermark
        self.highestSeen = state.watermark
        self.owedFrom = .some(state.watermark)  // the start-up catch-up
        for (id, key) in state.acknowledged where state.watermark.map({ key >= $0 }) ?? true {
            self.handled[id] = key
            self.handledKeys.insert(Key(key: key, id: id))
        }
    }

    /// Outcomes open: queued, delivered or waiting for a retry.
    package var unacknowledged: Int { self.entries.count }

    /// Whether an outcome of the job is open (queued, delivered, waiting for a retry or a claim).
    package func isOpen(_ id: JobID) -> Bool { self.entries[id] != nil }

    /// Whether a delivery is ready.
    package var hasQueued: Bool { !self.queue.isEmpty }

    /// How many acknowledgements are remembered (those at or above the watermark).
    package var rememberedAcknowledgements: Int { self.handled.count }

    /// Whether a catch-up may start: one is owed, none runs, and half the room is free.
    package var catchUpWanted: Bool {
        self.owedFrom != nil && self.reading == nil
            && self.entries.count <= self.settings.maximumUnacknowledged / 2
    }

    /// Whether a fleet claim is waiting to be made.
    package var hasClaims: Bool { !self.claims.isEmpty }

    /// Whether a fleet acknowledgement is waiting to be sent.
    package var hasAcknowledgementsToSend: Bool { !self.acknowledgementsToSend.isEmpty }

    /// The earliest time something is due: a rejected outcome's redelivery, another replica's lease running out, or
    /// a claim renewal (of an open outcome, or of one whose acknowledgement is on the way).
    package var nextRetry: Duration? {
        let open = self.entries.values.compactMap { entry -> Duration? in
            switch entry.stage {
            case .retrying(let at), .heldElsewhere(let at): return at
            case .queued, .delivered: return self.renewal(of: entry)
            case .unclaimed, .claiming: return nil
            }
        }.min()
        let acknowledging = self.acknowledging.values.compactMap(self.renewal(of:)).min()
        return [open, acknowledging].compactMap { $0 }.min()
    }

    private func renewal(of entry: Entry) -> Duration? {
        guard let lease = self.settings.lease, let claimedAt = entry.claimedAt else { return nil }
        return max(claimedAt, entry.renewalSentAt ?? claimedAt) + lease / 3
    }

    // MARK: Inputs

    /// A job event from the store or a catch-up read: terminal states and deletions are outcomes.
    package mutating func offer(_ event: JobEvent) -> OfferResult {
        switch event {
        case .updated(let job):
            guard job.status.isTerminal, let key = job.updatedAt else { return .ignored }
            let kind: Outcome.Kind = job.status == .completed ? .completed : .failed
            return self.offer(id: job.id, kind: kind, job: job, key: key)
        case .deleted(let id):
            return self.offer(id: id, kind: .deleted, job: nil, key: nil)
        }
    }

    private mutating func offer(id: JobID, kind: Outcome.Kind, job: Job?, key: JobTimestamp?) -> OfferResult {
        if let key, let watermark = self.watermark, key < watermark { return .ignored }
        if self.handled[id] != nil { return .ignored }
        if var entry = self.entries[id] {
            // One open outcome per job, carrying the newest state; a finished job's later deletion leaves its
            // outcome the finish.
            if let key, entry.key.map({ key > $0 }) ?? true {
                entry.kind = kind
                entry.job = job
                entry.key = key
                self.keys.insert(Key(key: key, id: id))
                self.highestSeen = max(self.highestSeen ?? key, key)
            }
            self.entries[id] = entry
            return .merged
        }
        // Deletions are never refused: a catch-up cannot read them again.
        if let key, self.entries.count >= self.settings.maximumUnacknowledged {
            self.owe(from: key)
            return .refused
        }
        let fleet = self.settings.lease != nil
        self.entries[id] = Entry(kind: kind, job: job, key: key, stage: fleet ? .unclaimed : .queued)
        if let key {
            self.keys.insert(Key(key: key, id: id))
            self.highestSeen = max(self.highestSeen ?? key, key)
        }
        if fleet { self.claims.append(id) } else { self.queue.append(id) }
        return .queued
    }

    /// The next outcome to hand to the handler at `now`, if one is queued. Fleet mode: an outcome whose claim was
    /// last confirmed two thirds of a lease ago or more (renewals late or failing) may be another replica's by the
    /// time it is handled: it is claimed again before delivery.
    package mutating func nextDelivery(now: Duration) -> Outcome? {
        while let id = self.queue.popFirst() {
            guard var entry = self.entries[id], entry.stage == .queued else { continue }
            if let lease = self.settings.lease, let claimedAt = entry.claimedAt, now - claimedAt >= lease * 2 / 3 {
                entry.stage = .unclaimed
                entry.claimedAt = nil
                entry.renewalSentAt = nil
                self.entries[id] = entry
                self.claims.append(id)
                continue
            }
            entry.stage = .delivered
            entry.deliveries += 1
            self.entries[id] = entry
            return Outcome(
                consumer: self.settings.name, jobID: id, kind: entry.kind, job: entry.job, delivery: entry.deliveries)
        }
        return nil
    }

    /// The handler acknowledged the job's outcome. `now` keys a deletion of a job never seen.
    /// - Returns: whether an open outcome was acknowledged (an acknowledgement of a handled job is a no-op).
    @discardableResult
    package mutating func acknowledge(_ id: JobID, now: JobTimestamp) -> Bool {
        guard let entry = self.entries.removeValue(forKey: id) else { return false }
        let key = entry.key ?? max(now, self.watermark ?? now)
        self.remember(id, key: key)
        self.changes.append(.acknowledged(id, key: key))
        self.advanceWatermark()
        self.acknowledgementOwed(id, entry)
        return true
    }

    /// The handler rejected the job's outcome at `now` (the clock's time) and `date` (wall time).
    package mutating func reject(_ id: JobID, reason: String, now: Duration, date: JobTimestamp) -> RejectResult {
        guard var entry = self.entries[id], entry.stage == .delivered else { return .unknown }
        entry.rejections += 1
        if entry.rejections >= self.settings.maximumAttempts {
            self.entries[id] = nil
            let letter = DeadLetter(
                jobID: id, kind: entry.kind, attempts: entry.rejections, reason: reason, at: date, job: entry.job)
            let key = entry.key ?? max(date, self.watermark ?? date)
            self.remember(id, key: key)
            self.changes.append(.deadLettered(letter, key: key))
            self.advanceWatermark()
            self.acknowledgementOwed(id, entry)  // no replica retries it
            return .deadLettered(letter)
        }
        let at = now + self.retryDelay(after: entry.rejections)
        entry.stage = .retrying(at: at)
        self.entries[id] = entry
        return .retry(at: at)
    }

    /// Queues every rejected outcome due at `now`, and (fleet mode) every claim due again; returns how many, and the
    /// held outcomes whose claims are due for renewal (their renewal time is moved on).
    package mutating func retriesDue(now: Duration) -> (due: Int, renewals: [JobID]) {
        var due: [(Duration, JobID)] = []
        var renewals: [JobID] = []
        for (id, entry) in self.entries {
            switch entry.stage {
            case .retrying(let at), .heldElsewhere(let at):
                if at <= now { due.append((at, id)) }
            case .queued, .delivered:
                if let renewal = self.renewal(of: entry), renewal <= now {
                    renewals.append(id)
                    self.entries[id]?.renewalSentAt = now
                }
            case .unclaimed, .claiming:
                break
            }
        }
        for (id, entry) in self.acknowledging {
            if let renewal = self.renewal(of: entry), renewal <= now {
                renewals.append(id)
                self.acknowledging[id]?.renewalSentAt = now
            }
        }
        for (_, id) in due.sorted(by: { ($0.0, $0.1) < ($1.0, $1.1) }) {
            if case .heldElsewhere = self.entries[id]?.stage {
                self.entries[id]?.stage = .unclaimed
                self.claims.append(id)
            } else {
                self.entries[id]?.stage = .queued
                self.queue.append(id)
            }
        }
        return (due.count, renewals.sorted())
    }

    /// Fleet mode: up to `limit` outcomes to claim now (each is marked in flight).
    package mutating func takeClaims(limit: Int) -> [JobID] {
        var taken: [JobID] = []
        while taken.count < limit, let id = self.claims.popFirst() {
            guard self.entries[id]?.stage == .unclaimed else { continue }
            self.entries[id]?.stage = .claiming
            taken.append(id)
        }
        return taken
    }

    /// Fleet mode: the answer to a claim, or to a renewal, of the job's outcome; `now` is when its request was sent.
    package mutating func claimAnswered(_ id: JobID, _ answer: ClaimAnswer, now: Duration, date: JobTimestamp)
        -> ClaimResult
    {
        guard var entry = self.entries[id] else { return self.renewalAnswered(id, answer, now: now) }
        let renewal = entry.stage != .claiming
        switch answer {
        case .claimed:
            entry.claimedAt = now
            if !renewal {
                entry.stage = .queued
                self.queue.append(id)
            }
            self.entries[id] = entry
            return .held
        case .acknowledged:
            self.entries[id] = nil
            let key = entry.key ?? max(date, self.watermark ?? date)
            self.remember(id, key: key)
            self.changes.append(.acknowledged(id, key: key))
            self.advanceWatermark()
            return renewal ? .lost : .handledElsewhere
        case .heldElsewhere(let remaining):
            let until = now + max(.seconds(1), remaining)
            entry.stage = .heldElsewhere(until: until)
            entry.claimedAt = nil
            self.entries[id] = entry
            return renewal ? .lost : .waiting(until: until)
        case .failed:
            guard !renewal else { return .held }  // the lease still runs; the next renewal tries again
            let until = now + self.settings.retryDelay
            entry.stage = .heldElsewhere(until: until)
            self.entries[id] = entry
            return .waiting(until: until)
        }
    }

    /// Fleet mode: the next acknowledgement (or dead letter) to send to `jobsync_ack`, oldest first.
    package mutating func nextAcknowledgementToSend() -> JobID? {
        while let id = self.acknowledgementsToSend.popFirst() {
            if self.acknowledging[id] != nil { return id }
        }
        return nil
    }

    /// Fleet mode: `jobsync_ack` answered for the job (accepted or refused): its claim is no longer renewed.
    package mutating func acknowledgementAnswered(_ id: JobID) {
        self.acknowledging[id] = nil
    }

    /// Fleet mode: this `jobsync_ack` request got no answer: it waits for ``retryFailedAcknowledgements()``, its
    /// claim still renewed.
    package mutating func acknowledgementFailed(_ id: JobID) {
        self.failedAcknowledgements.append(id)
    }

    /// Fleet mode: the acknowledgements whose requests failed are sent again, first.
    package mutating func retryFailedAcknowledgements() {
        self.acknowledgementsToSend.insert(contentsOf: self.failedAcknowledgements, at: 0)
        self.failedAcknowledgements = []
    }

    /// Store events were lost (the subscription overflowed): a catch-up from the watermark is owed.
    package mutating func eventsLost() {
        self.owe(from: self.watermark)
    }

    /// A catch-up read is starting: returns where it reads from (`nil`: the beginning). Until it ends, the
    /// watermark stays there; refusals from here are owed anew.
    package mutating func catchUpStarted() -> JobTimestamp? {
        let from = self.owedFrom ?? self.watermark
        self.owedFrom = nil
        self.reading = .some(from)
        return from
    }

    /// The catch-up read ended; a failed one is owed again, from where it started.
    package mutating func catchUpEnded(succeeded: Bool) {
        guard case .some(let from) = self.reading else { return }
        self.reading = nil
        if !succeeded { self.owe(from: from) }
        self.advanceWatermark()
    }

    /// The changes to write since the last call, in order.
    package mutating func takeChanges() -> [ConsumerChange] {
        defer { self.changes = [] }
        return self.changes
    }

    // MARK: Internals

    /// Fleet mode: the outcome is handled here; its acknowledgement is to be sent, its claim renewed until then.
    private mutating func acknowledgementOwed(_ id: JobID, _ entry: Entry) {
        guard self.settings.lease != nil else { return }
        var entry = entry
        entry.job = nil
        self.acknowledging[id] = entry
        self.acknowledgementsToSend.append(id)
    }

    /// Fleet mode: the answer to a renewal of a claim whose outcome is handled here and acknowledgement on the way.
    private mutating func renewalAnswered(_ id: JobID, _ answer: ClaimAnswer, now: Duration) -> ClaimResult {
        guard var entry = self.acknowledging[id] else { return .unknown }
        switch answer {
        case .claimed:
            entry.claimedAt = now
        case .failed:
            return .held  // the lease still runs; the next renewal tries again
        case .acknowledged:
            entry.claimedAt = nil  // the acknowledgement arrived first: nothing left to renew
        case .heldElsewhere:
            entry.claimedAt = nil  // taken over: this replica's acknowledgement will be refused
            self.acknowledging[id] = entry
            return .lost
        }
        self.acknowledging[id] = entry
        return .held
    }

    private func retryDelay(after rejections: Int) -> Duration {
        var delay = self.settings.retryDelay
        for _ in 1..<max(1, rejections) where delay < self.settings.maximumRetryDelay { delay = delay * 2 }
        return min(delay, self.settings.maximumRetryDelay)
    }

    /// Records that a catch-up from `from` (`nil`: the beginning) is owed, keeping the earliest.
    private mutating func owe(from: JobTimestamp?) {
        switch self.owedFrom {
        case .none: self.owedFrom = .some(from)
        case .some(let owed?): self.owedFrom = .some(from.map { min($0, owed) })
        case .some(.none): break  // already from the beginning
        }
    }

    private mutating func remember(_ id: JobID, key: JobTimestamp) {
        self.handled[id] = key
        self.handledKeys.insert(Key(key: key, id: id))
    }

    /// Moves the watermark to `skew` before the oldest open outcome (or the newest seen when none is open), never
    /// past a refused one, never back; then forgets the acknowledgements below it.
    private mutating func advanceWatermark() {
        while let top = self.keys.min, self.entries[top.id]?.key != top.key { self.keys.removeMin() }
        guard var candidate = self.keys.min?.key ?? self.highestSeen else { return }
        candidate = candidate.advanced(by: .zero - self.settings.skew)
        for bound in [self.owedFrom, self.reading] {
            guard case .some(let from) = bound else { continue }
            guard let from else { return }  // from the beginning: the watermark waits
            candidate = min(candidate, from)
        }
        guard candidate > self.watermark ?? JobTimestamp(microsecondsSinceEpoch: .min) else { return }
        self.watermark = candidate
        self.changes.append(.watermark(candidate))
        while let top = self.handledKeys.min, top.key < candidate {
            self.handledKeys.removeMin()
            if self.handled[top.id] == top.key { self.handled[top.id] = nil }
        }
    }
}

/// What a consumer keeps in its file.
package struct ConsumerState: Sendable, Hashable {
    /// Every outcome below it is handled; `nil`: from the beginning.
    package var watermark: JobTimestamp?
    /// Acknowledged (and dead-lettered) jobs at or above the watermark, with the `updated_at` acknowledged.
    package var acknowledged: [JobID: JobTimestamp]

    package init(watermark: JobTimestamp?, acknowledged: [JobID: JobTimestamp] = [:]) {
        self.watermark = watermark
        self.acknowledged = acknowledged
    }
}

/// One change to a consumer's file.
package enum ConsumerChange: Sendable, Hashable {
    /// A larger watermark; acknowledgements below it are forgotten.
    case watermark(JobTimestamp)
    /// The job's outcome was acknowledged at this key.
    case acknowledged(JobID, key: JobTimestamp)
    /// The job's outcome became a dead letter (remembered at this key like an acknowledgement).
    case deadLettered(DeadLetter, key: JobTimestamp)
}
