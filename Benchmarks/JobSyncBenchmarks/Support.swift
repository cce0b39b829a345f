// Shared helpers of the benchmark harness: one monotonic clock shared with the Python peers, process CPU and
// resident memory, a counting HTTP transport, job fixtures on SupabaseLocal, and statistics.
import CDispatch  // `timespec`: with MemberImportVisibility, release builds resolve it to CDispatch's copy of <time.h>
import Foundation
import Histogram
import JobSync
import Logging
import RealtimeProtocol
import SupabaseLocal
import SupabaseREST
import SupabaseRealtime
import Synchronization
import WebSocketTransport

#if canImport(Glibc)
    import Glibc
#endif

/// An instant of CLOCK_MONOTONIC in nanoseconds. Python's `time.monotonic()` reads the same clock on Linux, so
/// instants recorded by the Python peers and by this process can be subtracted.
struct MonoInstant: Comparable, Hashable, Sendable {
    var nanoseconds: Int64

    static var now: MonoInstant {
        var spec = timespec()
        clock_gettime(CLOCK_MONOTONIC, &spec)
        return MonoInstant(nanoseconds: Int64(spec.tv_sec) * 1_000_000_000 + Int64(spec.tv_nsec))
    }

    /// An instant from Python's `time.monotonic()` float seconds.
    init(pythonSeconds: Double) {
        self.nanoseconds = Int64((pythonSeconds * 1e9).rounded())
    }

    init(nanoseconds: Int64) {
        self.nanoseconds = nanoseconds
    }

    static func < (lhs: MonoInstant, rhs: MonoInstant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    static func - (lhs: MonoInstant, rhs: MonoInstant) -> Duration { .nanoseconds(lhs.nanoseconds - rhs.nanoseconds) }

    static func + (lhs: MonoInstant, rhs: Duration) -> MonoInstant {
        let (seconds, attoseconds) = rhs.components
        return MonoInstant(nanoseconds: lhs.nanoseconds + seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
    }
}

/// CPU time (user + system) consumed by this process so far (CLOCK_PROCESS_CPUTIME_ID).
func processCPU() -> Duration {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return .seconds(Int64(spec.tv_sec)) + .nanoseconds(Int64(spec.tv_nsec))
}

/// Resident set size of this process in bytes (`/proc/self/statm`).
func residentBytes() -> Int {
    guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(getpagesize())
}

extension Duration {
    /// Milliseconds as a Double, for printing only.
    var millisecondsValue: Double {
        let (seconds, attoseconds) = self.components
        return Double(seconds) * 1000 + Double(attoseconds) / 1e15
    }

    var secondsValue: Double { self.millisecondsValue / 1000 }
}

/// Percentiles of a latency sample through HdrHistogram (microseconds, 3 significant digits). Values that never
/// arrived (`missing`) are recorded as "never", above every real value: percentiles are over all of them.
struct LatencyPercentiles {
    /// "Never", in microseconds: one day, beyond any latency the harness waits for.
    private static let never: UInt64 = 86_400_000_000
    private var histogram = Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: LatencyPercentiles.never, numberOfSignificantValueDigits: .three)

    init(_ values: [Duration], missing: Int = 0) {
        for value in values {
            let micros = UInt64(max(value.millisecondsValue * 1000, 1).rounded())
            _ = self.histogram.record(min(micros, Self.never - 1))
        }
        if missing > 0 { _ = self.histogram.record(Self.never, count: UInt64(missing)) }
    }

    /// The value at `fraction` (0...1): `nil` when the sample is empty, `.never` when it is a missing value.
    func value(_ fraction: Double) -> Duration? {
        guard self.histogram.totalCount > 0 else { return nil }
        return .microseconds(Int64(self.histogram.valueAtPercentile(fraction * 100)))
    }

    /// Whether `duration` (from ``value(_:)``) stands for a value that never arrived.
    func isNever(_ duration: Duration?) -> Bool {
        guard let duration else { return false }
        return UInt64(duration.millisecondsValue * 1000) >= self.histogram.lowestEquivalentForValue(Self.never)
    }

    /// The value at `fraction` for a table cell: "never" for a missing value, "—" for an empty sample.
    func text(_ fraction: Double) -> String {
        let value = self.value(fraction)
        return self.isNever(value) ? "never" : format(value)
    }
}

/// Formats a duration for the tables: ms below 10 s, s above.
func format(_ duration: Duration?) -> String {
    guard let duration else { return "—" }
    let ms = duration.millisecondsValue
    if ms < 10 { return String(format: "%.2f ms", ms) }
    if ms < 10_000 { return String(format: "%.0f ms", ms) }
    return String(format: "%.1f s", ms / 1000)
}

func format(count: Double) -> String {
    if count >= 100 { return String(format: "%.0f", count) }
    if count >= 10 { return String(format: "%.1f", count) }
    return String(format: "%.2f", count)
}

func format(bytes: Double) -> String {
    if bytes >= 1_048_576 { return String(format: "%.1f MiB", bytes / 1_048_576) }
    if bytes >= 1024 { return String(format: "%.1f KiB", bytes / 1024) }
    return String(format: "%.0f B", bytes)
}

/// Counts requests and approximate HTTP bytes (URL + headers + body, both directions; no framing) and records
/// when each request started.
final class CountingTransport: HTTPTransport {
    struct Counts: Sendable {
        var requests = 0
        var bytes = 0
        var starts: [MonoInstant] = []
        /// Requests answered, and the time from send to answer summed over them.
        var answered = 0
        var answerTime: Duration = .zero
        /// Requests that threw (timeout, connection error).
        var failures = 0
    }

