import JobSync
import Foundation
import Testing

@testable import jobwatch

@Suite("Human rendering: live lines, plain lines, summaries")
struct RenderingTests {
    let format = HumanFormat()

    @Test("Elapsed times: m:ss under an hour, h:mm:ss above")
    func elapsed() {
        #expect(HumanFormat.elapsed(.zero) == "0:00")
        #expect(HumanFormat.elapsed(.milliseconds(12_900)) == "0:12")
        #expect(HumanFormat.elapsed(.seconds(65)) == "1:05")
        #expect(HumanFormat.elapsed(.seconds(3_723)) == "1:02:03")
    }

    @Test("Server text cannot inject terminal escapes or break lines")
    func sanitized() {
        #expect(HumanFormat.sanitized("ok\u{1B}[2J\nnext\tline\u{9B}") == "ok [2J next line")
        #expect(HumanFormat.sanitized("  a   b  ") == "a b")
    }

    @Test("Short ids grow until unique")
    func shortIDs() throws {
        let x = try JobID("aaaaaaaa-0000-4000-8000-000000000001")
        let y = try JobID("aaaaaaaa-1000-4000-8000-000000000002")
        #expect(HumanFormat.shortIDLength(for: [Fixture.a, Fixture.b]) == 8)
        #expect(HumanFormat.shortIDLength(for: [x, y]) == 10)
    }

    @Test("A live line shows symbol, short id, status, elapsed, transport and progress")
    func liveLine() {
        var line = JobLine(id: Fixture.a)
        line.snapshot = Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 3 of 10")
        line.elapsed = .seconds(12)
        line.transport = .polling
        let text = self.format.liveLine(line, idLength: 8, width: 120)
        #expect(text == "▸ 3f1c2a9b  processing    0:12  polling   Processing page 3 of 10")
    }

    @Test("Live lines are cut to the terminal width")
    func liveLineWidth() {
        var line = JobLine(id: Fixture.a)
        line.snapshot = Fixture.snapshot(Fixture.a, .processing, progress: String(repeating: "x", count: 300))
        let text = self.format.liveLine(line, idLength: 8, width: 60)
        #expect(text.count <= 60)
        #expect(text.hasSuffix("…"))
    }

    @Test("The live header names the transport, so the switch to polling and back is visible")
    func liveHeader() {
        let lines = [JobLine(id: Fixture.a)]
        #expect(self.format.liveHeader(lines: lines, transport: .live, width: 80).contains("realtime (live)"))
        #expect(self.format.liveHeader(lines: lines, transport: .polling, width: 80).contains("polling"))
        #expect(self.format.liveHeader(lines: lines, transport: .polling, width: 80).hasPrefix("jobwatch: 0/1 final"))
    }

    @Test("Results: classification, confidence, pages, failed pages called out")
    func result() {
        #expect(self.format.resultText(Fixture.invoice) == "invoice, confidence 97%, 10 pages, 2 failed (pages 3, 7)")
        let clean = ClassificationSummary(classification: "contract", confidence: 0.5, pageCount: 1, failedPages: [])
        #expect(self.format.resultText(clean) == "contract, confidence 50%, 1 page")
        let odd = ClassificationSummary(classification: nil, confidence: 7, pageCount: 0, failedPages: [1])
        #expect(self.format.resultText(odd) == "no classification, 0 pages, 1 failed (page 1)")
    }

    @Test("The summary has one line per job with its outcome, then the totals and exit status")
    func summary() {
        var done = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice))
        done.outcome = .completed
        done.elapsed = .seconds(4)
        let error = "Failed to process PDF: File appears to be corrupted"
        var failed = JobLine(id: Fixture.b, snapshot: Fixture.snapshot(Fixture.b, .failed, error: error))
        failed.outcome = .failed
        var missing = JobLine(id: Fixture.c)
        missing.outcome = .notFound
        let lines = self.format.summary(lines: [done, failed, missing], status: .notFound)
        #expect(lines.count == 4)
        #expect(
            lines[0] == "✓ \(Fixture.a)  completed  invoice, confidence 97%, 10 pages, 2 failed (pages 3, 7)  [0:04]"
        )
        #expect(lines[1] == "✗ \(Fixture.b)  failed     \(error)  [0:00]")
        #expect(lines[2].contains("not_found") && lines[2].contains("no such job"))
        #expect(lines[3] == "1 completed, 1 failed, 1 not found · exit 4")
    }

    @Test("Timed-out jobs show their last status and progress")
    func summaryTimeout() {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .processing, progress: "page 2"))
        line.outcome = .timedOut
        let text = self.format.summary(lines: [line], status: .timeout)[0]
        #expect(text.contains("timeout") && text.contains("last status: processing (page 2)"))
    }

    @Test("Plain progress lines (stderr not a terminal) carry id, status, elapsed and transport")
    func plainLines() {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .queued, progress: "Waiting"))
        line.transport = .live
        #expect(self.format.plainLine(.job(line)) == "\(Fixture.a) queued [0:00, realtime] Waiting")
        #expect(self.format.plainLine(.transport(.polling, elapsed: .seconds(3))) == "transport: polling [0:03]")
        #expect(self.format.plainLine(.final(line)) == nil)
    }

    @Test("A cut live line never splits a colour escape (results are uncoloured in live lines)")
    func liveLineColoursAndCut() {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .completed, result: Fixture.invoice))
        line.outcome = .completed
        let text = HumanFormat(colors: true).liveLine(line, idLength: 8, width: 50)
        #expect(text.hasSuffix("…"))
        #expect(text.components(separatedBy: "\u{1B}[").count == 3)  // the symbol's colour and its reset only
    }

    @Test("Colours only when asked")
    func colours() {
        var line = JobLine(id: Fixture.a, snapshot: Fixture.snapshot(Fixture.a, .completed))
        line.outcome = .completed
        #expect(!self.format.liveLine(line, idLength: 8, width: 80).contains("\u{1B}"))
        #expect(HumanFormat(colors: true).liveLine(line, idLength: 8, width: 80).contains("\u{1B}[32m"))
    }

    @Test("The live view hides the cursor, redraws in place and restores the cursor at the end")
    func liveView() {
        var view = LiveView(format: self.format, width: 80)
        let lines = [JobLine(id: Fixture.a), JobLine(id: Fixture.b)]
        let first = view.frame(lines: lines, transport: .live)
        #expect(first.hasPrefix("\u{1B}[?25l"))
        #expect(first.components(separatedBy: "\n").count == 4)  // header + 2 lines + trailing
        let second = view.frame(lines: lines, transport: .polling)
        #expect(second.hasPrefix("\u{1B}[3F"))  // back to the first of the 3 rows drawn before
        #expect(second.contains("polling"))
        #expect(view.close() == "\u{1B}[?25h")
    }

    @Test("status lines: full id, status and detail")
    func statusLine() {
        let running = Fixture.snapshot(Fixture.a, .processing, progress: "Processing page 3 of 10")
        #expect(
            self.format.statusLine(id: Fixture.a, snapshot: running)
                == "\(Fixture.a)  processing Processing page 3 of 10"
        )
        #expect(self.format.statusLine(id: Fixture.b, snapshot: nil).contains("not_found"))
    }
}
