import Foundation
import JobSync
import Logging
import SupabaseRealtime
import WebSocketTransport

/// The Realtime side of a Supabase source: a `RealtimeClient` (libwebsockets) and the `JobChangeFeed` over it.
///
/// - Important: The client must be run (``RealtimeFeed/client``'s `run()`) alongside the `JobSyncClient` that
///   uses ``RealtimeFeed/feed``; the watch session does both in one task group.
struct RealtimeFeed: Sendable {
    let client: RealtimeClient
    let feed: RealtimeJobFeed
}

enum RealtimeFeeds {
    /// Whether a Realtime feed is plugged in (`false`: polling only).
    static let isAvailable = true

    /// The Realtime feed for `table` of the project at `url`, or `nil` when the URL cannot carry one (the watch
    /// then polls).
    static func make(
        url: URL,
        settings: ConnectionSettings,
        table: String,
        schema: String,
        logger: Logger
    ) -> RealtimeFeed? {
        do {
            var configuration = try RealtimeClient.Configuration(
                projectURL: url,
                apiKey: settings.apiKey.value,
                transport: LWSWebSocketTransport(logger: logger),
                logger: logger
            )
            configuration.applyJobSyncTimings()
            if let token = settings.accessToken {
                configuration.accessToken = { @Sendable in token.value }
            }
            let client = try RealtimeClient(configuration: configuration)
            return RealtimeFeed(
                client: client, feed: RealtimeJobFeed(client: client, schema: schema, table: table, logger: logger))
        } catch {
            logger.debug("no Realtime feed for this URL; polling only", metadata: ["error": "\(error)"])
            return nil
        }
    }
}