    private let base: URLSessionHTTPTransport
    private let counts = Mutex(Counts())

    private static let logRequests = ProcessInfo.processInfo.environment["BENCH_LOG_REQUESTS"] == "1"

    init() {
        self.base = URLSessionHTTPTransport()
    }

    func send(_ request: HTTPRequest) async throws(RESTError) -> HTTPResponse {
        let start = MonoInstant.now
        var sent = request.url.utf8.count
        for (name, value) in request.headers { sent += name.utf8.count + value.utf8.count + 4 }
        self.counts.withLock {
            $0.requests += 1
            $0.bytes += sent
            $0.starts.append(start)
        }
        if Self.logRequests {
            // BENCH_LOG_REQUESTS=1: what each request was (to explain a cost figure); the URL carries no key.
            FileHandle.standardError.write(Data("request \(request.url.prefix(160))\n".utf8))
        }
        let response: HTTPResponse
        do {
            response = try await self.base.send(request)
        } catch {
            self.counts.withLock { $0.failures += 1 }
            throw error
        }
        var received = response.body.count
        for (name, value) in response.headers { received += name.utf8.count + value.utf8.count + 4 }
        let answerTime = MonoInstant.now - start
        self.counts.withLock {
            $0.bytes += received
            $0.answered += 1
            $0.answerTime += answerTime
        }
        return response
    }

    var snapshot: Counts { self.counts.withLock { $0 } }

    /// The first request started at or after `instant`.
    func firstRequest(after instant: MonoInstant) -> MonoInstant? {
        self.counts.withLock { counts in counts.starts.first { $0 >= instant } }
    }
}

/// Jobs on a SupabaseLocal stack.
enum Fixtures {
    /// Inserts `count` unfinished jobs whose `updated_at` is spread over the past hour (as if created over time),
    /// so that a watermark query with the default 5 s skew reads only the newest few rows.
    static func insertJobs(_ count: Int, on stack: SupabaseLocalStack) async throws -> [String] {
        let ids = (0..<count).map { _ in UUID().uuidString.lowercased() }
        try await self.insertJobs(ids: ids, on: stack)
        return ids
    }

    /// Inserts unfinished jobs with the given ids, `updated_at` spread over the past hour as above (so that several
    /// stacks can hold the same jobs).
    static func insertJobs(ids: [String], on stack: SupabaseLocalStack) async throws {
        let now = WallClock.system.now()
        let count = ids.count
        for (index, id) in ids.enumerated() {
            let age = Duration.milliseconds(Int64(3_600_000) * Int64(count - index) / Int64(max(count, 1)) + 10_000)
            let stamp = LocalJSON.string(now.advanced(by: .zero - age).postgresJSONText)
            _ = try await stack.backend.insert([
                "id": .string(id), "status": .string("processing"), "progress": .string("Processing page 1 of 3"),
                "created_at": stamp, "updated_at": stamp,
            ])
        }
    }

    /// Commits the terminal state of a job (9 in 10 complete, 1 in 10 fail) and returns the commit instant.
    @discardableResult
    static func finish(_ id: String, index: Int, on stack: SupabaseLocalStack) async throws -> MonoInstant {
        let values: TableRow
        if index % 10 == 9 {
            values = ["status": .string("failed"), "error": .string("OCR failed on page 2"), "progress": .null]
        } else {
            values = [
                "status": .string("completed"), "progress": .null,
                "result": .object([
                    "classification": .string("invoice"), "confidence": .double(0.93), "page_results": .array([]),
                ]),
            ]
        }
        _ = try await stack.backend.update(primaryKey: .string(id), set: values)
        return MonoInstant.now
    }

