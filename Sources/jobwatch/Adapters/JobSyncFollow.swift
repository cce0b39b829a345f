import Foundation
import JobSync
import JobSyncCore
import Logging
import SupabaseREST

extension Adapters {
    /// The session of `jobwatch follow`: a `JobSyncClient` in all-jobs mode and an `OutcomeConsumer` over it.
    static func followSession(
        settings: ConnectionSettings,
        parameters: FollowParameters,
        logger: Logger
    ) throws(JobwatchError) -> any FollowSession {
        try JobSyncFollowSession(settings: settings, parameters: parameters, logger: logger)
    }

    /// The dead letters of a durable consumer (`follow --dead-letters`), oldest first, read from its state file.
    ///
    /// Reads the file only: building an `OutcomeConsumer` would register the name (at `--since`'s default, now), so
    /// listing a misspelt name would create a consumer that a later `--since beginning` could no longer place.
    static func deadLetters(
        settings: ConnectionSettings,
        parameters: FollowParameters,
        logger: Logger
    ) throws(JobwatchError) -> [DeadLetterView] {
        guard let name = parameters.consumer, let file = parameters.stateFile,
            FileManager.default.fileExists(atPath: file.path)
        else { return [] }
        let shown = Redact.shorten(file.path, limit: 200)
        let letters: [DeadLetter]
        do {
            let persistence = try SQLiteJobPersistence(path: file.path, configuration: .init(logger: logger))
            letters = try persistence.deadLetters(consumer: name)
        } catch {
            throw JobwatchError(.invalidInput, "cannot read the dead letters in '\(shown)': \(error.message)")
        }
        return letters.map { JobSyncFollowSession.view(of: $0, consumer: name) }
    }
}

/// ``FollowSession`` over `OutcomeConsumer`: a first REST read (to fail fast and clearly when the service cannot be
/// used), then the consumer's catch-up and live outcomes while the client keeps its store in sync.
///
/// A durable consumer (`--consumer`) keeps its state in the cache file, and the client's store persists there too
/// (the same connection), so a restart resumes both from the file. An ephemeral one uses a private in-memory
/// database and an in-memory store.
final class JobSyncFollowSession: FollowSession, CustomStringConvertible {
    /// The name an ephemeral follow's consumer has (it is never stored).
    static let ephemeralName = "jobwatch-follow"

    let connection: Connection
    /// The durable consumer's name, `nil` when ephemeral.
    let consumerName: String?
    /// Fleet mode: this follow's name in the claims; `nil` without `--fleet`.
    let holder: String?
    let consumer: OutcomeConsumer
    let client: JobSyncClient
    private let runClient: @Sendable () async throws -> Void

    var description: String { "JobSyncFollowSession(\(self.connection))" }

    init(settings: ConnectionSettings, parameters: FollowParameters, logger: Logger) throws(JobwatchError) {
        self.connection = try Connection(settings: settings, cacheFile: parameters.stateFile, logger: logger)
        self.consumerName = parameters.consumer
        let persistence = try Self.persistence(parameters.stateFile, logger: logger)
        let store: JobStore
        do {
            store = try JobStore(
                configuration: .init(persistence: parameters.stateFile == nil ? nil : persistence, logger: logger))
        } catch {
            throw JobwatchError(.invalidInput, "cannot use the consumer state file: \(error.message)")
        }
        (self.client, self.runClient) = try self.connection.makeClient(store: store, mode: .allJobs)
        var configuration = OutcomeConsumer.Configuration(
            name: parameters.consumer ?? Self.ephemeralName,
            scope: parameters.filters.isEmpty ? .allJobs : .matching(parameters.filters),
            start: Self.startPosition(parameters.start))
        configuration.maximumAttempts = parameters.maximumAttempts
        configuration.retryDelay = parameters.retryDelay
        var consumerLogger = logger
        if consumerLogger.logLevel > .debug {
            // `follow` reports dead letters itself (one line each); the consumer's warning would repeat them.
            consumerLogger.logLevel = .error
        }
        configuration.logger = consumerLogger
        if let fleet = parameters.fleet {
            // The claims go through the client's PostgREST client (same URL, key and access token).
            let settings = OutcomeConsumer.Fleet(holder: fleet.holder, lease: fleet.lease)
            configuration.fleet = settings
            self.holder = settings.holder
        } else {
            self.holder = nil
        }
        do {
            self.consumer = try OutcomeConsumer(
                client: self.client, persistence: persistence, configuration: configuration)
        } catch {
            throw JobwatchError(.invalidInput, "cannot start the outcome consumer: \(error.message)")
        }
    }

