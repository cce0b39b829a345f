import Foundation
import Testing

/// The built binary's behaviour that needs no server: help, usage errors, secrets kept out of output.
@Suite("jobwatch binary: help and usage errors")
struct BinaryBasicsTests {
    static let id = "123e4567-e89b-12d3-a456-426614174000"
    static let secret = "sb_secret_BINARY-TEST-MUST-NOT-LEAK"

    @Test("--help exits 0 and lists the exit codes")
    func help() async throws {
        let result = try await BinaryRunner.run(["watch", "--help"])
        #expect(result.status == 0)
        for code in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130"] {
            #expect(result.stdout.contains("\n  \(code)"), "exit code \(code)")
        }
    }

    @Test("An invalid job id exits 2 with a clear message on stderr, nothing on stdout")
    func invalidID() async throws {
        let result = try await BinaryRunner.run(
            ["watch", "not-a-uuid"],
            environment: ["SUPABASE_URL": "http://127.0.0.1:9", "SUPABASE_ANON_KEY": Self.secret]
        )
        #expect(result.status == 2)
        #expect(result.stderr.contains("'not-a-uuid' is not a job id"))
        #expect(result.stdout.isEmpty)
        #expect(!result.stderr.contains(Self.secret))
    }

    @Test("A missing key exits 2 and says where keys come from")
    func missingKey() async throws {
        let result = try await BinaryRunner.run(
            ["status", Self.id],
            environment: ["SUPABASE_URL": "http://127.0.0.1:9"]
        )
        #expect(result.status == 2)
        #expect(result.stderr.contains("no API key: set $SUPABASE_ANON_KEY or $SUPABASE_KEY, or pass --key-file PATH"))
    }

    @Test("A URL carrying apikey= in its query is rejected without echoing the key")
    func badURLWithKey() async throws {
        let result = try await BinaryRunner.run(
            ["watch", "--url", "notaurl?apikey=\(Self.secret)", Self.id],
            environment: ["SUPABASE_ANON_KEY": Self.secret]
        )
        #expect(result.status == 2)
        #expect(result.stderr.contains("is not valid"))
        #expect(!result.stderr.contains(Self.secret))
        #expect(!result.stdout.contains(Self.secret))
    }

    @Test("Without a subcommand and with SUPABASE_URL set, prints help and exits 0")
    func rootHelp() async throws {
        let result = try await BinaryRunner.run([], environment: ["SUPABASE_URL": "http://127.0.0.1:9"])
        #expect(result.status == 0)
        #expect(result.stdout.contains("SUBCOMMANDS"))
    }
}
