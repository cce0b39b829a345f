import ArgumentParser
import Foundation
import JobSync
import JobSyncCore

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

extension Jobwatch {
    /// `jobwatch admin …`: control a running local stack (`jobwatch serve`).
    struct Admin: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Control a running local stack (jobwatch serve): create jobs, inject faults.",
            discussion: """
                Talks to the local stack's admin endpoint (/admin/v1/…) with its service key, read from \
                $SUPABASE_SERVICE_KEY or --key-file. Only for the local stand-in, never a real project.
                """,
            subcommands: [CreateJobs.self, Fault.self]
        )
    }
}

/// Where the local stack's admin endpoint is and the service key to use.
struct AdminOptions: ParsableArguments {
    @Option(help: ArgumentHelp("URL of the local stack (default: $SUPABASE_URL).", valueName: "url"))
    var url: String?

    @Option(
        name: .customLong("key-file"),
        help: ArgumentHelp("Read the service key from this file instead of $SUPABASE_SERVICE_KEY.", valueName: "path")
    )
    var keyFile: String?

    /// Checks the options against the process environment (called by the subcommands' `validate()`).
    func validateSettings() throws {
        do {
            _ = try self.resolve(environment: ProcessInfo.processInfo.environment)
        } catch {
            throw ValidationError(error.message)
        }
    }

    /// The admin client for these options.
    func resolve(
        environment: [String: String],
        readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }
    ) throws(JobwatchError) -> AdminClient {
        guard let text = self.url ?? environment.nonEmpty("SUPABASE_URL") else {
            throw JobwatchError(.invalidInput, "no local stack URL: pass --url or set SUPABASE_URL")
        }
        let url = try ConnectionOptions.checkedURL(text, what: "local stack URL")
        let key = try ConnectionOptions.key(
            file: self.keyFile,
            environment: environment,
            variables: ["SUPABASE_SERVICE_KEY"],
            readFile: readFile
        )
        return AdminClient(baseURL: url, serviceKey: key)
    }
}

extension Jobwatch.Admin {
    /// `jobwatch admin create-jobs N`
    struct CreateJobs: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "create-jobs",
            abstract: "Create jobs that the local stack's simulator drives to the end; prints their ids."
        )

        @OptionGroup var admin: AdminOptions

        @Option(
            name: .customLong("failure-rate"),
            help: ArgumentHelp("Fraction of the jobs that fail (0–1).", valueName: "fraction")
        )
        var failureRate: Double = 0.2

        @Option(help: ArgumentHelp("Seed of the simulator (same seed, same outcomes).", valueName: "n"))
        var seed: Int?

        @Option(name: .customLong("page-ms"), help: ArgumentHelp("Milliseconds per page.", valueName: "ms"))
        var pageMilliseconds: Int?

        @Option(name: .customLong("queue-ms"), help: ArgumentHelp("Milliseconds spent queued.", valueName: "ms"))
        var queueMilliseconds: Int?

        @Flag(name: .customLong("mixed-case"), help: "Write statuses in mixed case (PROCESSING, Completed).")
        var mixedCase = false

        @Argument(help: ArgumentHelp("How many jobs to create (1–10000).", valueName: "count"))
        var count: Int

        func validate() throws {
            guard (1...10_000).contains(self.count) else {
                throw ValidationError("the job count must be between 1 and 10000")
            }
            guard (0...1).contains(self.failureRate) else {
                throw ValidationError("--failure-rate must be between 0 and 1")
            }
            for value in [self.pageMilliseconds, self.queueMilliseconds].compactMap({ $0 }) where value < 0 {
                throw ValidationError("--page-ms and --queue-ms must not be negative")
            }
            try self.admin.validateSettings()
        }

        func run() async throws {
            let client = try self.admin.resolve(environment: ProcessInfo.processInfo.environment)
            var body: JSONObject = ["jobs": .int(self.count), "failure_rate": .double(self.failureRate)]
            if let seed = self.seed { body["seed"] = .int(seed) }
            if let page = self.pageMilliseconds { body["page_ms"] = .int(page) }
            if let queue = self.queueMilliseconds { body["queue_ms"] = .int(queue) }
            if self.mixedCase { body["mixed_case"] = .bool(true) }
            let ids = try await client.createJobs(.object(body))
            let writer = OutputWriter()
            for id in ids {
                writer.line(id.rawValue, to: .stdout)
            }
        }
    }

    /// `jobwatch admin fault <kind>`
    struct Fault: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inject a fault into the local stack; prints its counters as JSON.",
            discussion: """
                Kinds: drop-connections, stall, refuse-connections, system-ok, join-error, heartbeat, \
                drop-changes, delay-changes, rest-failure, rest-latency, expire-tokens, crash-channels, \
                max-record-bytes, delete-jobs, restart, reset. Parameters go in the request body: --ms N, or \
                --param name=value (numbers and true/false are sent as JSON numbers and booleans).
                Examples: `jobwatch admin fault drop-connections --param abrupt=true`, \
                `jobwatch admin fault refuse-connections --ms 3000`, `jobwatch admin fault reset`.
                """
        )

        @OptionGroup var admin: AdminOptions

        @Option(help: ArgumentHelp("Duration parameter in milliseconds (body field \"ms\").", valueName: "ms"))
        var ms: Int?

        @Option(
            name: .customLong("param"),
            help: ArgumentHelp("Another body field, name=value (repeatable).", valueName: "name=value")
        )
        var parameters: [String] = []

        @Argument(help: ArgumentHelp("The fault kind.", valueName: "kind"))
        var kind: String

        func validate() throws {
            let allowed = CharacterSet(charactersIn: "abcdefghijklmnopqrstuvwxyz0123456789-")
            guard !self.kind.isEmpty, self.kind.unicodeScalars.allSatisfy(allowed.contains) else {
                throw ValidationError("the fault kind may contain only lower-case letters, digits and -")
            }
            if let ms = self.ms, ms < 0 {
                throw ValidationError("--ms must not be negative")
            }
            _ = try self.body()
            try self.admin.validateSettings()
        }

        /// The request body: `ms` and every `--param`.
        func body() throws -> JSONValue {
            var members: [JSONObject.Member] = []
            if let ms = self.ms { members.append(.init(key: "ms", value: .int(ms))) }
            for parameter in self.parameters {
                let parts = parameter.split(separator: "=", maxSplits: 1).map(String.init)
                guard parts.count == 2, !parts[0].isEmpty else {
                    throw ValidationError("--param takes name=value, got '\(Redact.shorten(parameter))'")
                }
                members.append(.init(key: parts[0], value: Self.value(parts[1])))
            }
            return .object(JSONObject(members))
        }

        /// `true`/`false` and numbers as JSON, anything else as a string.
        static func value(_ text: String) -> JSONValue {
            switch text {
            case "true": return .bool(true)
            case "false": return .bool(false)
            default:
                if let int = Int(text) { return .int(int) }
                if let double = Double(text), double.isFinite { return .double(double) }
                return .string(text)
            }
        }

        func run() async throws {
            let client = try self.admin.resolve(environment: ProcessInfo.processInfo.environment)
            let answer = try await client.post(AdminRoutes.action(self.kind), body: try self.body())
            OutputWriter().line(HumanFormat.sanitized(String(decoding: answer, as: UTF8.self)), to: .stdout)
        }
    }
}

