import JobSync
import NIOConcurrencyHelpers
import ServiceLifecycle

/// Drives a ``WatchState`` over a ``WatchSession``: runs the session, the timeout and the live-view ticks as
/// child tasks, feeds their inputs to the state machine in order and writes what it asks for. A
/// swift-service-lifecycle `Service`: graceful shutdown (SIGINT/SIGTERM in a `ServiceGroup`) ends the watch
/// cleanly with ``ExitStatus/interrupted``.
struct WatchRunner<C: Clock>: Service where C.Duration == Duration {
    /// The source of events.
    let session: any WatchSession
    /// The jobs to watch (non-empty, distinct).
    let ids: [JobID]
    /// When to give up (`nil`: never).
    let timeout: Duration?
    /// How often to refresh elapsed times in the live view (`nil`: never).
    let tickInterval: Duration?
    /// The clock for elapsed times, the timeout and ticks.
    let clock: C
    /// Where output goes.
    let output: WatchOutput
    /// The exit status once the run has finished.
    let result: WatchResult
    /// Called once with the exit status as soon as the last output is written, before the session is torn down
    /// (the CLI exits here: see ``WatchCommandRunner``).
    var onFinish: (@Sendable (ExitStatus) -> Void)? = nil

    func run() async {
        let (inputs, continuation) = AsyncStream.makeStream(of: WatchState.Input.self)
        let start = self.clock.now
        let session = self.session
        let ids = self.ids
        await withGracefulShutdownHandler {
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    do {
                        try await session.watch(ids) { event in continuation.yield(.event(event)) }
                        if !Task.isCancelled {
                            continuation.yield(.sessionFailed(JobwatchError(.unreachable, "the job session ended")))
                        }
                    } catch let error as JobwatchError {
                        continuation.yield(.sessionFailed(error))
                    } catch {
                        if !Task.isCancelled {
                            // Only our own messages are printed: an unknown error's text could hold anything.
                            continuation.yield(.sessionFailed(JobwatchError(.unreachable, "the job session failed")))
                        }
                    }
                }
                if let timeout = self.timeout {
                    group.addTask {
                        do {
                            try await self.clock.sleep(until: start.advanced(by: timeout), tolerance: nil)
                            continuation.yield(.timeout)
                        } catch {}
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
                var state = WatchState(ids: ids)
                var output = self.output
                output.begin(state: state)
                for await input in inputs {
                    let elapsed = start.duration(to: self.clock.now)
                    for action in state.handle(input, at: elapsed) {
                        output.perform(action, state: state)
                        if case .finish(let status) = action {
                            self.result.set(status)
                            self.onFinish?(status)
                        }
                    }
                    if state.finished != nil { break }
                }
                continuation.finish()
                group.cancelAll()
            }
        } onGracefulShutdown: {
            continuation.yield(.interrupted)
        }
    }
}

extension WatchRunner: CustomStringConvertible {
    /// Safe to log (ServiceGroup logs its services): no session details, so no keys.
    var description: String { "WatchRunner(\(self.ids.count) jobs)" }
}

/// Holds a watch's exit status for the caller once the runner has returned.
final class WatchResult: Sendable {
    private let value = NIOLockedValueBox<ExitStatus?>(nil)

    /// An empty result.
    init() {}

    /// The final status, `nil` before the watch finished.
    var status: ExitStatus? { self.value.withLockedValue { $0 } }

    /// Records the final status.
    func set(_ status: ExitStatus) { self.value.withLockedValue { $0 = status } }
}

/// Executes ``WatchState/Action``s: JSON Lines or a summary on stdout, the live view or plain lines on stderr.
struct WatchOutput: Sendable {
    /// The ordered writer.
    let writer: OutputWriter
    /// What goes where.
    let mode: OutputMode
    /// Text formatting on stderr (live view, plain lines).
    let format: HumanFormat
    /// Text formatting of the human summary on stdout.
    let summaryFormat: HumanFormat
    private var live: LiveView
    private var pendingError: String?

    /// An output for `mode`, with a live view `width` columns wide.
    init(writer: OutputWriter, mode: OutputMode, format: HumanFormat, summaryFormat: HumanFormat, width: Int) {
        self.writer = writer
        self.mode = mode
        self.format = format
        self.summaryFormat = summaryFormat
        self.live = LiveView(format: format, width: width)
    }

    /// Draws the first live frame (every job "waiting").
    mutating func begin(state: WatchState) {
        if self.mode.progress == .live {
            self.writer.write(self.live.frame(lines: state.lines, transport: state.transport), to: .stderr)
        }
    }

    /// Performs one action; `state` is the machine's state after the input that produced it.
    mutating func perform(_ action: WatchState.Action, state: WatchState) {
        switch action {
        case .emit(let record):
            if case .final(let line) = record, case .unavailable(let message)? = line.outcome {
                // Errors always reach stderr, whatever the data format: once, after the live view is closed.
                self.pendingError = self.pendingError ?? message
            }
            if self.mode.data == .json {
                self.writer.line(JSONLines.line(for: record), to: .stdout)
            }
            if self.mode.progress == .plain, let text = self.format.plainLine(record) {
                self.writer.line(text, to: .stderr)
            }
            if case .end(let status, let lines) = record {
                if self.mode.progress == .live {
                    // The last frame (drawn by the preceding redraw) stays on screen; the cursor comes back.
                    self.writer.write(self.live.close(), to: .stderr)
                }
                if let message = self.pendingError {
                    self.writer.error(message)
                }
                if self.mode.data == .human {
                    for line in self.summaryFormat.summary(lines: lines, status: status) {
                        self.writer.line(line, to: .stdout)
                    }
                }
            }
        case .redraw:
            if self.mode.progress == .live {
                self.writer.write(self.live.frame(lines: state.lines, transport: state.transport), to: .stderr)
            }
        case .finish:
            break
        }
    }
}
