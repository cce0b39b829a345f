import ArgumentParser
import Foundation

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

    func validate() throws {
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
            abstract: "Create jobs on the local stack and print their ids, one per line."
        )

        @OptionGroup var admin: AdminOptions

        @Option(help: ArgumentHelp("How many of the new jobs the simulator makes fail.", valueName: "count"))
        var fail: Int = 0

        @Argument(help: ArgumentHelp("How many jobs to create (1–10000).", valueName: "count"))
        var count: Int

        func validate() throws {
            guard (1...10_000).contains(self.count) else {
                throw ValidationError("the job count must be between 1 and 10000")
            }
            guard (0...self.count).contains(self.fail) else {
                throw ValidationError("--fail must be between 0 and the job count")
            }
        }

        func run() async throws {
            let client = try self.admin.resolve(environment: ProcessInfo.processInfo.environment)
            let ids = try await client.createJobs(count: self.count, failing: self.fail)
            let writer = OutputWriter()
            for id in ids {
                writer.line(id.rawValue, to: .stdout)
            }
        }
    }

    /// `jobwatch admin fault <kind>`
    struct Fault: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Inject a fault into the local stack (for example: drop-realtime, stall-realtime, rest-down).",
            discussion: "The fault kinds are those the local stack's admin endpoint accepts; it rejects others."
        )

        @OptionGroup var admin: AdminOptions

        @Option(
            help: ArgumentHelp("How long the fault lasts, in seconds (default: until cleared).", valueName: "seconds")
        )
        var duration: Double?

        @Argument(help: ArgumentHelp("The fault kind.", valueName: "kind"))
        var kind: String

        func validate() throws {
            let allowed = CharacterSet.alphanumerics.union(CharacterSet(charactersIn: "-_"))
            guard !self.kind.isEmpty, self.kind.unicodeScalars.allSatisfy(allowed.contains) else {
                throw ValidationError("the fault kind may contain only letters, digits, - and _")
            }
            if let duration = self.duration {
                guard duration.isFinite, duration > 0 else {
                    throw ValidationError("--duration must be a number of seconds greater than 0")
                }
            }
        }

        func run() async throws {
            let client = try self.admin.resolve(environment: ProcessInfo.processInfo.environment)
            try await client.injectFault(
                kind: self.kind,
                duration: self.duration.map { Duration.milliseconds(Int64(($0 * 1000).rounded(.up))) }
            )
        }
    }
}

/// A small client for the local stack's admin HTTP endpoint.
struct AdminClient: Sendable {
    /// The local stack's base URL.
    let baseURL: URL
    /// The local stack's service key.
    let serviceKey: Secret

    /// Creates `count` jobs (`failing` of them scripted to fail) and returns their ids.
    func createJobs(count: Int, failing: Int) async throws(JobwatchError) -> [JobID] {
        let body = JSONLines.Value.object([("count", .int(count)), ("fail", .int(failing))])
        let data = try await self.post(AdminRoutes.createJobs, body: body)
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let texts = object["ids"] as? [String]
        else {
            throw JobwatchError(.badResponse, "the local stack answered create-jobs with an unexpected body")
        }
        return try JobID.parseAll(texts)
    }

    /// Injects a fault of `kind`, for `duration` if given.
    func injectFault(kind: String, duration: Duration?) async throws(JobwatchError) {
        var members: [(String, JSONLines.Value)] = [("kind", .string(kind))]
        if let duration {
            members.append(("duration_ms", .int(JSONLines.milliseconds(duration))))
        }
        _ = try await self.post(AdminRoutes.faults, body: .object(members))
    }

    private func post(_ path: String, body: JSONLines.Value) async throws(JobwatchError) -> Data {
        var request = URLRequest(url: self.baseURL.appendingPathComponent(path))
        request.httpMethod = "POST"
        request.timeoutInterval = 10
        request.setValue("application/json", forHTTPHeaderField: "Content-Type")
        request.setValue(self.serviceKey.value, forHTTPHeaderField: "apikey")
        request.setValue("Bearer \(self.serviceKey.value)", forHTTPHeaderField: "Authorization")
        request.httpBody = Data(body.serialized.utf8)
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
    /// Creates jobs: `{"count": N, "fail": K}` → `{"ids": [...]}`.
    static let createJobs = "admin/v1/jobs"
    /// Injects a fault: `{"kind": "...", "duration_ms": N}`.
    static let faults = "admin/v1/faults"
}