/// A small client for the local stack's admin HTTP endpoint.
struct AdminClient: Sendable {
    /// The local stack's base URL.
    let baseURL: URL
    /// The local stack's service key.
    let serviceKey: Secret

    /// Starts the simulator on new jobs (`POST admin/v1/simulate`) and returns their ids.
    func createJobs(_ body: JSONValue) async throws(JobwatchError) -> [JobID] {
        let data = try await self.post(AdminRoutes.action("simulate"), body: body)
        guard let values = (try? JSONValue.parse(data))?["ids"]?.arrayValue,
            case let texts = values.compactMap(\.stringValue), texts.count == values.count
        else {
            throw JobwatchError(.badResponse, "the local stack answered simulate with an unexpected body")
        }
        return try JobID.parseAll(texts)
    }

    /// Posts `body` to `path` with the service key and returns the response body (2xx only).
    func post(_ path: String, body: JSONValue) async throws(JobwatchError) -> Data {
        var request = URLRequest(url: self.baseURL.appendingPathComponent(path))
        request.httpMethod = "POST"
        request.timeoutInterval = 10
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(self.serviceKey.value, forHTTPHeaderField: "apikey")
        request.setValue("Bearer \(self.serviceKey.value)", forHTTPHeaderField: "Authorization")
        request.httpBody = Data(body.serialized().utf8)
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await URLSession.shared.data(for: request)
        } catch {
            throw JobwatchError(.unreachable, "cannot reach the local stack at \(Redact.url(self.baseURL))")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 0
        switch status {
        case 200..<300:
            return data
        case 401, 403:
            throw JobwatchError(.unauthorized, "the local stack rejected the service key (HTTP \(status))")
        default:
            let detail = String(decoding: data.prefix(200), as: UTF8.self)
            throw JobwatchError(
                .badResponse,
                "the local stack answered HTTP \(status): \(HumanFormat.sanitized(detail))"
            )
        }
    }
}

/// The admin endpoint's routes (relative to the stack's base URL).
enum AdminRoutes {
    /// `POST /admin/v1/<action>`: faults (`drop-connections`, `stall`, …), `simulate`, `reset`.
    static func action(_ name: String) -> String { "admin/v1/\(name)" }
}
