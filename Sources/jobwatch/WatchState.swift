import JobSync

/// The `watch` command's logic as a synchronous state machine: inputs (session events, ticks, timeout,
/// interruption, session failure) in, ``WatchState/Action``s out. No I/O, no clock: the driver passes the time
/// elapsed since the watch started with every input.
struct WatchState: Sendable {
    /// Something that happened to the watch.
    enum Input: Sendable, Hashable {
        /// The session observed something.
        case event(WatchEvent)
        /// Periodic refresh of the elapsed times (live view only).
        case tick
        /// `--timeout` elapsed.
        case timeout
        /// SIGINT/SIGTERM (graceful shutdown).
        case interrupted
        /// The session stopped with an error (service unreachable, authentication failed).
        case sessionFailed(JobwatchError)
    }

    /// A record for the output: one per change, in order.
    enum Record: Sendable, Hashable {
        /// A job's state changed.
        case job(JobLine)
        /// The session switched transport.
        case transport(TransportMode, elapsed: Duration)
        /// A job's watch ended (final state, missing, timeout, interruption, failure).
        case final(JobLine)
        /// The watch ended with this exit status; the lines are every job's last line, in argument order.
        case end(ExitStatus, [JobLine])
    }

    /// What the driver must do.
    enum Action: Sendable, Hashable {
        /// Write this record (JSON Lines, or a plain line when the live view is off).
        case emit(Record)
        /// Redraw the live view from ``WatchState/lines``.
        case redraw
        /// Stop the session and exit with this status. Always the last action, emitted once.
        case finish(ExitStatus)
    }

    /// Every watched job's line, in argument order.
    private(set) var lines: [JobLine]
    /// The session's current transport.
    private(set) var transport: TransportMode = .offline
    /// The exit status once the watch has finished.
    private(set) var finished: ExitStatus?
    private let indexByID: [JobID: Int]

    /// Starts watching `ids` (already de-duplicated, non-empty).
    init(ids: [JobID]) {
        precondition(!ids.isEmpty, "WatchState needs at least one job id")
        self.lines = ids.map { JobLine(id: $0) }
        self.indexByID = Dictionary(uniqueKeysWithValues: ids.enumerated().map { ($0.element, $0.offset) })
    }

    /// Handles one input at `elapsed` since the watch started and returns what to do, in order.
    mutating func handle(_ input: Input, at elapsed: Duration) -> [Action] {
        // Once finished, nothing else may be written: late session events are dropped.
        guard self.finished == nil else { return [] }
        switch input {
        case .event(.job(let snapshot)):
            return self.observe(snapshot, at: elapsed)
        case .event(.missing(let id, let reason)):
            guard let index = self.indexByID[id], self.lines[index].outcome == nil else { return [] }
            self.lines[index].elapsed = elapsed
            self.lines[index].transport = self.transport
            self.lines[index].outcome = reason == .deleted ? .deleted : .notFound
            return [.emit(.final(self.lines[index])), .redraw] + self.finishIfAllFinal()
        case .event(.transport(let mode)):
            guard mode != self.transport else { return [] }
            self.transport = mode
            self.updateOpenLines(at: elapsed)
            return [.emit(.transport(mode, elapsed: elapsed)), .redraw]
        case .tick:
            self.updateOpenLines(at: elapsed)
            return [.redraw]
        case .timeout:
            return self.endOpenLines(with: .timedOut, at: elapsed)
        case .interrupted:
            return self.endOpenLines(with: .interrupted, at: elapsed)
        case .sessionFailed(let error):
            return self.endOpenLines(with: .unavailable(error.message), at: elapsed)
        }
    }

    private mutating func observe(_ snapshot: JobSnapshot, at elapsed: Duration) -> [Action] {
        // A job whose watch has ended keeps its outcome (a later retry is out of this watch's scope).
        guard let index = self.indexByID[snapshot.id], self.lines[index].outcome == nil else { return [] }
        // The library never delivers the same version twice, but the status endpoint may repeat a state:
        // only real changes are shown.
        guard self.lines[index].snapshot != snapshot else { return [] }
        self.lines[index].snapshot = snapshot
        self.lines[index].elapsed = elapsed
        self.lines[index].transport = self.transport
        var actions: [Action] = [.emit(.job(self.lines[index]))]
        switch snapshot.phase {
        case .completed:
            self.lines[index].outcome = .completed
        case .failed:
            self.lines[index].outcome = .failed
        case .queued, .processing, .unknown:
            return actions + [.redraw]
        }
        actions.append(.emit(.final(self.lines[index])))
        actions.append(.redraw)
        return actions + self.finishIfAllFinal()
    }

    private mutating func updateOpenLines(at elapsed: Duration) {
        for index in self.lines.indices where self.lines[index].outcome == nil {
            self.lines[index].elapsed = elapsed
            self.lines[index].transport = self.transport
        }
    }

    private mutating func endOpenLines(with outcome: JobOutcome, at elapsed: Duration) -> [Action] {
        var actions: [Action] = []
        for index in self.lines.indices where self.lines[index].outcome == nil {
            self.lines[index].elapsed = elapsed
            self.lines[index].transport = self.transport
            self.lines[index].outcome = outcome
            actions.append(.emit(.final(self.lines[index])))
        }
        return actions + [.redraw] + self.finish()
    }

    private mutating func finishIfAllFinal() -> [Action] {
        guard self.lines.allSatisfy({ $0.outcome != nil }) else { return [] }
        return self.finish()
    }

    private mutating func finish() -> [Action] {
        let status = self.lines.compactMap { $0.outcome?.exitStatus }.max() ?? .completed
        self.finished = status
        return [.emit(.end(status, self.lines)), .finish(status)]
    }
}
