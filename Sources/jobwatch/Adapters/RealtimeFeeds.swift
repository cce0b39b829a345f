import Foundation
import JobSync
import Logging

/// Where `jobwatch` gets its Realtime feed for a Supabase source.
///
/// - Important: The adapter from `SupabaseRealtime.RealtimeClient` to `JobChangeFeed` is written at integration
///   (it is not on the branches this CLI builds on yet). Until it is plugged in here, `watch` follows jobs by REST
///   polling only and reports the transport as `polling`; everything else (exit codes, output, cache) is the same.
enum RealtimeFeeds {
    /// Whether a Realtime feed is plugged in (`false`: polling only).
    static let isAvailable = false

    /// The Realtime feed for `table` of the project at `url`, or `nil` (polling only).
    static func make(
        url: URL,
        settings: ConnectionSettings,
        table: String,
        schema: String,
        logger: Logger
    ) -> (any JobChangeFeed)? {
        nil
    }
}
