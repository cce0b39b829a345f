import Foundation
import Testing

@testable import jobwatch

/// `jobwatch demo` in a pseudo-terminal (util-linux `script`): the live view as a user sees it.
@Suite("jobwatch demo in a pseudo-terminal")
struct PseudoTerminalTests {
    /// Runs `jobwatch demo` under `script -q -e -c … /dev/null`; stdout is everything the terminal showed.
    private func runDemo() async throws -> BinaryRunner.Result {
        let binary = try #require(BinaryRunner.executable, "jobwatch binary not found")
        let script = URL(fileURLWithPath: "/usr/bin/script")
        try #require(FileManager.default.isExecutableFile(atPath: script.path), "util-linux script is not installed")
        return try await BinaryRunner.run(
            ["-q", "-e", "-c", "\(binary.path) demo", "/dev/null"],
            environment: ["COLUMNS": "120", "TERM": "xterm"],
            executable: script,
            limit: .seconds(90)
        )
    }

    @Test("The demo draws the live view in place, ends with the summary and exits 0")
    func demo() async throws {
        let result = try await self.runDemo()
        #expect(result.status == 0, "terminal output: \(result.stdout.suffix(2000))")
        let screen = result.stdout
        #expect(screen.contains("\u{1B}[?25l"))  // cursor hidden while drawing
        #expect(screen.contains("F\u{1B}[2K"))  // frames redrawn in place
        #expect(screen.contains("\u{1B}[?25h"))  // cursor restored
        #expect(screen.contains("polling"))
        #expect(screen.contains("Failed to process PDF: File appears to be corrupted"))
        #expect(screen.contains("4 completed, 1 failed"))
        #expect(screen.contains("the demo exits 0"))
    }

    @Test("The live view switches from realtime to polling during the outage and back to realtime")
    func switchesTransport() async throws {
        let result = try await self.runDemo()
        let screen = result.stdout
        let live = try #require(screen.range(of: "realtime (live)"))
        let polling = try #require(screen.range(of: "polling (REST)", range: live.upperBound..<screen.endIndex))
        #expect(screen.range(of: "realtime (live)", range: polling.upperBound..<screen.endIndex) != nil)
    }
}
