// Decode benchmark: a realistic ~1 KB vsn 2.0.0 `postgres_changes` frame for the `jobs` table, decoded
// frame → PhoenixMessage → PostgresChangesMessage, N times per run, 5 runs; prints the median.
// Run in release: `swift run -c release DecodeBenchmark [iterations]`.

import JobSyncCore
import RealtimeProtocol

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CPU time consumed by this process, so a figure taken on a busy machine can be read per CPU-second too.
func processCPUTime() -> Duration {
    var spec = timespec()
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &spec)
    return .seconds(spec.tv_sec) + .nanoseconds(spec.tv_nsec)
}

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

let record =
    #"{"id": "5b1f0a52-93c4-4d7e-9a0f-6c2e8b7d1a34", "error": null, "result": {"confidence": 0.93, "#
    + #""page_results": [{"page": 1, "success": true, "confidence": 0.97, "classification": "invoice"}, "#
    + #"{"page": 2, "success": true, "confidence": 0.91, "classification": "invoice"}, "#
    + #"{"page": 3, "success": true, "confidence": 0.88, "classification": "terms_and_conditions"}], "#
    + #""classification": "invoice"}, "status": "completed", "progress": "Processing page 3 of 3", "#
    + #""created_at": "2026-08-21T10:14:58.118402+00:00", "updated_at": "2026-08-21T10:15:03.401882+00:00"}"#

let frame =
    #"[null,null,"realtime:jobs-sync","postgres_changes",{"data":{"columns":[{"name": "id", "type": "uuid"}, "#
    + #"{"name": "status", "type": "text"}, {"name": "progress", "type": "text"}, {"name": "error", "type": "text"}, "#
    + #"{"name": "result", "type": "jsonb"}, {"name": "created_at", "type": "timestamptz"}, "#
    + #"{"name": "updated_at", "type": "timestamptz"}],"commit_timestamp":"2026-08-21T10:15:03.412Z","errors":null,"#
    + #""old_record":{"id": "5b1f0a52-93c4-4d7e-9a0f-6c2e8b7d1a34"},"record":"# + record
    + #","schema":"public","table":"jobs","type":"UPDATE"},"ids":[84421330, 19034411]}]"#

let iterations = CommandLine.arguments.dropFirst().first.flatMap { Int($0) } ?? 50_000
let serializer = PhoenixSerializer(version: .v2)
let bytes = Array(frame.utf8)

// Sanity check once, outside the timed loop.
do {
    let message = try serializer.decode(textBytes: bytes)
    let change = try PostgresChangesMessage(payload: message.payload).change
    precondition(change.type == .update && change.record?["status"] == .string("completed"))
} catch {
    fatalError("benchmark frame does not decode: \(error)")
}

func run() -> (wall: Duration, cpu: Duration) {
    let clock = ContinuousClock()
    var checksum = 0
    let cpuStart = processCPUTime()
    let elapsed = clock.measure {
        for _ in 0..<iterations {
            do {
                let message = try serializer.decode(textBytes: bytes)
                let changes = try PostgresChangesMessage(payload: message.payload)
                checksum &+= changes.ids.count &+ changes.change.columns.count
            } catch {
                checksum &-= 1
            }
        }
    }
    let cpu = processCPUTime() - cpuStart
    precondition(checksum == iterations * 9, "unexpected checksum \(checksum)")
    return (elapsed, cpu)
}

_ = run()  // warm-up
var runs: [(wall: Duration, cpu: Duration)] = []
for _ in 0..<5 {
    runs.append(run())
}
runs.sort { $0.wall < $1.wall }
let median = runs[2]
let framesPerSecond = Double(iterations) / seconds(median.wall)
let megabytesPerSecond = framesPerSecond * Double(bytes.count) / 1_000_000
let framesPerCPUSecond = Double(iterations) / seconds(median.cpu)
func oneDecimal(_ value: Double) -> String {
    let tenths = Int(value * 10)
    return "\(tenths / 10).\(tenths % 10)"
}
print("frame: \(bytes.count) bytes, \(iterations) decodes per run, 5 runs (median by wall time)")
print("median run: \(median.wall) wall, \(median.cpu) CPU")
print("frames/s: \(Int(framesPerSecond))")
print("MB/s: \(oneDecimal(megabytesPerSecond))")
let megabytesPerCPUSecond = framesPerCPUSecond * Double(bytes.count) / 1_000_000
print("per CPU-second: \(Int(framesPerCPUSecond)) frames, \(oneDecimal(megabytesPerCPUSecond)) MB")
