import Testing
import JobSync

@testable import jobwatch

@Suite("WatchState: the watch command's state machine")
struct WatchStateTests {
    @Test("A job that completes ends the watch with exit 0, emitting job, final, end in that order")
    func completes() throws {
        var state = WatchState(ids: [Fixture.a])
        let processing = Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 3 of 10")
        let first = state.handle(.event(.job(processing)), at: .seconds(1))
        #expect(first.count == 2)
        guard case .emit(.job(let line)) = first.first else {
            Issue.record("expected a job record, got \(first)")
            return
        }
        #expect(line.snapshot == processing)
        #expect(line.elapsed == .seconds(1))
        #expect(line.outcome == nil)
        #expect(first.last == .redraw)

        let completed = Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice)
        let actions = state.handle(.event(.job(completed)), at: .seconds(4))
        #expect(actions.last == .finish(.completed))
        #expect(state.finished == .completed)
        let finals = actions.compactMap { action -> JobLine? in
            if case .emit(.final(let line)) = action { return line }
            return nil
        }
        #expect(finals.map(\.outcome) == [.completed])
        #expect(finals.first?.elapsed == .seconds(4))
        #expect(actions.contains { if case .emit(.end(.completed, _)) = $0 { true } else { false } })
    }

    @Test("The watch ends only when every job is final")
    func waitsForAll() {
        var state = WatchState(ids: [Fixture.a, Fixture.b])
        let done = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .completed))), at: .seconds(1))
        #expect(!done.contains(.finish(.completed)))
        #expect(state.finished == nil)
        let failed = state.handle(.event(.job(Fixture.snapshot(Fixture.b, .failed, error: "boom"))), at: .seconds(2))
        #expect(failed.last == .finish(.failed))
    }

    @Test("Exit precedence with several jobs: not found (4) beats failed (1) beats completed (0)")
    func precedence() {
        var state = WatchState(ids: [Fixture.a, Fixture.b, Fixture.c])
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .completed))), at: .zero)
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.b, .failed))), at: .zero)
        let actions = state.handle(.event(.missing(Fixture.c, .deleted)), at: .zero)
        #expect(actions.last == .finish(.notFound))
        #expect(state.lines.map(\.outcome) == [.completed, .failed, .deleted])
    }

    @Test("Timeout ends open jobs with exit 3 and keeps outcomes already known")
    func timeout() {
        var state = WatchState(ids: [Fixture.a, Fixture.b])
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .failed))), at: .seconds(1))
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.b, .processing, progress: "p"))), at: .seconds(2))
        let actions = state.handle(.timeout, at: .seconds(30))
        #expect(actions.last == .finish(.timeout))
        #expect(state.lines.map(\.outcome) == [.failed, .timedOut])
        #expect(state.lines[0].elapsed == .seconds(1))
        #expect(state.lines[1].elapsed == .seconds(30))
        #expect(state.lines[1].snapshot?.progress == "p")
    }

    @Test("A session failure (unreachable, bad key) exits 5 and carries the message")
    func sessionFailure() {
        var state = WatchState(ids: [Fixture.a])
        let error = JobwatchError(.unauthorized, "the service rejected the API key (HTTP 401)")
        let actions = state.handle(.sessionFailed(error), at: .seconds(2))
        #expect(actions.last == .finish(.unreachable))
        #expect(state.lines[0].outcome == .unavailable("the service rejected the API key (HTTP 401)"))
    }

    @Test("Interruption exits 130; nothing is emitted after finishing")
    func interrupted() {
        var state = WatchState(ids: [Fixture.a])
        #expect(state.handle(.interrupted, at: .seconds(1)).last == .finish(.interrupted))
        #expect(state.handle(.event(.job(Fixture.snapshot(Fixture.a, .completed))), at: .seconds(2)).isEmpty)
        #expect(state.handle(.timeout, at: .seconds(3)).isEmpty)
        #expect(state.finished == .interrupted)
    }

    @Test("A repeated identical state is not shown twice; a changed progress is")
    func deduplicates() {
        var state = WatchState(ids: [Fixture.a])
        let page3 = Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 3 of 10")
        #expect(!state.handle(.event(.job(page3)), at: .seconds(1)).isEmpty)
        #expect(state.handle(.event(.job(page3)), at: .seconds(2)).isEmpty)
        let page4 = Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 4 of 10")
        #expect(!state.handle(.event(.job(page4)), at: .seconds(3)).isEmpty)
    }

    @Test("Transport switches are recorded once and stamped on open lines")
    func transport() {
        var state = WatchState(ids: [Fixture.a, Fixture.b])
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .completed))), at: .seconds(1))
        let actions = state.handle(.event(.transport(.polling)), at: .seconds(2))
        #expect(actions == [.emit(.transport(.polling, elapsed: .seconds(2))), .redraw])
        #expect(state.handle(.event(.transport(.polling)), at: .seconds(3)).isEmpty)
        #expect(state.transport == .polling)
        #expect(state.lines[0].transport == .offline)
        #expect(state.lines[1].transport == .polling)
    }

    @Test("Events for jobs not watched are ignored")
    func unknownJob() {
        var state = WatchState(ids: [Fixture.a])
        #expect(state.handle(.event(.job(Fixture.snapshot(Fixture.b, .completed))), at: .zero).isEmpty)
        #expect(state.handle(.event(.missing(Fixture.b, .notFound)), at: .zero).isEmpty)
    }

    @Test("Ticks refresh elapsed time of open lines only")
    func ticks() {
        var state = WatchState(ids: [Fixture.a, Fixture.b])
        _ = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .failed))), at: .seconds(1))
        #expect(state.handle(.tick, at: .seconds(9)) == [.redraw])
        #expect(state.lines.map(\.elapsed) == [.seconds(1), .seconds(9)])
    }

    @Test("Statuses parse case-insensitively; unknown ones are kept and do not end the watch")
    func phases() {
        #expect(JobPhase(raw: "PROCESSING") == .processing)
        #expect(JobPhase(raw: "Completed") == .completed)
        #expect(JobPhase(raw: "Paused") == .unknown("paused"))
        var state = WatchState(ids: [Fixture.a])
        let actions = state.handle(.event(.job(Fixture.snapshot(Fixture.a, .unknown("paused")))), at: .zero)
        #expect(!actions.contains { if case .finish = $0 { true } else { false } })
    }
}
