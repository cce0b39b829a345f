import ArgumentParser
import Foundation
import JobSync

/// `--feed`: which Realtime feed a Supabase watch or follow uses.
enum FeedKind: String, Sendable, CaseIterable, ExpressibleByArgument {
    /// `postgres_changes` (the table in the `supabase_realtime` publication).
    case postgresChanges = "postgres-changes"
    /// Broadcast from Database on private channels (a trigger calling `realtime.broadcast_changes`).
    case broadcast
}

/// The CLI's reading of `JobSyncClient.Feed`: comparable, so parsing can be tested.
enum FeedChoice: Sendable, Equatable {
    /// `postgres_changes`.
    case postgresChanges
    /// Broadcast from Database: the table-wide topic and, unless only the table-wide topic is used, the per-job
    /// topic pattern (`{id}` stands for the job id).
    case broadcast(tableWide: String, perJob: String?)

    /// The placeholder of a per-job topic pattern.
    static let idPlaceholder = "{id}"

    /// The library's feed.
    var feed: JobSyncClient.Feed {
        switch self {
        case .postgresChanges:
            return .postgresChanges
        case .broadcast(let tableWide, nil):
            return .broadcast(BroadcastTopics(tableWide: tableWide, mode: .tableWide))
        case .broadcast(let tableWide, let perJob?):
            let parts = perJob.components(separatedBy: Self.idPlaceholder)
            return .broadcast(
                BroadcastTopics(tableWide: tableWide, perJob: { parts.joined(separator: $0.rawValue) }, mode: .perJob))
        }
    }
}

/// `--feed` and `--topic`, shared by `watch` and `follow`.
struct FeedOptions: ParsableArguments {
    /// The longest sub-topic: kind-4 frames carry `realtime:<topic>` in at most 255 bytes (§B4).
    static let maximumTopicBytes = 255 - "realtime:".utf8.count
    /// The length of a job id in a topic.
    static let idBytes = 36

    @Option(
        help: ArgumentHelp(
            "Realtime feed for --source supabase: postgres-changes (default; the table in the supabase_realtime "
                + "publication) or broadcast (Broadcast from Database: private channels fed by a trigger calling "
                + "realtime.broadcast_changes, replayed since the last change seen at each join; needs a user JWT "
                + "in $SUPABASE_ACCESS_TOKEN that the realtime.messages policies accept, or a service key). Either "
                + "way the jobs are reconciled over REST.",
            valueName: "postgres-changes|broadcast"
        )
    )
    var feed: FeedKind = .postgresChanges

    @Option(
        name: .customLong("topic"),
        help: ArgumentHelp(
            "With --feed broadcast, the topic the trigger writes to: a name containing {id} is the per-job topic "
                + "(e.g. orders:{id}; one private channel per job, up to 90), a name without it the table-wide "
                + "topic (e.g. orders). Repeat to give both. Default: jobs:{id} and jobs. A table-wide name alone "
                + "uses only that topic; a per-job pattern alone keeps jobs as the table-wide topic (used beyond "
                + "90 jobs, and by follow, which needs a table-wide topic).",
            valueName: "pattern"
        )
    )
    var topics: [String] = []

    /// The feed the options select.
    ///
    /// - Parameter allJobs: whether the command follows every job (`follow`), which needs the table-wide topic.
    /// - Throws: ``JobwatchError`` (`invalidInput`) for `--topic` without `--feed broadcast`, more than one topic of
    ///   a kind, or a topic that is empty, too long, holds spaces or braces other than one `{id}`.
    func resolve(allJobs: Bool = false) throws(JobwatchError) -> FeedChoice {
        guard self.feed == .broadcast else {
            guard self.topics.isEmpty else {
                throw JobwatchError(.invalidInput, "--topic needs --feed broadcast")
            }
            return .postgresChanges
        }
        var tableWide: String?
        var perJob: String?
        for topic in self.topics {
            let isPattern = try Self.check(topic)
            if isPattern {
                guard perJob == nil else {
                    throw JobwatchError(.invalidInput, "--topic: give at most one per-job pattern (with {id})")
                }
                perJob = topic
            } else {
                guard tableWide == nil else {
                    throw JobwatchError(.invalidInput, "--topic: give at most one table-wide topic (without {id})")
                }
                tableWide = topic
            }
        }
        if self.topics.isEmpty {
            return .broadcast(tableWide: "jobs", perJob: "jobs:" + FeedChoice.idPlaceholder)
        }
        if allJobs, tableWide == nil {
            throw JobwatchError(
                .invalidInput,
                "--topic: follow reads every job from the table-wide topic; give it too (a --topic without {id})")
        }
        return .broadcast(tableWide: tableWide ?? "jobs", perJob: perJob)
    }

    /// The checks for a command's `validate()`: ``resolve(allJobs:)``'s, and `--feed broadcast` only with
    /// `--source supabase`.
    func validate(source: JobSourceKind, allJobs: Bool) throws {
        if self.feed == .broadcast, source != .supabase {
            throw ValidationError("--feed broadcast needs --source supabase")
        }
        do {
            _ = try self.resolve(allJobs: allJobs)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// Checks one `--topic` value; returns whether it is a per-job pattern.
    static func check(_ topic: String) throws(JobwatchError) -> Bool {
        let shown = Redact.shorten(topic)
        guard !topic.isEmpty else {
            throw JobwatchError(.invalidInput, "--topic must not be empty")
        }
        guard topic.unicodeScalars.allSatisfy({ $0.value > 0x20 && $0.value != 0x7F }) else {
            throw JobwatchError(.invalidInput, "--topic '\(shown)' must not contain spaces or control characters")
        }
        let placeholders = topic.components(separatedBy: FeedChoice.idPlaceholder).count - 1
        let rest = topic.replacingOccurrences(of: FeedChoice.idPlaceholder, with: "")
        guard placeholders <= 1, !rest.contains("{"), !rest.contains("}") else {
            throw JobwatchError(
                .invalidInput, "--topic '\(shown)': the only placeholder is {id}, at most once (e.g. orders:{id})")
        }
        let bytes = rest.utf8.count + placeholders * Self.idBytes
        guard bytes <= Self.maximumTopicBytes else {
            throw JobwatchError(
                .invalidInput, "--topic '\(shown)' is too long: at most \(Self.maximumTopicBytes) bytes with the id")
        }
        return placeholders == 1
    }
}
