import ArgumentParser
import Foundation

/// Where job states come from.
enum JobSourceKind: String, Sendable, CaseIterable, ExpressibleByArgument {
    /// The Supabase `jobs` table: Realtime for changes, PostgREST for reconciliation and polling.
    case supabase
    /// The classification service's `GET /classify/{id}` status endpoint (polling only).
    case statusEndpoint = "status-endpoint"
}

/// A secret (API key, access token). Its descriptions never show the value, so it cannot leak through string
/// interpolation, `dump` or an error message.
struct Secret: Sendable, Equatable, CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    /// The secret itself. Pass it only to the client that sends it to the server.
    let value: String

    var description: String { "<redacted>" }
    var debugDescription: String { "<redacted>" }
    var customMirror: Mirror { Mirror(self, children: [], displayStyle: .struct) }
}

/// Connection settings after validation: everything the adapters need to reach the service.
struct ConnectionSettings: Sendable, Equatable {
    /// The job source and its address.
    enum Source: Sendable, Equatable {
        /// A Supabase project: its base URL, the table and the schema holding the jobs.
        case supabase(url: URL, table: String, schema: String)
        /// The classification service's status endpoint under `baseURL`.
        case statusEndpoint(baseURL: URL)
    }

    /// The job source and its address.
    var source: Source
    /// The project API key (Supabase) or the service API key (status endpoint).
    var apiKey: Secret
    /// An optional user access token (JWT) for Row Level Security; Supabase only.
    var accessToken: Secret?
    /// The Realtime feed of a Supabase watch or follow (`--feed`, `--topic`).
    var feed: FeedChoice = .postgresChanges
}

/// Connection options shared by `watch` and `status`.
///
/// Keys are deliberately not accepted as flags (they would show in `ps` and shell history): they come from the
/// environment or from a file.
struct ConnectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Supabase project URL (default: $SUPABASE_URL).", valueName: "url"))
    var url: String?

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp(
            "Read the API key from this file instead of $SUPABASE_ANON_KEY / $SUPABASE_KEY "
                + "(or $JOBSYNC_API_KEY with --source status-endpoint).",
            valueName: "path"
        )
    )
    var keyFile: String?

    @Option(help: ArgumentHelp("Table holding the jobs.", valueName: "name"))
    var table: String = "jobs"

    @Option(help: ArgumentHelp("Schema of the jobs table.", valueName: "name"))
    var schema: String = "public"

    @Option(
        help: ArgumentHelp(
            "Where job states come from: supabase (Realtime + REST) or status-endpoint "
                + "(the service's GET /classify/{id}, polled)."
        )
    )
    var source: JobSourceKind = .supabase

    @Option(
        name: .customLong("base-url"),
        help: ArgumentHelp(
            "Base URL of the classification service for --source status-endpoint (default: $JOBSYNC_BASE_URL).",
            valueName: "url"
        )
    )
    var baseURL: String?

    /// Checks the options against the process environment, for the commands' `validate()` (after their own
    /// argument checks, so a bad job id is reported before a missing key).
    func validateSettings() throws {
        do {
            _ = try self.resolve(environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// Resolves and checks the settings from the options and an environment.
    ///
    /// - Parameters:
    ///   - environment: The process environment (injected for tests).
    ///   - readFile: Reads a key file (injected for tests).
    /// - Throws: ``JobwatchError`` with code `invalidInput`; its message never contains a key.
    func resolve(
        environment: [String: String],
        readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }
    ) throws(JobwatchError) -> ConnectionSettings {
        switch self.source {
        case .supabase:
            guard let urlText = self.url ?? environment.nonEmpty("SUPABASE_URL") else {
                throw JobwatchError(.invalidInput, "no Supabase URL: pass --url or set SUPABASE_URL")
            }
            let url = try Self.checkedURL(urlText, what: "Supabase URL")
            try Self.checkIdentifier(self.table, what: "table")
            try Self.checkIdentifier(self.schema, what: "schema")
            let key = try Self.key(
                file: self.keyFile,
                environment: environment,
                variables: ["SUPABASE_ANON_KEY", "SUPABASE_KEY"],
                readFile: readFile
            )
            let token = environment.nonEmpty("SUPABASE_ACCESS_TOKEN").map(Secret.init(value:))
            return ConnectionSettings(
                source: .supabase(url: url, table: self.table, schema: self.schema),
                apiKey: key,
                accessToken: token
            )
        case .statusEndpoint:
            guard let urlText = self.baseURL ?? environment.nonEmpty("JOBSYNC_BASE_URL") else {
                throw JobwatchError(
                    .invalidInput,
                    "no service URL for --source status-endpoint: pass --base-url or set JOBSYNC_BASE_URL"
                )
            }
            let url = try Self.checkedURL(urlText, what: "service base URL")
            let key = try Self.key(
                file: self.keyFile,
                environment: environment,
                variables: ["JOBSYNC_API_KEY"],
                readFile: readFile
            )
            return ConnectionSettings(source: .statusEndpoint(baseURL: url), apiKey: key, accessToken: nil)
        }
    }

    /// Reads a key from `file` if given, else from the first non-empty variable of `variables`.
    static func key(
        file: String?,
        environment: [String: String],
        variables: [String],
        readFile: (String) throws -> String
    ) throws(JobwatchError) -> Secret {
        if let path = file {
            let contents: String
            do {
                contents = try readFile(path)
            } catch {
                throw JobwatchError(.invalidInput, "cannot read the key file '\(Redact.shorten(path, limit: 200))'")
            }
            let key = contents.trimmingCharacters(in: .whitespacesAndNewlines)
            guard !key.isEmpty, !key.contains(where: \.isNewline) else {
                throw JobwatchError(
                    .invalidInput,
                    "the key file '\(Redact.shorten(path, limit: 200))' must hold exactly one non-empty line"
                )
            }
            return Secret(value: key)
        }
        for variable in variables {
            if let key = environment.nonEmpty(variable) {
                return Secret(value: key.trimmingCharacters(in: .whitespacesAndNewlines))
            }
        }
        let names = variables.map { "$" + $0 }.joined(separator: " or ")
        throw JobwatchError(.invalidInput, "no API key: set \(names), or pass --key-file PATH")
    }

    /// Parses an http(s) URL with a host; the message shows the URL without its query string.
    static func checkedURL(_ text: String, what: String) throws(JobwatchError) -> URL {
        guard let url = URL(string: text.trimmingCharacters(in: .whitespaces)),
            let scheme = url.scheme?.lowercased(), scheme == "http" || scheme == "https",
            let host = url.host, !host.isEmpty
        else {
            throw JobwatchError(
                .invalidInput,
                "\(what) \(Redact.url(text: text)) is not valid: expected http(s)://host[:port][/path]"
            )
        }
        return url
    }

    /// Checks a PostgreSQL identifier used in URLs and filters: letters, digits, `_`, not starting with a digit.
    static func checkIdentifier(_ name: String, what: String) throws(JobwatchError) {
        let valid =
            !name.isEmpty && name.utf8.count <= 63
            && name.unicodeScalars.allSatisfy { $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") }
            && !(name.first?.isNumber ?? true)
        guard valid else {
            throw JobwatchError(
                .invalidInput,
                "\(what) '\(Redact.shorten(name))' is not a plain identifier (letters, digits, _)"
            )
        }
    }
}

extension [String: String] {
    /// The value of `name` unless it is missing or blank.
    func nonEmpty(_ name: String) -> String? {
        guard let value = self[name], !value.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty else {
            return nil
        }
        return value
    }
}
