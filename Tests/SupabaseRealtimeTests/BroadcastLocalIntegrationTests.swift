import Foundation
import JobSyncCore
import RealtimeProtocol
import SupabaseLocal
import Testing

@testable import SupabaseRealtime

/// Our client against SupabaseLocal's Broadcast from Database over real sockets (broadcast-from-database.md
/// §B1–§B5).
@Suite("Broadcast from Database: RealtimeClient on SupabaseLocal (§B1–§B5)")
struct BroadcastLocalIntegrationTests {

    @Test("§B2 §B3 §B4 §B5 private channel with a user token: live rows from row writes, then replay after a gap")
    func liveThenReplayAfterGap() async throws {
        try await withLocalStack(configure: { stack, configuration in
            let token = stack.mintUserToken()
            configuration.accessToken = { token }
        }) { stack, client in
            let start = Int(stack.configuration.wallClock.now().microsecondsSinceEpoch / 1000) - 1000
            let subscription = client.broadcast(topic: "jobs", replay: BroadcastReplay { start })
            var events = subscription.makeAsyncIterator()
            func nextMessage() async throws -> BroadcastMessage? {
                while let event = try await events.next() {
                    if case .message(let message) = event { return message }
                }
                return nil
            }
            func waitLive() async throws {
                while let event = try await events.next() {
                    if event == .live { return }
                }
            }
            try await waitLive()
            // §B1.4: the trigger writes an INSERT row to the table-wide topic in the same commit.
            let job = try await stack.backend.insert([:])
            let id = try #require(job["id"]?.stringValue)
            let inserted = try #require(try await nextMessage())
            #expect(inserted.event == "INSERT" && !inserted.isReplayed)
            #expect(inserted.payload["record"]?["id"] == .string(id))
            #expect(inserted.payload["operation"] == .string("INSERT"))
            // A gap (§B6): the UPDATE's live delivery is lost, but the row is stored.
            stack.faults.dropBroadcasts(fraction: 1)
            _ = try await stack.backend.update(primaryKey: .string(id), set: ["status": .string("running")])
            while stack.faults.statistics.broadcastsDropped < 1 { try await Task.sleep(for: .milliseconds(5)) }
            stack.faults.dropBroadcasts(fraction: 0)
            // The channel crashes; the rejoin replays from the same watermark (§B5): the INSERT is deduplicated
            // on meta.id by the client, the lost UPDATE arrives replayed.
            stack.faults.crashChannels()
            let replayed = try #require(try await nextMessage())
            #expect(replayed.event == "UPDATE" && replayed.isReplayed)
            #expect(replayed.payload["record"]?["status"] == .string("running"))
            #expect(replayed.payload["old_record"]?["status"] == .string("queued"))
            try await waitLive()
            _ = try await stack.backend.delete(primaryKey: .string(id))
            let deleted = try #require(try await nextMessage())
            #expect(deleted.event == "DELETE" && !deleted.isReplayed)
        }
    }

    @Test("§B2 an anon token is refused: the subscription reports unauthorized")
    func anonRefused() async throws {
        try await withLocalStack { _, client in
            var events = client.broadcast(topic: "jobs:1").makeAsyncIterator()
            while let event = try await events.next() {
                if case .notLive(let reason) = event {
                    #expect(reason.kind == .unauthorized)
                    return
                }
            }
            Issue.record("the subscription ended without a refusal")
        }
    }
}
