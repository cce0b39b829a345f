import JobSync
import JobSyncTestSupport
import Testing

@testable import jobwatch

@Suite("WatchRunner: driving the state machine over a session")
struct WatchRunnerTests {
    private func runner(
        _ session: ScriptedSession,
        ids: [JobID],
        timeout: Duration? = nil,
        mode: OutputMode = OutputMode(data: .json, progress: .none),
        clock: ManualClock = ManualClock(),
        capture: CapturedOutput
    ) -> (WatchRunner<ManualClock>, WatchResult) {
        let result = WatchResult()
        let output = WatchOutput(
            writer: capture.writer,
            mode: mode,
            format: HumanFormat(),
            summaryFormat: HumanFormat(),
            width: 100
        )
        let runner = WatchRunner(
            session: session,
            ids: ids,
            timeout: timeout,
            tickInterval: nil,
            clock: clock,
            output: output,
            result: result
        )
        return (runner, result)
    }

    @Test("Jobs that complete and fail: JSON Lines in order, exit 1")
    func completesAndFails() async throws {
        let capture = CapturedOutput()
        let session = ScriptedSession(events: [
            .transport(.live),
            .job(Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 1 of 10")),
            .job(Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice)),
            .job(Fixture.snapshot(Fixture.b, .failed, error: "Failed to upload file to storage. Please try again.")),
        ])
        let (runner, result) = self.runner(session, ids: [Fixture.a, Fixture.b], capture: capture)
        await runner.run()
        #expect(result.status == .failed)
        let events = capture.lines(.stdout).map { line in
            line.split(separator: ",")[1]  // "event":"…" is always the second member
        }
        #expect(
            events == [
                #""event":"transport""#, #""event":"job""#, #""event":"job""#, #""event":"final""#,
                #""event":"job""#, #""event":"final""#, #""event":"end""#,
            ]
        )
        #expect(capture.text(.stderr).isEmpty)
    }

    @Test("A session that cannot reach the service ends the watch with exit 5 and its message")
    func unreachable() async {
        let capture = CapturedOutput()
        let failure = JobwatchError(.unreachable, "cannot reach http://127.0.0.1:9")
        let (runner, result) = self.runner(
            ScriptedSession(events: [], failure: failure),
            ids: [Fixture.a],
            mode: OutputMode(data: .human, progress: .none),
            capture: capture
        )
        await runner.run()
        #expect(result.status == .unreachable)
        #expect(capture.lines(.stdout).first?.contains("cannot reach http://127.0.0.1:9") == true)
        #expect(capture.lines(.stdout).last == "1 unavailable · exit 5")
        #expect(capture.lines(.stderr) == ["jobwatch: error: cannot reach http://127.0.0.1:9"])
    }

    @Test("--timeout on the injected clock: exit 3 once the clock passes it, not before")
    func timeout() async {
        let capture = CapturedOutput()
        let clock = ManualClock()
        let session = ScriptedSession(events: [.job(Fixture.snapshot(Fixture.a, .queued))])
        let (runner, result) = self.runner(
            session,
            ids: [Fixture.a],
            timeout: .seconds(5),
            clock: clock,
            capture: capture
        )
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await runner.run() }
            await clock.waitForSleepers(1)
            clock.advance(by: .seconds(4))
            #expect(result.status == nil)
            clock.advance(by: .seconds(1))
            await group.waitForAll()
        }
        #expect(result.status == .timeout)
        #expect(capture.lines(.stdout).last?.contains(#""exit_code":3"#) == true)
        #expect(
            capture.lines(.stdout).contains {
                $0.contains(#""outcome":"timeout""#) && $0.contains(#""elapsed_ms":5000"#)
            }
        )
    }

    @Test("Plain progress lines go to stderr and the human summary to stdout")
    func plainAndSummary() async {
        let capture = CapturedOutput()
        let session = ScriptedSession(events: [
            .transport(.polling),
            .job(Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice)),
        ])
        let (runner, result) = self.runner(
            session,
            ids: [Fixture.a],
            mode: OutputMode(data: .human, progress: .plain),
            capture: capture
        )
        await runner.run()
        #expect(result.status == .completed)
        #expect(capture.lines(.stderr) == ["transport: polling [0:00]", "\(Fixture.a) completed [0:00, polling]"])
        #expect(capture.lines(.stdout).count == 2)
        #expect(capture.lines(.stdout)[0].contains("invoice, confidence 97%, 10 pages, 2 failed (pages 3, 7)"))
    }

    @Test("The live view draws frames on stderr and restores the cursor at the end")
    func liveView() async {
        let capture = CapturedOutput()
        let session = ScriptedSession(events: [.transport(.live), .missing(Fixture.a, .notFound)])
        let (runner, result) = self.runner(
            session,
            ids: [Fixture.a],
            mode: OutputMode(data: .human, progress: .live),
            capture: capture
        )
        await runner.run()
        #expect(result.status == .notFound)
        let stderr = capture.text(.stderr)
        #expect(stderr.hasPrefix("\u{1B}[?25l"))
        #expect(stderr.hasSuffix("\u{1B}[?25h"))
        #expect(stderr.contains("realtime (live)"))
        #expect(capture.lines(.stdout).last == "1 not found · exit 4")
    }
}
