import Foundation
import JobSyncCore
import JobSync
import Logging
import SupabaseREST

/// The thin layer between the CLI and the libraries: builds JobSync sources, stores and clients from
/// ``ConnectionSettings``, translates library types into the CLI's view model and library errors into
/// ``JobwatchError``s with printable messages.
enum Adapters {
    /// A watch session over `JobSyncClient` for `settings`.
    static func watchSession(
        settings: ConnectionSettings,
        cacheFile: URL?,
        logger: Logger
    ) throws(JobwatchError) -> any WatchSession {
        JobSyncWatchSession(connection: try Connection(settings: settings, cacheFile: cacheFile, logger: logger))
    }

    /// A one-shot reader for `status`, answering final jobs from the result cache.
    static func statusReader(
        settings: ConnectionSettings,
        cacheFile: URL?,
        logger: Logger
    ) throws(JobwatchError) -> any StatusReader {
        JobSyncStatusReader(connection: try Connection(settings: settings, cacheFile: cacheFile, logger: logger))
    }
}

/// Everything needed to talk to one job source: the REST source, the job client a watch runs, the cache.
struct Connection: Sendable, CustomStringConvertible, CustomReflectable {
    /// Where rows are read over REST (a watch's first read, `status`).
    let source: any JobSource
    /// Where the service lives, for messages (no query string, no key).
    let displayURL: String
    /// The SQLite result cache, if any.
    let cacheFile: URL?
    /// The logger handed to the libraries.
    let logger: Logger
    /// The settings the job client is built from (their secrets never print).
    private let settings: ConnectionSettings

    init(settings: ConnectionSettings, cacheFile: URL?, logger: Logger) throws(JobwatchError) {
        self.settings = settings
        self.cacheFile = cacheFile
        self.logger = logger
        switch settings.source {
        case .supabase(let url, let table, let schema):
            do {
                self.source = try SupabaseTableSource.supabase(
                    url: url, apiKey: settings.apiKey.value, accessToken: Self.tokenProvider(settings.accessToken),
                    table: table, schema: schema, logger: logger)
            } catch {
                throw JobwatchError(.invalidInput, "the Supabase URL \(Redact.url(url)) cannot be used for REST")
            }
            self.displayURL = Redact.url(url)
        case .statusEndpoint(let baseURL):
            do {
                self.source = try ClassificationStatusSource(
                    baseURL: baseURL.absoluteString,
                    apiKey: settings.apiKey.value
                )
            } catch {
                throw JobwatchError(.invalidInput, "the service URL \(Redact.url(baseURL)) cannot be used")
            }
            self.displayURL = Redact.url(baseURL)
        }
    }

    private static func tokenProvider(_ token: Secret?) -> (@Sendable () async throws -> String?)? {
        guard let token else { return nil }
        return { @Sendable in token.value }
    }

    /// The job client for a watch over `store`, and the work to run for it: for a Supabase project the library's
    /// whole stack (`JobSyncClient.supabase`: Realtime over libwebsockets, PostgREST); for the status endpoint a
    /// polling client that backs off to 5 s at most instead of the library's 30 s (a person is watching).
    func makeClient(
        store: JobStore,
        mode: JobSyncClient.WatchMode = .jobs
    ) throws(JobwatchError) -> (client: JobSyncClient, run: @Sendable () async throws -> Void) {
        do {
            switch self.settings.source {
            case .supabase(let url, let table, let schema):
                let sync = try JobSyncClient.supabase(
                    url: url, apiKey: self.settings.apiKey.value,
                    accessToken: Self.tokenProvider(self.settings.accessToken), table: table, schema: schema,
                    mode: mode, feed: self.settings.feed.feed, store: store, logger: self.logger)
                return (sync.client, { try await sync.run() })
            case .statusEndpoint:
                let client = try JobSyncClient(
                    configuration: .init(
                        source: self.source, feed: nil, mode: mode, maximumPollDelay: .seconds(5),
                        logger: self.logger),
                    store: store)
                return (client, { try await client.run() })
            }
        } catch {
            throw self.error(error)
        }
    }

    /// The service address only: the sources inside hold keys.
    var description: String { "Connection(\(self.displayURL))" }
    var customMirror: Mirror { Mirror(self, children: ["service": self.displayURL], displayStyle: .struct) }

    /// A store persisting to the cache file (or in memory when there is none or it cannot be opened).
    func makeStore() -> JobStore {
        if let cacheFile = self.cacheFile {
            do {
                try FileManager.default.createDirectory(
                    at: cacheFile.deletingLastPathComponent(),
                    withIntermediateDirectories: true,
                    attributes: [.posixPermissions: 0o700]
                )
                // A corrupt file is moved aside and rebuilt; the persistence reports it through this logger (warning).
                let persistence = try SQLiteJobPersistence(
                    path: cacheFile.path, configuration: .init(logger: self.logger))
                return try JobStore(configuration: .init(persistence: persistence, logger: self.logger))
            } catch {
                // A cache that cannot be used must not stop a watch: work without it, and say so.
                self.logger.warning(
                    "result cache unavailable; working without it",
                    metadata: ["jobwatch.cache": "\(cacheFile.path)", "jobwatch.error": "\(error)"])
            }
        }
        // An in-memory store without persistence cannot fail to open.
        guard let store = try? JobStore(configuration: .init(logger: self.logger)) else {
            preconditionFailure("an in-memory JobStore failed to open")
        }
        return store
    }

    /// Maps a library error to a printable ``JobwatchError``.
    func error(_ error: any Error) -> JobwatchError {
        guard let error = error as? JobSyncError else {
            return JobwatchError(.unreachable, "cannot use the service at \(self.displayURL)")
        }
        if let rest = error.restError {
            let status = rest.httpStatus.map { " (HTTP \($0))" } ?? ""
            switch rest.code {
            case .unauthorized, .jwtExpired:
                return JobwatchError(
                    .unauthorized,
                    "the service at \(self.displayURL) rejected the key or token\(status)"
                )
            case .transport, .timeout:
                return JobwatchError(.unreachable, "cannot reach the service at \(self.displayURL)")
            case .notFound:
                return JobwatchError(
                    .badResponse,
                    "the service at \(self.displayURL) has no such table or endpoint\(status)"
                )
            default:
                return JobwatchError(.badResponse, "the service at \(self.displayURL) answered with an error\(status)")
            }
        }
        if error.code == .invalidConfiguration {
            return JobwatchError(.invalidInput, "invalid connection settings")
        }
        return JobwatchError(.unreachable, "cannot use the service at \(self.displayURL)")
    }
}

extension JobSnapshot {
    /// The CLI view of a library job.
    init(_ job: Job) {
        var summary: ClassificationSummary?
        if let view = job.result?.view {
            summary = ClassificationSummary(
                classification: view.classification,
                confidence: view.confidence,
                pageCount: view.totalPages ?? view.pageResults.count,
                failedPages: view.failedPages.sorted()
            )
        } else if job.result != nil {
            summary = ClassificationSummary(classification: nil, confidence: nil, pageCount: 0, failedPages: [])
        }
        self.init(
            id: job.id,
            phase: JobPhase(raw: job.status.description),
            progress: job.progress,
            error: job.error,
            result: summary,
            updatedAt: job.columns["updated_at"]?.stringValue ?? job.updatedAt?.description
        )
    }
}
