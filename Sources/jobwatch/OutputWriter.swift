import Foundation
import JobSync
import Logging
import NIOConcurrencyHelpers

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The one ordered writer for everything `jobwatch` prints: data on stdout, progress, logs and errors on stderr.
/// Every write is complete before the next starts, so lines from different tasks never interleave.
final class OutputWriter: Sendable {
    /// Which standard stream.
    enum Stream: Sendable, Hashable {
        /// Data: JSON Lines, summaries, `status` answers, `serve`'s exports.
        case stdout
        /// Progress: the live view, plain progress lines, logs and errors.
        case stderr
    }

    /// Receives every write, in order, under the writer's lock.
    typealias Sink = @Sendable (Stream, String) -> Void

    /// Receives every write, in order, under the writer's lock, and tells whether all of it was written.
    typealias CheckedSink = @Sendable (Stream, String) -> WriteResult

    /// Whether a write reached its stream.
    enum WriteResult: Sendable, Hashable {
        /// Every byte was written (to the descriptor: nothing is buffered in the process).
        case written
        /// The write stopped with this `errno` (`EPIPE`: the reader closed the pipe); the rest was dropped.
        case failed(errno: Int32)
    }

    private let sink: NIOLockedValueBox<CheckedSink>

    /// A writer to the process's standard streams.
    convenience init() {
        self.init(checkedSink: Self.standardStreams)
    }

    /// A writer to a custom sink (tests).
    convenience init(sink: @escaping Sink) {
        self.init(checkedSink: { stream, text in
            sink(stream, text)
            return .written
        })
    }

    /// A writer to a custom sink that can fail (tests of a closed stdout).
    init(checkedSink: @escaping CheckedSink) {
        self.sink = NIOLockedValueBox(checkedSink)
    }

    /// Writes `text` as is.
    func write(_ text: String, to stream: Stream) {
        self.deliver(text, to: stream)
    }

    /// Writes `text` as is and reports whether all of it was written: `follow` acknowledges an outcome only once
    /// its line is out of the process.
    @discardableResult
    func deliver(_ text: String, to stream: Stream) -> WriteResult {
        guard !text.isEmpty else { return .written }
        return self.sink.withLockedValue { $0(stream, text) }
    }

    /// Writes `line` followed by a newline.
    func line(_ line: String, to stream: Stream) {
        self.write(line + "\n", to: stream)
    }

    /// Writes "jobwatch: error: <message>" on stderr.
    func error(_ message: String) {
        self.line("jobwatch: error: \(message)", to: .stderr)
    }

    /// Writes to file descriptors 1 and 2 directly, retrying on EINTR and partial writes. A closed pipe
    /// (EPIPE; SIGPIPE is ignored in `main`) drops the rest of that write and is reported as a failure.
    private static let standardStreams: CheckedSink = { stream, text in
        let descriptor: Int32 = stream == .stdout ? 1 : 2
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeMutableBytes { buffer in
                Foundation.write(descriptor, buffer.baseAddress! + offset, buffer.count - offset)
            }
            if written > 0 {
                offset += written
            } else if written < 0 && errno == EINTR {
                continue
            } else {
                return .failed(errno: written < 0 ? errno : EIO)
            }
        }
        return .written
    }
}

/// A swift-log handler that writes through the ``OutputWriter`` to stderr, one line per message, metadata sorted.
struct WriterLogHandler: LogHandler {
    /// The writer to use.
    let writer: OutputWriter
    /// The logger's label.
    let label: String
    var logLevel: Logger.Level
    var metadata: Logger.Metadata = [:]

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { self.metadata[key] }
        set { self.metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = self.metadata.merging(event.metadata ?? [:]) { _, new in new }
        let details = merged.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
        let text = "jobwatch: \(event.level): \(event.message)" + (details.isEmpty ? "" : " [\(details)]")
        self.writer.line(text, to: .stderr)
    }
}

/// Facts about the terminal, read once at start.
struct TerminalInfo: Sendable, Hashable {
    /// Whether stdout is a terminal.
    var stdoutIsTTY: Bool
    /// Whether stderr is a terminal.
    var stderrIsTTY: Bool
    /// Columns of the terminal on stderr (80 when unknown).
    var columns: Int
    /// Whether colours are allowed at all (`NO_COLOR` unset, `TERM` not `dumb`).
    var colorsAllowed: Bool

    /// Colours on stderr (the live view).
    var stderrColors: Bool { self.colorsAllowed && self.stderrIsTTY }
    /// Colours on stdout (the human summary).
    var stdoutColors: Bool { self.colorsAllowed && self.stdoutIsTTY }

    /// Reads the current process's terminal facts.
    static func current(environment: [String: String] = ProcessInfo.processInfo.environment) -> TerminalInfo {
        let stdoutIsTTY = isatty(1) == 1
        let stderrIsTTY = isatty(2) == 1
        var size = winsize()
        var columns = 80
        if stderrIsTTY, ioctl(2, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 {
            columns = Int(size.ws_col)
        } else if let text = environment["COLUMNS"], let value = Int(text), value > 0 {
            columns = value
        }
        let colors = environment["NO_COLOR"] == nil && environment["TERM"] != "dumb"
        return TerminalInfo(
            stdoutIsTTY: stdoutIsTTY,
            stderrIsTTY: stderrIsTTY,
            columns: columns,
            colorsAllowed: colors
        )
    }
}

/// Draws the live view in place with ANSI escapes: each frame moves the cursor back to the top of the previous
/// frame and rewrites it line by line.
struct LiveView: Sendable {
    /// The formatter for lines.
    var format: HumanFormat
    /// Terminal width in columns.
    var width: Int
    private var drawnLines = 0

    /// A live view for a terminal `width` columns wide.
    init(format: HumanFormat, width: Int) {
        self.format = format
        self.width = width
    }

    /// The bytes that replace the previous frame with this one.
    mutating func frame(lines: [JobLine], transport: TransportMode) -> String {
        let rows = self.format.liveFrame(lines: lines, transport: transport, width: self.width)
        // First frame: hide the cursor. Later frames: go back to column 1 of the previous frame's first line.
        var output = self.drawnLines == 0 ? "\u{1B}[?25l" : "\u{1B}[\(self.drawnLines)F"
        for row in rows {
            output += "\u{1B}[2K" + row + "\n"
        }
        // Clears anything left below (a previous, longer frame).
        output += "\u{1B}[J"
        self.drawnLines = rows.count
        return output
    }

    /// The bytes that end the live view (shows the cursor again); the last frame stays on screen.
    func close() -> String {
        self.drawnLines == 0 ? "" : "\u{1B}[?25h"
    }
}
