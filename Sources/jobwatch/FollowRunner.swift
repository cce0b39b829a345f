import Foundation
import JobSync
import NIOConcurrencyHelpers
import ServiceLifecycle

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Drives `jobwatch follow` over a ``FollowSession``: writes one record per outcome (or runs `--exec` with it) and
/// settles it, one outcome at a time, and keeps the one-line summary on a terminal. A swift-service-lifecycle
/// `Service`: a graceful shutdown (SIGINT/SIGTERM in a `ServiceGroup`) stops taking outcomes, waits until every
/// acknowledgement is stored, and ends with ``ExitStatus/completed``.
///
/// An outcome is acknowledged only once its line is written to stdout (no buffer in between: `write(2)` to file
/// descriptor 1), or once `--exec` exited 0. An outcome whose write fails (the reader closed the pipe) is left
/// unsettled, and the follow ends: the next run delivers it again.
struct FollowRunner<C: Clock>: Service where C.Duration == Duration {
    /// The source of outcomes.
    let session: any FollowSession
    /// The `--exec` command, if any: it handles outcomes instead of stdout.
    let executor: FollowCommandExecutor?
    /// How often to refresh the summary line (`nil`: never).
    let tickInterval: Duration?
    /// The clock for `elapsed_ms`, ticks and the outcome rate.
    let clock: C
    /// Where output goes.
    let output: FollowOutput
    /// The exit status once the run has finished.
    let result: WatchResult
    /// Called once with the exit status after the last acknowledgement is stored, before the session is torn
    /// down (the CLI exits here: see ``WatchCommandRunner``).
    var onFinish: (@Sendable (ExitStatus) -> Void)? = nil

    /// What the loop reacts to, in order.
    enum Input: Sendable {
        case event(FollowEvent)
        case tick
        case failed(JobwatchError)
        case stop
    }

    func run() async {
        let (inputs, continuation) = AsyncStream.makeStream(of: Input.self)
        let stopping = NIOLockedValueBox(false)
        let start = self.clock.now
        let session = self.session
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await session.run { event in continuation.yield(.event(event)) }
                        if !Task.isCancelled {
                            continuation.yield(.failed(JobwatchError(.unreachable, "the outcome consumer ended")))
                        }
                    } catch let error as JobwatchError {
                        continuation.yield(.failed(error))
                    } catch {
                        if !Task.isCancelled {
                            // Only our own messages are printed: an unknown error's text could hold anything.
                            continuation.yield(.failed(JobwatchError(.unreachable, "the outcome consumer failed")))
                        }
                    }
                }
                if let interval = self.tickInterval {
                    group.addTask {
                        var next = start.advanced(by: interval)
                        while true {
                            do {
                                try await self.clock.sleep(until: next, tolerance: nil)
                            } catch {
                                return
                            }
                            continuation.yield(.tick)
                            next = next.advanced(by: interval)
                        }
                    }
                }
                var output = self.output
                var transport = TransportMode.offline
                var rate = OutcomeRate()
                var status = ExitStatus.completed
                let summary = { (rate: OutcomeRate, transport: TransportMode) -> String in
                    let elapsed = start.duration(to: self.clock.now)
                    return FollowOutput.summary(
                        recent: rate.count(at: elapsed), transport: transport, pending: session.pending)
                }
                output.status(summary(rate, transport))
                loop: for await input in inputs {
                    switch input {
                    case .event(.outcome(let delivery)):
                        // After a shutdown request nothing more is taken: what is left is delivered next time.
                        guard !stopping.withLockedValue({ $0 }) else { continue }
                        var outcome = delivery.outcome
                        outcome.line.elapsed = start.duration(to: self.clock.now)
                        outcome.line.transport = transport
                        if let end = await self.handle(outcome, delivery: delivery, output: &output) {
                            status = end
                            break loop
                        }
                        rate.record(at: start.duration(to: self.clock.now))
                    case .event(.transport(let mode)):
                        transport = mode
                    case .event(.deadLetter(let letter)):
                        output.note(FollowOutput.deadLetterNote(letter))
                    case .tick:
                        break
                    case .failed(let error):
                        // The clients end on a graceful shutdown too: that is the requested stop, not a failure.
                        if stopping.withLockedValue({ $0 }) { break loop }
                        output.close()
                        self.output.writer.error(error.message)
                        status = error.code.exitStatus
                        break loop
                    case .stop:
                        break loop
                    }
                    output.status(summary(rate, transport))
                }
                await session.flush()
                output.close()
                self.result.set(status)
                self.onFinish?(status)
                continuation.finish()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            stopping.withLockedValue { $0 = true }
            continuation.yield(.stop)
        }
    }

    /// Writes or executes one outcome and settles it; returns the exit status when the follow must end.
    private func handle(
        _ outcome: FollowedOutcome,
        delivery: FollowDelivery,
        output: inout FollowOutput
    ) async -> ExitStatus? {
        let record = JSONLines.outcomeLine(outcome)
        if let executor = self.executor {
            let termination = await executor.run(record: record + "\n", outcome: outcome)
            if termination.succeeded {
                delivery.acknowledge()
            } else {
                delivery.reject(termination.reason)
                output.rejection(
                    "jobwatch: job \(outcome.line.id.rawValue): --exec failed (\(termination.reason), "
                        + "delivery \(outcome.delivery))")
            }
            return nil
        }
        let text = output.mode.data == .json ? record : output.format.followLine(outcome)
        switch output.data(text) {
        case .written:
            delivery.acknowledge()
            return nil
        case .failed(let code) where code == EPIPE:
            // The reader is gone (`| head -3`): a normal end; the unwritten outcome stays unacknowledged.
            return .completed
        case .failed(let code):
            output.close()
            self.output.writer.error("cannot write to stdout (errno \(code)); stopping")
            return .failed
        }
    }
}

