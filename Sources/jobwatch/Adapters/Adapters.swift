import Foundation
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

/// Everything needed to talk to one job source: the REST source, the optional Realtime feed, the cache.
struct Connection: Sendable, CustomStringConvertible, CustomReflectable {
    /// Where rows are read over REST.
    let source: any JobSource
    /// Where the service lives, for messages (no query string, no key).
    let displayURL: String
    /// The Realtime feed and the client behind it, `nil` for polling only.
    let realtime: RealtimeFeed?
    /// The Realtime feed, `nil` for polling only.
    var feed: (any JobChangeFeed)? { self.realtime?.feed }
    /// The SQLite result cache, if any.
    let cacheFile: URL?
    /// The logger handed to the libraries.
    let logger: Logger

    init(settings: ConnectionSettings, cacheFile: URL?, logger: Logger) throws(JobwatchError) {
        self.cacheFile = cacheFile
        self.logger = logger
        switch settings.source {
        case .supabase(let url, let table, let schema):
            let token = settings.accessToken
            var provider: PostgRESTClient.AccessTokenProvider?
            if let token {
                provider = { @Sendable _ in token.value }
            }
            let restURL = url.appendingPathComponent("rest/v1").absoluteString
            do {
                let client = try PostgRESTClient(
                    configuration: .init(
                        baseURL: restURL,
                        apiKey: settings.apiKey.value,
                        accessToken: provider,
                        logger: logger
                    )
                )
                self.source = SupabaseTableSource(client: client, table: table, schema: schema)
            } catch {
                throw JobwatchError(.invalidInput, "the Supabase URL \(Redact.url(url)) cannot be used for REST")
            }
            self.displayURL = Redact.url(url)
            self.realtime = RealtimeFeeds.make(
                url: url, settings: settings, table: table, schema: schema, logger: logger)
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
            self.realtime = nil
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
    init?(_ job: Job) {
        guard let id = JobID(job.id.rawValue) else { return nil }
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
            id: id,
            phase: JobPhase(raw: job.status.description),
            progress: job.progress,
            error: job.error,
            result: summary,
            updatedAt: job.columns["updated_at"]?.stringValue ?? job.updatedAt?.description
        )
    }
}

extension JobID {
    /// The library's id for this job (both are validated lower-case UUIDs).
    var library: JobSync.JobID {
        get throws(JobwatchError) {
            do {
                return try JobSync.JobID(self.rawValue)
            } catch {
                throw JobwatchError(.invalidInput, "'\(self.rawValue)' is not a job id")
            }
        }
    }
}

extension JobSync.TransportMode {
    /// The CLI's name for this mode.
    var cliMode: TransportMode {
        switch self {
        case .live: .realtime
        case .polling: .polling
        case .offline: .offline
        }
    }
}
