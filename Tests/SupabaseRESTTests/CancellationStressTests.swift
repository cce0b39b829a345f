import Foundation
import SupabaseLocal
import Testing

@testable import SupabaseREST

/// Cancelling a request at any moment of its life, including while its response completes, never crashes the
/// process: swift-corelibs-foundation stops the process with "Trying to access a behaviour for a task that in not in
/// the registry" when a `URLSessionTask` is cancelled as it finishes (see `URLSessionHTTPTransport.perform`).
@Suite("Request cancellation")
struct CancellationStressTests {
    @Test("5,000 requests cancelled at moments spread over their life: each answers or throws; the process lives")
    func cancelAtEveryMoment() async throws {
        try await SupabaseLocal.withRunning { stack in
            let client = try PostgRESTClient(
                configuration: .init(
                    baseURL: stack.baseURL.absoluteString + "/rest/v1", apiKey: stack.anonKey, timeout: .seconds(30)))
            // How long a request lives here, ten at a time, so that the cancels below land all over that life
            // (before the fix, a run of this test crashed the process about one time in ten).
            let clock = ContinuousClock()
            var lives: [Duration] = []
            for _ in 0..<5 {
                let start = clock.now
                try await withThrowingTaskGroup(of: Void.self) { group in
                    for _ in 0..<10 { group.addTask { _ = try await client.fetch(PostgRESTQuery(table: "jobs")) } }
                    try await group.waitForAll()
                }
                lives.append(clock.now - start)
            }
            let life = lives.sorted()[2]
            var answered = 0
            var cancelled = 0
            for round in 0..<500 {
                try await withThrowingTaskGroup(of: Bool.self) { group in
                    for index in 0..<10 {
                        let request = Task { try await client.fetch(PostgRESTQuery(table: "jobs")) }
                        group.addTask {
                            // Every fourth round spreads the cancels over the whole life; the others finely over
                            // the first 2.2 ms, while the task starts (where the crash was most frequent).
                            let step = round.isMultiple(of: 4) ? life / 16 : .microseconds(100)
                            try await Task.sleep(for: step * ((round * 10 + index) % 23))
                            request.cancel()
                            return (try? await request.value) != nil
                        }
                    }
                    for try await ok in group {
                        if ok { answered += 1 } else { cancelled += 1 }
                    }
                }
            }
            print("cancellation stress: a request lives \(life) ten at a time; \(answered) answered, \(cancelled) cancelled")
            #expect(answered + cancelled == 5000)
            #expect(cancelled > 0)
            // The server is still answering, and the client too.
            #expect(try await client.fetch(PostgRESTQuery(table: "jobs")).isEmpty)
        }
    }
}
