// An event-driven pipeline: route each classified document to a destination chosen by its classification.
//
//   SUPABASE_URL=… SUPABASE_ANON_KEY=… swift run ClassificationPipeline <job-id>…
//
// For every job it waits for the outcome (no polling loop of its own: JobSync notifies it), then prints one
// routing decision per line: `route <job-id> <destination>`, or `reject <job-id> <reason>`. Exit status 0 when
// every job was routed, 1 when one failed or could not be routed.
import Foundation
import JobSync

/// Where a document goes, by its overall classification. Low confidence or failed pages go to manual review.
func destination(for result: ClassificationResult?) -> String {
    guard let view = result?.view, let label = view.classification else { return "manual-review" }
    if (view.confidence ?? 0) < 0.6 || !view.failedPages.isEmpty { return "manual-review" }
    return "archive/" + label.lowercased().replacingOccurrences(of: " ", with: "-")
}

@main
enum ClassificationPipeline {
    static func main() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard let urlText = environment["SUPABASE_URL"], let url = URL(string: urlText),
            let key = environment["SUPABASE_ANON_KEY"] ?? environment["SUPABASE_KEY"]
        else {
            FileHandle.standardError.write(Data("set SUPABASE_URL and SUPABASE_ANON_KEY\n".utf8))
            exit(2)
        }
        let ids: [JobID]
        do {
            ids = try CommandLine.arguments.dropFirst().map { try JobID($0) }
        } catch {
            FileHandle.standardError.write(Data("\(error)\n".utf8))
            exit(2)
        }
        let sync = try JobSyncClient.supabase(url: url, apiKey: key)
        sync.client.watch(ids)
        let allRouted = await withThrowingTaskGroup(of: Bool.self) { group in
            group.addTask {
                try await sync.run()
                return true
            }
            let routed = await withTaskGroup(of: Bool.self) { jobs in
                for id in ids {
                    jobs.addTask {
                        do {
                            let job = try await sync.client.waitForCompletion(of: id, timeout: .seconds(600))
                            print("route \(id) \(destination(for: job.result))")
                            return true
                        } catch let error as JobSyncError {
                            // A failed job carries its own error text; timeouts and deletions have a message.
                            print("reject \(id) \(error.jobError ?? error.message)")
                            return false
                        } catch {
                            print("reject \(id) \(error)")
                            return false
                        }
                    }
                }
                var all = true
                for await routed in jobs { all = all && routed }
                return all
            }
            group.cancelAll()
            return routed
        }
        exit(allRouted ? 0 : 1)
    }
}
