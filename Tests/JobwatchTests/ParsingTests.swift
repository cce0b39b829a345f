import ArgumentParser
import JobSyncCore
import Foundation
import JobSync
import Testing

@testable import jobwatch

@Suite("Parsing, validation and help")
struct ParsingTests {
    static let id = "123e4567-e89b-12d3-a456-426614174000"
    static let secret = "sb_secret_THIS-MUST-NEVER-BE-PRINTED"

    /// A key file holding ``secret``, removed after `body`.
    private func withKeyFile<T>(_ body: (String) throws -> T) throws -> T {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("jobwatch-key-\(UUID())").path
        try (Self.secret + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: path) }
        return try body(path)
    }

    @Test("Job ids must be UUIDs; they are lower-cased and de-duplicated")
    func jobIDs() throws {
        let ids = try JobID.parseAll([Self.id.uppercased(), Self.id, "3F1C2A9B-0000-4000-8000-000000000001"])
        #expect(ids.map(\.rawValue) == [Self.id, "3f1c2a9b-0000-4000-8000-000000000001"])
        #expect((try? JobID("not-a-uuid")) == nil)
        #expect((try? JobID("123e4567e89b12d3a456426614174000")) == nil)
        #expect(throws: JobwatchError.self) { try JobID.parseAll(["42"]) }
    }

    @Test("watch parses ids, --json, --timeout and connection options")
    func watchParses() throws {
        try self.withKeyFile { path in
            let command = try Jobwatch.parseAsRoot([
                "watch", "--url", "http://127.0.0.1:54321", "--key-file", path, "--json", "--timeout", "2.5",
                "--table", "jobs_v2", Self.id,
            ])
            let watch = try #require(command as? Jobwatch.Watch)
            #expect(watch.jobIDs == [Self.id])
            #expect(watch.output.json == true)
            #expect(watch.timeout == 2.5)
            #expect(watch.connection.table == "jobs_v2")
            #expect(watch.connection.source == .supabase)
        }
    }

    @Test("An invalid job id is a usage error: exit 2 with a clear message")
    func invalidID() {
        let capture = CapturedOutput()
        do {
            _ = try Jobwatch.parseAsRoot(["watch", "not-a-job"])
            Issue.record("parsing should fail")
        } catch {
            #expect(Jobwatch.report(error, writer: capture.writer) == 2)
            #expect(capture.text(.stderr).contains("'not-a-job' is not a job id: expected a UUID"))
            #expect(capture.text(.stdout).isEmpty)
        }
    }

    @Test("Unknown options and missing ids exit 2, not argument-parser's 64")
    func usageErrors() {
        for arguments in [["watch"], ["watch", "--bogus", Self.id], ["status"], ["frobnicate"]] {
            do {
                _ = try Jobwatch.parseAsRoot(arguments)
                Issue.record("\(arguments) should not parse")
            } catch {
                #expect(Jobwatch.report(error, writer: CapturedOutput().writer) == 2, "\(arguments)")
            }
        }
    }

    @Test("--timeout must be positive")
    func badTimeout() throws {
        try self.withKeyFile { path in
            for value in ["0", "-1", "nan"] {
                #expect(throws: (any Error).self) {
                    _ = try Jobwatch.parseAsRoot([
                        "watch", "--url", "http://h", "--key-file", path, "--timeout", value, Self.id,
                    ])
                }
            }
        }
    }

    @Test("Settings come from the environment: URL, anon key (or SUPABASE_KEY), access token")
    func settingsFromEnvironment() throws {
        let options = try ConnectionOptions.parse([])
        let settings = try options.resolve(environment: [
            "SUPABASE_URL": "https://project.supabase.co",
            "SUPABASE_KEY": "fallback",
            "SUPABASE_ACCESS_TOKEN": "jwt",
        ])
        #expect(
            settings.source
                == .supabase(url: URL(string: "https://project.supabase.co")!, table: "jobs", schema: "public")
        )
        #expect(settings.apiKey.value == "fallback")
        #expect(settings.accessToken?.value == "jwt")
        let anon = try options.resolve(environment: [
            "SUPABASE_URL": "https://project.supabase.co", "SUPABASE_ANON_KEY": "anon", "SUPABASE_KEY": "other",
        ])
        #expect(anon.apiKey.value == "anon")
    }

    @Test("--key-file wins over the environment and is trimmed")
    func keyFile() throws {
        let options = try ConnectionOptions.parse(["--key-file", "/k"])
        let settings = try options.resolve(
            environment: ["SUPABASE_URL": "http://localhost:1", "SUPABASE_ANON_KEY": "env"],
            readFile: { _ in "  from-file\n" }
        )
        #expect(settings.apiKey.value == "from-file")
        #expect(throws: JobwatchError.self) {
            try options.resolve(environment: ["SUPABASE_URL": "http://h"], readFile: { _ in "\n" })
        }
        #expect(throws: JobwatchError.self) {
            try options.resolve(
                environment: ["SUPABASE_URL": "http://h"],
                readFile: { _ in throw CocoaError(.fileNoSuchFile) }
            )
        }
    }

    @Test("A missing key or URL is a clear error")
    func missingKey() throws {
        let options = try ConnectionOptions.parse([])
        let noKey = #expect(throws: JobwatchError.self) {
            try options.resolve(environment: ["SUPABASE_URL": "http://h"])
        }
        #expect(noKey?.message == "no API key: set $SUPABASE_ANON_KEY or $SUPABASE_KEY, or pass --key-file PATH")
        #expect(noKey?.code.exitStatus == .usage)
        let noURL = #expect(throws: JobwatchError.self) { try options.resolve(environment: ["SUPABASE_KEY": "k"]) }
        #expect(noURL?.message.contains("SUPABASE_URL") == true)
    }

    @Test("A bad URL is rejected without echoing its query string (which may hold apikey=)")
    func badURL() throws {
        let options = try ConnectionOptions.parse(["--url", "ftp://host/path?apikey=\(Self.secret)"])
        let error = #expect(throws: JobwatchError.self) {
            try options.resolve(environment: ["SUPABASE_KEY": "k"])
        }
        #expect(error?.message.contains("ftp://host/path") == true)
        #expect(error?.message.contains(Self.secret) == false)
        #expect(error?.message.contains("apikey") == false)
    }

    @Test("Table and schema must be plain identifiers")
    func identifiers() throws {
        let options = try ConnectionOptions.parse(["--table", "jobs;drop"])
        #expect(throws: JobwatchError.self) {
            try options.resolve(environment: ["SUPABASE_URL": "http://h", "SUPABASE_KEY": "k"])
        }
    }

    @Test("--source status-endpoint needs --base-url (or JOBSYNC_BASE_URL) and JOBSYNC_API_KEY")
    func statusEndpoint() throws {
        let options = try ConnectionOptions.parse([
            "--source", "status-endpoint", "--base-url", "https://api.example.com/v1",
        ])
        let settings = try options.resolve(environment: ["JOBSYNC_API_KEY": "svc", "SUPABASE_KEY": "ignored"])
        #expect(settings.source == .statusEndpoint(baseURL: URL(string: "https://api.example.com/v1")!))
        #expect(settings.apiKey.value == "svc")
        #expect(throws: JobwatchError.self) { try options.resolve(environment: ["SUPABASE_KEY": "k"]) }
    }

    @Test("Secrets never show in descriptions or dumps")
    func secretDescription() {
        let secret = Secret(value: Self.secret)
        let settings = ConnectionSettings(
            source: .supabase(url: URL(string: "http://h")!, table: "jobs", schema: "public"),
            apiKey: secret,
            accessToken: secret
        )
        #expect(!"\(settings)".contains(Self.secret))
        #expect(!String(reflecting: settings).contains(Self.secret))
        var dumped = ""
        dump(settings, to: &dumped)
        #expect(!dumped.contains(Self.secret))
    }

    @Test("Help lists every exit code, for the root and for watch")
    func helpExitCodes() {
        for help in [Jobwatch.helpMessage(columns: 120), Jobwatch.helpMessage(for: Jobwatch.Watch.self, columns: 120)] {
            for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"] {
                #expect(help.contains("\n  \(code)"), "exit code \(code) missing")
            }
            #expect(help.contains("EXIT STATUS"))
        }
    }

    @Test("Help offers --key-file and no flag that would take a key on the command line")
    func helpNoKeyFlag() {
        let help = Jobwatch.helpMessage(for: Jobwatch.Watch.self, columns: 200)
        #expect(help.contains("--key-file <path>"))
        #expect(!help.contains("--key <"))
        #expect(!help.contains("--apikey"))
        #expect(!help.contains("--token"))
    }

    @Test("Every subcommand is reachable")
    func subcommands() throws {
        #expect(try Jobwatch.parseAsRoot(["serve", "--port", "0", "--simulate"]) is Jobwatch.Serve)
        #expect(try Jobwatch.parseAsRoot(["demo", "--jobs", "3"]) is Jobwatch.Demo)
        #expect(throws: (any Error).self) { try Jobwatch.parseAsRoot(["demo", "--jobs", "1"]) }
        #expect(throws: (any Error).self) { try Jobwatch.parseAsRoot(["serve", "--port", "70000"]) }
        #expect(throws: (any Error).self) { try Jobwatch.parseAsRoot(["serve", "--host", "0.0.0.0"]) }
        try self.withKeyFile { path in
            let fault = try Jobwatch.parseAsRoot([
                "admin", "fault", "--url", "http://127.0.0.1:1", "--key-file", path, "--ms", "2000",
                "--param", "abrupt=true", "--param", "reason=maintenance", "--param", "fraction=0.5",
                "drop-connections",
            ])
            let command = try #require(fault as? Jobwatch.Admin.Fault)
            #expect(command.kind == "drop-connections")
            #expect(
                try command.body().serialized()
                    == #"{"ms":2000,"abrupt":true,"reason":"maintenance","fraction":0.5}"#
            )
            let create = try Jobwatch.parseAsRoot([
                "admin", "create-jobs", "--url", "http://h", "--key-file", path, "--failure-rate", "0.5", "5",
            ])
            #expect((create as? Jobwatch.Admin.CreateJobs)?.count == 5)
            for bad in [["fault", "Bad kind!"], ["fault", "--param", "novalue", "reset"], ["create-jobs", "0"]] {
                #expect(throws: (any Error).self) {
                    try Jobwatch.parseAsRoot(["admin"] + bad + ["--url", "http://h", "--key-file", path])
                }
            }
        }
    }

    @Test("admin needs the service key, never the anon key")
    func adminKey() throws {
        let options = try AdminOptions.parse([])
        let client = try options.resolve(environment: [
            "SUPABASE_URL": "http://127.0.0.1:54321", "SUPABASE_SERVICE_KEY": "service", "SUPABASE_ANON_KEY": "anon",
        ])
        #expect(client.serviceKey.value == "service")
        #expect(AdminRoutes.action("stall") == "admin/v1/stall")
        let error = #expect(throws: JobwatchError.self) {
            try options.resolve(environment: ["SUPABASE_URL": "http://h", "SUPABASE_ANON_KEY": "anon"])
        }
        #expect(error?.message.contains("SUPABASE_SERVICE_KEY") == true)
    }

    @Test("Unknown errors print only their type and never exit 1 (which means a job failed)")
    func unknownErrors() {
        struct Leaky: Error, CustomStringConvertible { var description: String { ParsingTests.secret } }
        let capture = CapturedOutput()
        #expect(Jobwatch.report(Leaky(), writer: capture.writer) == ExitStatus.unreachable.rawValue)
        #expect(!capture.text(.stderr).contains(Self.secret))
        #expect(Jobwatch.report(JobwatchError(.notFound, "gone"), writer: capture.writer) == 4)
        #expect(Jobwatch.report(ExitCode(3), writer: capture.writer) == 3)
    }

    @Test("Output mode: JSON when stdout is not a terminal, live view when stderr is one")
    func outputMode() {
        let tty = TerminalInfo(stdoutIsTTY: true, stderrIsTTY: true, columns: 80, colorsAllowed: true)
        let piped = TerminalInfo(stdoutIsTTY: false, stderrIsTTY: false, columns: 80, colorsAllowed: true)
        #expect(OutputMode.choose(json: nil, quiet: false, terminal: tty) == OutputMode(data: .human, progress: .live))
        #expect(OutputMode.choose(json: nil, quiet: false, terminal: piped) == OutputMode(data: .json, progress: .none))
        #expect(
            OutputMode.choose(json: false, quiet: false, terminal: piped) == OutputMode(data: .human, progress: .plain)
        )
        #expect(OutputMode.choose(json: true, quiet: true, terminal: tty) == OutputMode(data: .json, progress: .none))
    }

    @Test("The result cache is one file per project under XDG_CACHE_HOME, else HOME; --no-cache turns it off")
    func cachePath() throws {
        let options = try CacheOptions.parse([])
        let project = ConnectionSettings(
            source: .supabase(url: URL(string: "https://a.supabase.co")!, table: "jobs", schema: "public"),
            apiKey: Secret(value: "k"),
            accessToken: nil
        )
        var other = project
        other.source = .supabase(url: URL(string: "https://b.supabase.co")!, table: "jobs", schema: "public")
        let xdg = try #require(options.cacheFile(environment: ["XDG_CACHE_HOME": "/x"], settings: project))
        #expect(xdg.path.hasPrefix("/x/jobwatch/jobs-") && xdg.path.hasSuffix(".sqlite"))
        let home = try #require(options.cacheFile(environment: ["HOME": "/home/u"], settings: project))
        #expect(home.path.hasPrefix("/home/u/.cache/jobwatch/jobs-"))
        #expect(home.lastPathComponent == xdg.lastPathComponent)
        #expect(
            options.cacheFile(environment: ["HOME": "/h"], settings: other)?.lastPathComponent != xdg.lastPathComponent
        )
        #expect(try CacheOptions.parse(["--no-cache"]).cacheFile(environment: ["HOME": "/h"], settings: project) == nil)
        #expect(
            try CacheOptions.parse(["--cache", "/c.db"]).cacheFile(environment: [:], settings: project)?.path == "/c.db"
        )
    }
}

