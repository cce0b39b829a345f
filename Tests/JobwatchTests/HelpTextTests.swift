import ArgumentParser
import Testing

@testable import jobwatch

/// Help text is user-facing documentation: it must not promise less (or more) than the build does.
@Suite("Help text")
struct HelpTextTests {
    /// Every command and subcommand, depth first.
    private static func commands(_ root: any ParsableCommand.Type = Jobwatch.self) -> [any ParsableCommand.Type] {
        [root] + root.configuration.subcommands.flatMap { Self.commands($0) }
    }

    /// Phrases that mark a claim about the build rather than about the command; each was once stale in this CLI.
    private static let staleClaims = ["not available", "not supported", "not implemented", "yet", "todo", "coming soon"]

    @Test("no command's help claims a feature is missing from this build (serve --postgres once said so, and worked)")
    func noStaleClaims() {
        let commands = Self.commands()
        #expect(commands.count >= 7)  // jobwatch, watch, status, serve, demo, admin and its subcommands
        for command in commands {
            let help = Jobwatch.helpMessage(for: command, columns: 400).lowercased()
            #expect(!help.isEmpty)
            for claim in Self.staleClaims {
                let words = help.split(whereSeparator: { !$0.isLetter && $0 != " " }).map(String.init)
                let found = words.contains { " \($0) ".contains(" \(claim) ") }
                #expect(!found, "\(command._commandName) help says \"\(claim)\"")
            }
        }
    }
}