    /// The consumer's database: the state file (its folder created private), or a private in-memory one.
    private static func persistence(_ file: URL?, logger: Logger) throws(JobwatchError) -> SQLiteJobPersistence {
        guard let file else {
            do {
                return try SQLiteJobPersistence(path: ":memory:")
            } catch {
                throw JobwatchError(.invalidInput, "cannot open an in-memory database: \(error.message)")
            }
        }
        let shown = Redact.shorten(file.path, limit: 200)
        do {
            try FileManager.default.createDirectory(
                at: file.deletingLastPathComponent(),
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
        } catch {
            throw JobwatchError(.invalidInput, "cannot create the folder of the consumer state file '\(shown)'")
        }
        do {
            // A corrupt file is moved aside and rebuilt; the persistence reports it through this logger (warning).
            return try SQLiteJobPersistence(path: file.path, configuration: .init(logger: logger))
        } catch {
            throw JobwatchError(.invalidInput, "cannot open the consumer state file '\(shown)': \(error.message)")
        }
    }

    private static func startPosition(_ start: FollowStart) -> OutcomeConsumer.StartPosition {
        switch start {
        case .now: .now
        case .beginning: .beginning
        case .since(let time): .since(time)
        }
    }

    var pending: Int { self.consumer.statistics.unacknowledged }

    func flush() async {
        await self.consumer.flush()
    }

    /// The consumer's dead letters from its file, as the CLI shows them.
    func deadLetterViews() throws(JobwatchError) -> [DeadLetterView] {
        let letters: [DeadLetter]
        do {
            letters = try self.consumer.deadLetters()
        } catch {
            throw JobwatchError(.invalidInput, "cannot read the dead letters: \(error.message)")
        }
        let name = self.consumerName ?? Self.ephemeralName
        return letters.map { Self.view(of: $0, consumer: name) }
    }

    /// The CLI view of a dead letter.
    static func view(of letter: DeadLetter, consumer: String) -> DeadLetterView {
        DeadLetterView(
            consumer: consumer, id: letter.jobID, outcome: Self.jobOutcome(letter.kind), attempts: letter.attempts,
            reason: letter.reason, at: letter.at.description, snapshot: letter.job.map(JobSnapshot.init))
    }

    func run(report: @escaping @Sendable (FollowEvent) async -> Void) async throws {
        do {
            // Fails fast on a wrong key or an unreachable service; a random id is simply not found.
            _ = try await self.connection.source.fetch(ids: [try JobID(UUID().uuidString)])
        } catch {
            throw self.connection.error(error)
        }
        if self.holder != nil { try await self.checkFleetAccess() }
        let initialMode = self.client.transportMode
        await report(.transport(initialMode))
        let consumer = self.consumer
        let client = self.client
        let runClient = self.runClient
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { try await runClient() }
                group.addTask { try await consumer.run() }
                group.addTask {
                    for await outcome in consumer.outcomes() {
                        await report(.outcome(self.delivery(outcome)))
                    }
                }
                group.addTask {
                    // Every mode change, as it happens (the sequence ends when the client's run() does).
                    var last = initialMode
                    for await mode in client.transportModes() where mode != last {
                        last = mode
                        await report(.transport(last))
                    }
                }
                group.addTask { try await self.reportDeadLetters(report) }
                defer { group.cancelAll() }
                // Every task runs until cancelled: the first one to end ends the session.
                try await group.next()
            }
        } catch is CancellationError {
            return
        } catch let error as JobwatchError {
            throw error
        } catch {
            if Task.isCancelled { return }
            throw self.connection.error(error)
        }
        if !Task.isCancelled {
            throw JobwatchError(.unreachable, "the outcome consumer stopped")
        }
    }

    /// The job id `follow --fleet`'s start-up check sends: not a UUID, so `jobsync_claim` never runs on it.
    static let fleetProbeJobID = "jobwatch-fleet-check"

    /// Fails fast and clearly when fleet mode cannot work: the key's role may not execute `jobsync_claim` (the anon
    /// key: 401, or 403 for a role without the grant), or the migration is not applied (404 `PGRST202`).
    ///
    /// It calls `jobsync_claim` once with a job id that is not a UUID. PostgreSQL checks the EXECUTE privilege when
    /// the call starts, before it converts the arguments, so an allowed role gets `400` (`22P02`, invalid input
    /// syntax for type uuid) and nothing is written: no claim row, unlike a probe on a random UUID that would stay
    /// unacknowledged in the table.
    private func checkFleetAccess() async throws(JobwatchError) {
        guard let rest = (self.connection.source as? SupabaseTableSource)?.client else { return }
        let arguments: JSONObject = [
            "p_consumer": .string(self.consumerName ?? Self.ephemeralName),
            "p_job_id": .string(Self.fleetProbeJobID), "p_holder": .string(self.holder ?? "jobwatch"),
            "p_lease_seconds": .number(JSONNumber(Jobwatch.Follow.defaultLeaseSeconds)),
        ]
        do {
            _ = try await rest.rpc("jobsync_claim", arguments: arguments)
        } catch {
            let url = self.connection.displayURL
            switch error.httpStatus {
            case 401?, 403?:
                throw JobwatchError(
                    .unauthorized,
                    "--fleet: the service at \(url) refused jobsync_claim for this key's role (HTTP "
                        + "\(error.httpStatus ?? 0)): fleet mode needs a user token (SUPABASE_ACCESS_TOKEN) or a "
                        + "service key, not the anon key")
            case 404? where error.serverCode == "PGRST202":
                throw JobwatchError(
                    .badResponse,
                    "--fleet: the service at \(url) has no jobsync_claim function: apply "
                        + "supabase/migrations/20261202000000_jobsync_claims.sql to the project")
            case 400?:
                return  // the UUID was rejected: the role may call the function
            default:
                throw self.connection.error(JobSyncError(error))
            }
        }
    }

    /// Reports each new dead letter once: checks the consumer's count every second and, when it grew, reads them.
    private func reportDeadLetters(_ report: @escaping @Sendable (FollowEvent) async -> Void) async throws {
        let key = { (letter: DeadLetterView) in "\(letter.id.rawValue)|\(letter.at)" }
        var known = Set(((try? self.deadLetterViews()) ?? []).map(key))
        var counted = self.consumer.statistics.deadLettered
        while true {
            try await Task.sleep(for: .seconds(1))
            let count = self.consumer.statistics.deadLettered
            guard count != counted else { continue }
            counted = count
            await self.consumer.flush()
            for letter in (try? self.deadLetterViews()) ?? [] where known.insert(key(letter)).inserted {
                await report(.deadLetter(letter))
            }
        }
    }

    private static func jobOutcome(_ kind: Outcome.Kind) -> JobOutcome {
        switch kind {
        case .completed: .completed
        case .failed: .failed
        case .deleted: .deleted
        }
    }

    private func delivery(_ outcome: Outcome) -> FollowDelivery {
        let line = JobLine(
            id: outcome.jobID, snapshot: outcome.job.map(JobSnapshot.init), outcome: Self.jobOutcome(outcome.kind))
        let consumer = self.consumer
        return FollowDelivery(
            outcome: FollowedOutcome(
                line: line, consumer: self.consumerName, holder: self.holder, delivery: outcome.delivery),
            acknowledge: { consumer.acknowledge(outcome) },
            reject: { reason in consumer.reject(outcome, reason: reason) }
        )
    }
}
