// Micro-benchmarks of the client pipeline's stages, per event, with allocation counts (ordo-one/benchmark, its
// malloc interposer on): decode a `postgres_changes` text frame, turn it into a row observation and merge it into
// the store, and fan a merge out to store subscribers. Run: `swift package benchmark --target PipelineBenchmarks`
// (release build; scripts/bench.sh runs it too). The end-to-end figure over a real socket is the harness's
// client-limited throughput section (Benchmarks/JobSyncBenchmarks).
import Benchmark
import Foundation
import JobSync
import JobSyncCore
import RealtimeProtocol

/// One UPDATE of a finished job as SupabaseLocal renders it (realtime-protocol.md §5.1–§5.2), in vsn 2.0.0.
private func frame(id: String, version: Int) -> String {
    let stamp = "2026-12-03T09:00:\(String(format: "%02d", version % 60)).\(String(format: "%06d", version))+00:00"
    return #"[null,null,"realtime:bench","postgres_changes",{"data":{"columns":[{"name":"id","type":"uuid"},"#
        + #"{"name":"status","type":"text"},{"name":"progress","type":"text"},{"name":"error","type":"text"},"#
        + #"{"name":"result","type":"jsonb"},{"name":"created_at","type":"timestamptz"},"#
        + #"{"name":"updated_at","type":"timestamptz"}],"commit_timestamp":"2026-12-03T09:00:00.000Z","#
        + #""errors":null,"old_record":{"id":"\#(id)"},"record":{"created_at":"2026-12-03T08:00:00.000000+00:00","#
        + #""error":null,"id":"\#(id)","progress":null,"result":{"classification":"invoice","confidence":0.93,"#
        + #""page_results":[]},"status":"completed","updated_at":"\#(stamp)"},"schema":"public","table":"jobs","#
        + #""type":"UPDATE"},"ids":[1]}]"#
}

/// 100 jobs × 10 versions, in commit order: a fresh store sees each job inserted once, then updated nine times.
private let ids = (0..<100).map { index in "00000000-0000-4000-8000-" + String(format: "%012d", index) }
private let distinctIDs = (0..<1_000).map { index in "00000000-0000-4000-9000-" + String(format: "%012d", index) }

private func decode(_ text: String, serializer: PhoenixSerializer) throws -> PostgresChange {
    try PostgresChangesMessage(payload: serializer.decode(text: text).payload).change
}

private func observation(_ change: PostgresChange) throws -> JobObservation {
    guard let record = change.record else { throw JobSyncError(code: .invalidRow, message: "no record") }
    return try JobObservation.row(
        record, commitTimestamp: change.commitTimestamp.flatMap { JobTimestamp($0) }, source: .realtime)
}

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.cpuTotal, .wallClock, .mallocCountTotal, .throughput], scalingFactor: .kilo,
        maxDuration: .seconds(3), maxIterations: 1_000)

    let serializer = PhoenixSerializer(version: .v2)
    // With `.kilo`, one run is 1,000 events: exactly these frames, each once.
    let frames = (0..<1_000).map { frame(id: ids[$0 % ids.count], version: $0 + 1) }

    Benchmark("decode: text frame → PostgresChange (vsn 2)") { benchmark in
        for iteration in benchmark.scaledIterations {
            blackHole(try decode(frames[iteration % frames.count], serializer: serializer))
        }
    }

    let changes = try! frames.map { try decode($0, serializer: serializer) }
    Benchmark("merge: PostgresChange → observation → store, no subscriber") { benchmark in
        let store = try JobStore()
        benchmark.startMeasurement()
        for iteration in benchmark.scaledIterations {
            blackHole(store.merge(try observation(changes[iteration % changes.count])))
        }
        benchmark.stopMeasurement()
    }

    // 1,000 different jobs, each merged once: a subscriber's buffer holds one unread event per job, so every
    // merge is queued for every subscriber. Synchronous on purpose (ordo-one/benchmark runs an async closure on a
    // blocked pool thread, which deadlocks a 2-core machine's cooperative pool): the subscribers' iterators exist
    // and read nothing, so this is the enqueue side of the fan-out; the end-to-end run measures the rest.
    let distinct = try! (0..<1_000).map { index in
        try observation(try decode(frame(id: distinctIDs[index], version: 1), serializer: serializer))
    }
    for subscribers in [1, 10] {
        Benchmark("fan-out: merge queued for \(subscribers) store subscriber(s)") { benchmark in
            let store = try JobStore(configuration: .init(subscriberCapacity: distinct.count + 1))
            let iterators = (0..<subscribers).map { _ in store.allUpdates().makeAsyncIterator() }
            benchmark.startMeasurement()
            for iteration in benchmark.scaledIterations {
                blackHole(store.merge(distinct[iteration % distinct.count]))
            }
            benchmark.stopMeasurement()
            withExtendedLifetime(iterators) {}
        }
    }
}