// MARK: - --feed and --topic

extension ParsingTests {
    /// Parses `watch` (or `follow`) with a key file and `arguments`, and returns its feed options.
    private func feedOptions(_ arguments: [String], command: String = "watch") throws -> FeedOptions {
        try self.withKeyFile { path in
            let ids = command == "watch" ? [Self.id] : []
            let parsed = try Jobwatch.parseAsRoot(
                [command, "--url", "http://127.0.0.1:54321", "--key-file", path] + arguments + ids)
            if let watch = parsed as? Jobwatch.Watch { return watch.feed }
            return try #require(parsed as? Jobwatch.Follow).feed
        }
    }

    @Test("--feed defaults to postgres-changes; broadcast without --topic uses jobs:{id} and jobs")
    func feedDefaults() throws {
        #expect(try self.feedOptions([]).resolve() == .postgresChanges)
        #expect(try self.feedOptions(["--feed", "postgres-changes"]).resolve() == .postgresChanges)
        let broadcast = try self.feedOptions(["--feed", "broadcast"]).resolve()
        #expect(broadcast == .broadcast(tableWide: "jobs", perJob: "jobs:{id}"))
        #expect(try self.feedOptions(["--feed", "broadcast"], command: "follow").resolve(allJobs: true) == broadcast)
    }

