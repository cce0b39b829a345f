import JobSync
import Foundation

/// Human-readable text for the live view, plain progress lines and the final summary. Pure functions of their
/// inputs, so tests pin the exact text.
struct HumanFormat: Sendable {
    /// Whether to use ANSI colours (off for `NO_COLOR`, `TERM=dumb` and non-terminals).
    var colors: Bool = false

    // MARK: Pieces

    /// `m:ss` under an hour, `h:mm:ss` above; whole seconds, rounded down.
    static func elapsed(_ duration: Duration) -> String {
        let total = max(0, duration.components.seconds)
        let hours = total / 3600
        let minutes = (total % 3600) / 60
        let seconds = total % 60
        let ss = seconds < 10 ? "0\(seconds)" : "\(seconds)"
        if hours > 0 {
            let mm = minutes < 10 ? "0\(minutes)" : "\(minutes)"
            return "\(hours):\(mm):\(ss)"
        }
        return "\(minutes):\(ss)"
    }

    /// Server-supplied text made safe for a terminal: control characters (ANSI escapes included) and line breaks
    /// become spaces, runs of spaces collapse.
    static func sanitized(_ text: String) -> String {
        var output = ""
        var lastWasSpace = false
        for scalar in text.unicodeScalars {
            let isControl = scalar.value < 0x20 || (0x7F...0x9F).contains(scalar.value)
            if isControl || scalar == " " {
                if !lastWasSpace && !output.isEmpty { output.append(" ") }
                lastWasSpace = true
            } else {
                output.unicodeScalars.append(scalar)
                lastWasSpace = false
            }
        }
        return output.hasSuffix(" ") ? String(output.dropLast()) : output
    }

    /// The shortest prefix length (at least 8) that keeps every id distinct.
    static func shortIDLength(for ids: [JobID]) -> Int {
        var length = 8
        while length < 36, Set(ids.map { $0.rawValue.prefix(length) }).count < ids.count {
            length += 1
        }
        return length
    }

    /// A confidence as a percentage with no decimals ("97%"), or `nil` when absent or out of 0…1.
    static func percent(_ confidence: Double?) -> String? {
        guard let confidence, confidence.isFinite, (0...1).contains(confidence) else { return nil }
        return "\(Int((confidence * 100).rounded()))%"
    }

    /// "3, 7" style list, with at most `limit` numbers shown.
    static func pageList(_ pages: [Int], limit: Int = 10) -> String {
        let shown = pages.prefix(limit).map(String.init).joined(separator: ", ")
        return pages.count > limit ? shown + ", … (\(pages.count) in all)" : shown
    }

    private func paint(_ text: String, _ code: String) -> String {
        self.colors ? "\u{1B}[\(code)m\(text)\u{1B}[0m" : text
    }

    private func symbol(for line: JobLine) -> String {
        switch line.outcome {
        case .completed?: return self.paint("✓", "32")
        case .failed?: return self.paint("✗", "31")
        case .notFound?, .deleted?: return self.paint("?", "33")
        case .timedOut?, .interrupted?, .unavailable?: return self.paint("!", "33")
        case nil:
            switch line.snapshot?.phase {
            case .processing?: return "▸"
            case .queued?: return "·"
            default: return "…"
            }
        }
    }

    // MARK: Live view and plain lines

    /// One live-view line: symbol, short id, status, elapsed, transport, progress (or error), cut to `width`.
    func liveLine(_ line: JobLine, idLength: Int, width: Int) -> String {
        let id = String(line.id.rawValue.prefix(idLength))
        let status = line.statusName.padding(toLength: 11, withPad: " ", startingAt: 0)
        let elapsed =
            String(repeating: " ", count: max(0, 7 - Self.elapsed(line.elapsed).count))
            + Self.elapsed(line.elapsed)
        let transport = line.transport.cliName.padding(toLength: 8, withPad: " ", startingAt: 0)
        var detail = ""
        if let snapshot = line.snapshot {
            if snapshot.phase == .failed, let error = snapshot.error {
                detail = Self.sanitized(error)
            } else if snapshot.phase == .completed, let result = snapshot.result {
                // Uncoloured: the line is cut to the terminal width, and a cut must never split an escape.
                detail = HumanFormat(colors: false).resultText(result)
            } else if let progress = snapshot.progress {
                detail = Self.sanitized(progress)
            }
        }
        let plain = "\(id)  \(status)\(elapsed)  \(transport)  \(detail)"
        let cut = Self.cut(plain, to: max(10, width - 3))
        return "\(self.symbol(for: line)) \(cut)"
    }

    /// The header line of the live view: how many jobs are final and the current transport.
    func liveHeader(lines: [JobLine], transport: TransportMode, width: Int) -> String {
        let done = lines.count { $0.outcome != nil }
        let mode: String
        switch transport {
        case .live: mode = self.paint("realtime (live)", "32")
        case .polling: mode = self.paint("polling (REST)", "33")
        case .offline: mode = self.paint("connecting…", "2")
        }
        return Self.cut("jobwatch: \(done)/\(lines.count) final · ", to: width) + mode
    }

