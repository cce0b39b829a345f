import ArgumentParser
import Logging
import ServiceLifecycle
import UnixSignals

/// Runs a command's runner as the only service of a `ServiceGroup` that SIGINT and SIGTERM shut down gracefully
/// (`watch` and `follow`): the runner's own end, or its failure, ends the group too. Waits at most `shutdownLimit`
/// for the graceful end; an unexpected failure of the group is reported as "the `command` stopped unexpectedly".
func runUntilSignal(
    _ runner: some Service, command: String, shutdownLimit: Duration, logger: Logger, writer: OutputWriter
) async {
    var configuration = ServiceGroupConfiguration(
        services: [
            .init(
                service: runner,
                successTerminationBehavior: .gracefullyShutdownGroup,
                failureTerminationBehavior: .gracefullyShutdownGroup
            )
        ],
        gracefulShutdownSignals: [.sigint, .sigterm],
        logger: logger
    )
    configuration.maximumGracefulShutdownDuration = shutdownLimit
    do {
        try await ServiceGroup(configuration: configuration).run()
    } catch {
        writer.error("the \(command) stopped unexpectedly")
    }
}

/// Checks a name given to `option` (a consumer or a holder): 1 to 100 ASCII letters, digits, `.`, `_`, `:` or `-`.
func validateName(_ name: String, option: String, kind: String) throws(ValidationError) {
    let maximumLength = 100
    let allowed = name.unicodeScalars.allSatisfy {
        $0.isASCII && (($0.properties.isAlphabetic || ("0"..."9").contains($0)) || "._:-".unicodeScalars.contains($0))
    }
    guard !name.isEmpty, name.count <= maximumLength, allowed else {
        throw ValidationError(
            "\(option) '\(Redact.shorten(name))' is not a \(kind) name: 1 to \(maximumLength) letters, digits, '.', "
                + "'_', ':' or '-'")
    }
}