    @Test("--topic: a pattern with {id} is per job, a name without it table-wide; both may be given")
    func topics() throws {
        let id = try JobID(Self.id)
        let perJob = try self.feedOptions(["--feed", "broadcast", "--topic", "orders:{id}"]).resolve()
        #expect(perJob == .broadcast(tableWide: "jobs", perJob: "orders:{id}"))
        guard case .broadcast(let topics) = perJob.feed else {
            Issue.record("expected a broadcast feed")
            return
        }
        #expect(topics.mode == .perJob)
        #expect(topics.perJob(id) == "orders:" + Self.id)
        #expect(topics.tableWide == "jobs")
        let tableOnly = try self.feedOptions(["--feed", "broadcast", "--topic", "orders"]).resolve()
        #expect(tableOnly == .broadcast(tableWide: "orders", perJob: nil))
        guard case .broadcast(let tableTopics) = tableOnly.feed else {
            Issue.record("expected a broadcast feed")
            return
        }
        #expect(tableTopics.mode == .tableWide)
        #expect(tableTopics.tableWide == "orders")
        let both = try self.feedOptions(
            ["--feed", "broadcast", "--topic", "{id}@orders", "--topic", "orders"], command: "follow"
        ).resolve(allJobs: true)
        #expect(both == .broadcast(tableWide: "orders", perJob: "{id}@orders"))
        guard case .broadcast(let bothTopics) = both.feed else {
            Issue.record("expected a broadcast feed")
            return
        }
        #expect(bothTopics.perJob(id) == Self.id + "@orders")
    }