extension FollowRunner: CustomStringConvertible {
    /// Safe to log (ServiceGroup logs its services): no session details, so no keys.
    var description: String { "FollowRunner" }
}

/// Outcomes handled in the last minute, in one-second buckets (constant memory at any rate).
struct OutcomeRate: Sendable {
    private var buckets = [Int](repeating: 0, count: 60)
    private var seconds = [Int64](repeating: -1, count: 60)

    /// Counts one outcome handled `elapsed` after the start.
    mutating func record(at elapsed: Duration) {
        let second = elapsed.components.seconds
        let index = Int(second % 60)
        if self.seconds[index] != second {
            self.seconds[index] = second
            self.buckets[index] = 0
        }
        self.buckets[index] += 1
    }

    /// Outcomes handled in the 60 seconds up to `elapsed`.
    func count(at elapsed: Duration) -> Int {
        let now = elapsed.components.seconds
        var total = 0
        for index in 0..<60 where self.seconds[index] > now - 60 && self.seconds[index] <= now {
            total += self.buckets[index]
        }
        return total
    }
}

/// `follow`'s output: records or human lines on stdout; on a terminal, a one-line summary on stderr that is
/// cleared before anything else is written and drawn again after it.
struct FollowOutput: Sendable {
    /// The ordered writer.
    let writer: OutputWriter
    /// What goes where (`live`: the summary line).
    let mode: OutputMode
    /// Text formatting of human lines on stdout.
    let format: HumanFormat
    /// Terminal width in columns.
    let width: Int
    /// `--quiet`: no notes about rejected outcomes.
    let quiet: Bool
    private var statusShown = false

    /// An output for `mode`; the summary line is cut to `width` columns.
    init(writer: OutputWriter, mode: OutputMode, format: HumanFormat, width: Int, quiet: Bool = false) {
        self.writer = writer
        self.mode = mode
        self.format = format
        self.width = width
        self.quiet = quiet
    }

    /// The summary line's text.
    static func summary(recent: Int, transport: TransportMode, pending: Int) -> String {
        let outcomes = recent == 1 ? "1 outcome" : "\(recent) outcomes"
        return "jobwatch follow: \(outcomes) in the last minute · \(transport.cliName) · pending \(pending)"
    }

    /// The stderr line for a new dead letter.
    static func deadLetterNote(_ letter: DeadLetterView) -> String {
        "jobwatch: dead letter: job \(letter.id.rawValue) (consumer \(letter.consumer)) after \(letter.attempts) "
            + "attempts: \(HumanFormat.sanitized(letter.reason))"
    }

    /// Writes one data line on stdout and reports whether it got out.
    mutating func data(_ line: String) -> OutputWriter.WriteResult {
        self.clearStatus()
        return self.writer.deliver(line + "\n", to: .stdout)
    }

    /// A line on stderr that is always written (dead letters).
    mutating func note(_ line: String) {
        self.clearStatus()
        self.writer.line(line, to: .stderr)
    }

    /// A line on stderr about a rejected outcome, unless `--quiet`.
    mutating func rejection(_ line: String) {
        guard !self.quiet else { return }
        self.note(line)
    }

    /// Draws the summary line in place (live mode only).
    mutating func status(_ text: String) {
        guard self.mode.progress == .live else { return }
        self.writer.write("\r\u{1B}[2K" + HumanFormat.cut(text, to: max(10, self.width - 1)), to: .stderr)
        self.statusShown = true
    }

    /// Removes the summary line (before the process exits).
    mutating func close() {
        self.clearStatus()
    }

    private mutating func clearStatus() {
        guard self.statusShown else { return }
        self.writer.write("\r\u{1B}[2K", to: .stderr)
        self.statusShown = false
    }
}