    /// A whole live-view frame (header and one line per job), each line terminated by `\n`.
    func liveFrame(lines: [JobLine], transport: TransportMode, width: Int) -> [String] {
        let idLength = Self.shortIDLength(for: lines.map(\.id))
        return [self.liveHeader(lines: lines, transport: transport, width: width)]
            + lines.map { self.liveLine($0, idLength: idLength, width: width) }
    }

    /// A plain progress line for a record, when the live view is off (stderr is not a terminal).
    func plainLine(_ record: WatchState.Record) -> String? {
        switch record {
        case .job(let line):
            var text =
                "\(line.id.rawValue) \(line.statusName) [\(Self.elapsed(line.elapsed)), \(line.transport.cliName)]"
            if let progress = line.snapshot?.progress, line.snapshot?.phase.isFinal == false {
                text += " " + Self.sanitized(progress)
            }
            return text
        case .transport(let mode, let elapsed):
            return "transport: \(mode.cliName) [\(Self.elapsed(elapsed))]"
        case .final, .end:
            return nil
        }
    }

    // MARK: Summary

    /// "invoice, confidence 97%, 10 pages, 2 failed (pages 3, 7)".
    func resultText(_ result: ClassificationSummary) -> String {
        var parts: [String] = []
        parts.append(result.classification.map(Self.sanitized) ?? "no classification")
        if let percent = Self.percent(result.confidence) {
            parts.append("confidence \(percent)")
        }
        parts.append(result.pageCount == 1 ? "1 page" : "\(result.pageCount) pages")
        if !result.failedPages.isEmpty {
            let pages = result.failedPages.count == 1 ? "page" : "pages"
            parts.append(
                self.paint("\(result.failedPages.count) failed (\(pages) \(Self.pageList(result.failedPages)))", "33")
            )
        }
        return parts.joined(separator: ", ")
    }

    /// The final summary: one line per job (full id, outcome, details, elapsed), then a one-line total.
    func summary(lines: [JobLine], status: ExitStatus) -> [String] {
        var output: [String] = []
        for line in lines {
            let outcome = (line.outcome?.name ?? "waiting").padding(toLength: 11, withPad: " ", startingAt: 0)
            var detail: String
            switch line.outcome {
            case .completed?:
                detail = line.snapshot?.result.map(self.resultText) ?? "no result"
            case .failed?:
                detail = line.snapshot?.error.map(Self.sanitized) ?? "no error message"
            case .notFound?:
                detail = "no such job (or not visible with this key)"
            case .deleted?:
                detail = "the job was deleted"
            case .timedOut?, .interrupted?:
                detail = "last status: " + (line.snapshot?.phase.name ?? "none seen")
                if let progress = line.snapshot?.progress {
                    detail += " (\(Self.sanitized(progress)))"
                }
            case .unavailable(let message)?:
                detail = message
            case nil:
                detail = ""
            }
            output.append(
                "\(self.symbol(for: line)) \(line.id.rawValue)  \(outcome)\(detail)  [\(Self.elapsed(line.elapsed))]"
            )
        }
        let counts = Dictionary(grouping: lines, by: { $0.outcome?.name ?? "waiting" }).mapValues(\.count)
        let order = ["completed", "failed", "not_found", "deleted", "timeout", "interrupted", "unavailable", "waiting"]
        let total = order.compactMap { name in
            counts[name].map { "\($0) \(name.replacingOccurrences(of: "_", with: " "))" }
        }
        output.append("\(total.joined(separator: ", ")) · exit \(status.rawValue)")
        return output
    }

    /// Cuts `text` to at most `width` characters, ending with "…" when cut.
    static func cut(_ text: String, to width: Int) -> String {
        guard text.count > width else { return text }
        return String(text.prefix(max(0, width - 1))) + "…"
    }
}

// MARK: follow

extension HumanFormat {
    /// A human line for a `follow` outcome: symbol, full id, outcome, details, and the delivery after the first.
    func followLine(_ outcome: FollowedOutcome) -> String {
        let line = outcome.line
        let name = (line.outcome?.name ?? "waiting").padding(toLength: 11, withPad: " ", startingAt: 0)
        var detail: String
        switch line.outcome {
        case .completed?:
            detail = line.snapshot?.result.map(self.resultText) ?? "no result"
        case .failed?:
            detail = line.snapshot?.error.map(Self.sanitized) ?? "no error message"
        case .deleted?:
            detail = "the job was deleted"
        default:
            detail = ""
        }
        if outcome.delivery > 1 {
            detail += "  (delivery \(outcome.delivery))"
        }
        return "\(self.symbol(for: line)) \(line.id.rawValue)  \(name)\(detail)"
    }

    /// The `follow --dead-letters` table: a header, then one row per dead letter (or a line saying there is none).
    func deadLetterTable(_ letters: [DeadLetterView], consumer: String) -> [String] {
        guard !letters.isEmpty else { return ["no dead letters for consumer \(Self.sanitized(consumer))"] }
        var rows = ["JOB ID                                ATTEMPTS  DEAD LETTER SINCE            REASON"]
        for letter in letters {
            let attempts = String(letter.attempts).padding(toLength: 8, withPad: " ", startingAt: 0)
            let at = letter.at.padding(toLength: 27, withPad: " ", startingAt: 0)
            rows.append("\(letter.id.rawValue)  \(attempts)  \(at)  \(Self.sanitized(letter.reason))")
        }
        return rows
    }
}