    @Test("Bad --feed and --topic values are usage errors with a clear message")
    func badFeedValues() throws {
        try self.withKeyFile { path in
            let base = ["--url", "http://127.0.0.1:54321", "--key-file", path]
            let cases: [([String], String)] = [
                (["watch", "--feed", "websocket", Self.id], "websocket"),
                (["watch", "--topic", "orders:{id}", Self.id], "--topic needs --feed broadcast"),
                (["watch", "--feed", "broadcast", "--topic", "", Self.id], "must not be empty"),
                (["watch", "--feed", "broadcast", "--topic", "orders {id}", Self.id], "spaces"),
                (["watch", "--feed", "broadcast", "--topic", "orders:{job}", Self.id], "only placeholder is {id}"),
                (["watch", "--feed", "broadcast", "--topic", "{id}:{id}", Self.id], "only placeholder is {id}"),
                (["watch", "--feed", "broadcast", "--topic", "a", "--topic", "b", Self.id], "at most one table-wide"),
                (["watch", "--feed", "broadcast", "--topic", "a:{id}", "--topic", "b:{id}", Self.id], "per-job"),
                (["watch", "--feed", "broadcast", "--topic", String(repeating: "x", count: 240) + "{id}", Self.id],
                 "too long"),
                (["follow", "--feed", "broadcast", "--topic", "orders:{id}"], "table-wide topic"),
                (["watch", "--source", "status-endpoint", "--base-url", "http://h", "--feed", "broadcast", Self.id],
                 "--source supabase"),
            ]
            for (arguments, message) in cases {
                let capture = CapturedOutput()
                do {
                    _ = try Jobwatch.parseAsRoot([arguments[0]] + base + arguments.dropFirst())
                    Issue.record("\(arguments) should not parse")
                } catch {
                    #expect(Jobwatch.report(error, writer: capture.writer) == 2, "\(arguments)")
                    #expect(capture.text(.stderr).contains(message), "\(arguments): \(capture.text(.stderr))")
                }
            }
        }
        // The typed error of the options themselves.
        var options = try FeedOptions.parse(["--feed", "broadcast", "--topic", "a{b}"])
        #expect(throws: JobwatchError.self) { _ = try options.resolve() }
        options = try FeedOptions.parse(["--feed", "broadcast", "--topic", "orders:{id}"])
        #expect(throws: JobwatchError.self) { _ = try options.resolve(allJobs: true) }
        #expect(try options.resolve() == .broadcast(tableWide: "jobs", perJob: "orders:{id}"))
        options = try FeedOptions.parse(["--feed", "broadcast", "--topic", "orders"])
        #expect(try options.resolve(allJobs: true) == .broadcast(tableWide: "orders", perJob: nil))
    }

    @Test("watch and follow help document --feed, --topic and the access token broadcast needs")
    func feedHelp() {
        for command in [Jobwatch.Watch.self, Jobwatch.Follow.self] as [any ParsableCommand.Type] {
            let help = Jobwatch.helpMessage(for: command, columns: 200)
            #expect(help.contains("--feed <postgres-changes|broadcast>"))
            #expect(help.contains("--topic <pattern>"))
            #expect(help.contains("orders:{id}"))
            #expect(help.contains("SUPABASE_ACCESS_TOKEN"))
        }
        #expect(!Jobwatch.helpMessage(for: Jobwatch.Status.self, columns: 200).contains("--feed"))
    }
}
