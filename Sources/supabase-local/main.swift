// A tiny runner for SupabaseLocal, used by scripts/conformance.sh and for manual experiments.
//
//   supabase-local [--port N] [--system-ok-delay-ms N] [--keys-file PATH] [--simulate N]
//
// Prints `listening <port>` on stdout once the server listens. The keys (anon, service, classify) go to
// `--keys-file` as JSON (with an `authenticated` `user_key`), never to stdout. Stops on SIGINT/SIGTERM.
import Foundation
import SupabaseLocal

var configuration = SupabaseLocalConfiguration()
var keysFile: String?
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--port":
        configuration.port = arguments.next().flatMap { Int($0) } ?? 0
    case "--system-ok-delay-ms":
        configuration.systemOkDelay = .milliseconds(arguments.next().flatMap { Int($0) } ?? 0)
    case "--keys-file":
        keysFile = arguments.next()
    default:
        FileHandle.standardError.write(Data("unknown argument: \(argument)\n".utf8))
        exit(64)
    }
}

try await SupabaseLocal.withRunning(configuration) { stack in
    if let keysFile {
        let keys = LocalJSON.object([
            "anon_key": .string(stack.anonKey),
            "service_key": .string(stack.serviceKey),
            // An `authenticated` user token for private channels (broadcast-from-database.md §B2).
            "user_key": .string(
                stack.mintUserToken(lifetime: .seconds(86_400), claims: ["sub": .string("conformance-user")])),
            "classify_api_key": .string(stack.configuration.classifyAPIKey),
            "port": .int(stack.port),
        ]).encoded()
        try Data(keys.utf8).write(to: URL(fileURLWithPath: keysFile))
    }
    FileHandle.standardOutput.write(Data("listening \(stack.port)\n".utf8))
    let (signals, continuation) = AsyncStream<Int32>.makeStream()
    let sources = [SIGINT, SIGTERM].map { number -> any DispatchSourceSignal in
        signal(number, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: number)
        source.setEventHandler { continuation.yield(number) }
        source.resume()
        return source
    }
    for await _ in signals { break }
    sources.forEach { $0.cancel() }
}