    /// A non-terminal change (progress text).
    static func touch(_ id: String, step: Int, on stack: SupabaseLocalStack) async throws {
        _ = try await stack.backend.update(
            primaryKey: .string(id), set: ["progress": .string("Processing page \(step % 3 + 1) of 3")])
    }
}

/// A JobSync client wired to a SupabaseLocal stack with a counting REST transport.
struct JobSyncUnderTest: Sendable {
    let client: JobSyncClient
    let realtime: RealtimeClient?
    let rest: CountingTransport

    /// - Parameters:
    ///   - realtime: use the Realtime feed (false: REST polling only).
    ///   - watermark: whether the source may use `updated_at` watermark queries.
    static func make(
        stack: SupabaseLocalStack,
        mode: JobSyncClient.WatchMode = .jobs,
        realtime useRealtime: Bool = true,
        watermark: Bool = true,
        subscriberCapacity: Int = 10_000
    ) throws -> JobSyncUnderTest {
        try self.make(
            baseURL: stack.baseURL, apiKey: stack.anonKey, mode: mode, realtime: useRealtime, watermark: watermark,
            subscriberCapacity: subscriberCapacity)
    }

    static func make(
        baseURL: URL,
        apiKey: String,
        mode: JobSyncClient.WatchMode = .jobs,
        realtime useRealtime: Bool = true,
        watermark: Bool = true,
        subscriberCapacity: Int = 10_000,
        storeConfiguration: JobStore.Configuration? = nil,
        feed feedChoice: JobSyncClient.Feed = .postgresChanges,
        accessToken: String? = nil,
        protocolVersion: ProtocolVersion = .v2
    ) throws -> JobSyncUnderTest {
        var logger = Logger(label: "bench", factory: { _ in SwiftLogNoOpLogHandler() })
        if ProcessInfo.processInfo.environment["BENCH_CLIENT_DEBUG"] != nil {
            logger = Logger(label: "bench", factory: { StreamLogHandler.standardError(label: $0) })
            logger.logLevel = .debug
        }
        let counting = CountingTransport()
        let rest = try PostgRESTClient(
            configuration: .init(
                baseURL: baseURL.absoluteString + "/rest/v1", apiKey: apiKey, transport: counting,
                logger: logger))
        let source = SupabaseTableSource(client: rest, table: "jobs", hasUpdatedAt: watermark)
        var realtime: RealtimeClient?
        var feed: (any JobChangeFeed)?
        if useRealtime {
            var configuration = try RealtimeClient.Configuration(
                projectURL: baseURL, apiKey: apiKey, transport: LWSWebSocketTransport(logger: logger),
                logger: logger)
            configuration.applyJobSyncTimings()
            configuration.protocolVersion = protocolVersion
            if let accessToken { configuration.accessToken = { accessToken } }
            let client = try RealtimeClient(configuration: configuration)
            realtime = client
            switch feedChoice {
            case .postgresChanges:
                feed = RealtimeJobFeed(client: client, table: "jobs", logger: logger)
            case .broadcast(let topics):
                feed = BroadcastJobFeed(client: client, topics: topics, table: "jobs", logger: logger)
            }
        }
        // `storeConfiguration` (persistence, capacity) replaces the default store settings when given.
        let store = try JobStore(configuration: storeConfiguration ?? .init(subscriberCapacity: subscriberCapacity))
        let client = try JobSyncClient(
            configuration: .init(source: source, feed: feed, mode: mode, logger: logger), store: store)
        return JobSyncUnderTest(client: client, realtime: realtime, rest: counting)
    }

    /// Runs the client(s) until cancelled.
    func run() async throws {
        if let realtime {
            try await SupabaseJobSync(client: self.client, realtime: realtime).run()
        } else {
            try await self.client.run()
        }
    }
}

/// Waits (polling every 10 ms) until `condition` holds or `timeout` passes; returns whether it held.
@discardableResult
func waitUntil(timeout: Duration, _ condition: () async -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try? await Task.sleep(for: .milliseconds(10))
    }
    return await condition()
}

/// Errors of the harness itself.
struct BenchError: Error, CustomStringConvertible {
    var description: String

    init(_ description: String) {
        self.description = description
    }
}

/// The harness's `print`: one unbuffered write per call, so every table row appears as soon as it is measured, also
/// when stdout is a file or a pipe (Swift's `print` is fully buffered then).
func print(_ items: Any..., separator: String = " ", terminator: String = "\n") {
    let text = items.map { "\($0)" }.joined(separator: separator) + terminator
    FileHandle.standardOutput.write(Data(text.utf8))
}
