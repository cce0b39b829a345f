public import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import NIOCore
import NIOHTTP1
import NIOConcurrencyHelpers

/// Entry points for running a local Supabase stand-in.
public enum SupabaseLocal {
    /// Starts the stack, runs `body` with it, and shuts everything down when `body` returns or throws.
    ///
    /// ```swift
    /// try await SupabaseLocal.withRunning { stack in
    ///     let job = try await stack.backend.insert(["status": .string("queued")])
    ///     // connect a client to stack.realtimeURL with stack.anonKey …
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - configuration: Settings (bind address, delays, backend, clocks).
    ///   - body: Work to do while the stack runs.
    /// - Throws: ``SupabaseLocalError`` with code `startupFailed` if the server cannot bind, or what `body` throws.
    @discardableResult
    public static func withRunning<T>(
        _ configuration: SupabaseLocalConfiguration = SupabaseLocalConfiguration(),
        _ body: (SupabaseLocalStack) async throws -> T
    ) async throws -> T {
        let stack = SupabaseLocalStack(configuration)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            let (started, startedContinuation) = AsyncStream<Int>.makeStream()
            group.addTask {
                defer { startedContinuation.finish() }
                try await stack.run(onStarted: { startedContinuation.yield($0) })
            }
            var running = false
            for await _ in started {
                running = true
                break
            }
            guard running else {
                try await group.next()
                throw SupabaseLocalError(.startupFailed, "the server stopped before it was listening")
            }
            do {
                let result = try await body(stack)
                group.cancelAll()
                return result
            } catch {
                group.cancelAll()
                throw error
            }
        }
    }
}

/// A running (or ready to run) local Supabase: Realtime, PostgREST subset, status endpoint, admin/fault API.
///
/// Use ``SupabaseLocal/withRunning(_:_:)`` for scoped use, or ``run(onStarted:)`` to own the lifetime (CLI `serve`).
public final class SupabaseLocalStack: Sendable {
    /// The settings in use.
    public let configuration: SupabaseLocalConfiguration
    /// The table store behind REST and Realtime.
    public let backend: any JobsBackend
    /// An HS256 JWT with `role` `anon`.
    public let anonKey: String
    /// An HS256 JWT with `role` `service_role` (required for `/admin/v1`).
    public let serviceKey: String
    let signer: LocalJWTSigner
    let registry = ConnectionRegistry()
    let faultState = NIOLockedValueBox(FaultSettings())
    /// The fleet claims behind `/rest/v1/rpc`: the backend's when it has them (PostgreSQL), else in memory.
    let claims: any ClaimsStore
    let claimCounters = NIOLockedValueBox(ClaimStatistics())
    let wireMeter = WireMeter()
    private let boundPort = NIOLockedValueBox(0)
    let scheduled: AsyncStream<(Duration, @Sendable () async throws -> Void)>
    let scheduler: AsyncStream<(Duration, @Sendable () async throws -> Void)>.Continuation

    /// Creates a stack (nothing runs until ``run(onStarted:)``).
    public init(_ configuration: SupabaseLocalConfiguration = SupabaseLocalConfiguration()) {
        self.configuration = configuration
        self.backend = configuration.backend ?? InMemoryJobsBackend(checked: .jobs, clock: configuration.wallClock)
        self.claims = (self.backend as? any ClaimsStore) ?? InMemoryClaims(clock: configuration.wallClock)
        self.signer = LocalJWTSigner(secret: configuration.jwtSecret)
        let now = configuration.wallClock.now()
        self.anonKey = self.signer.mint(role: "anon", now: now, lifetime: configuration.keyLifetime)
        self.serviceKey = self.signer.mint(role: "service_role", now: now, lifetime: configuration.keyLifetime)
        (self.scheduled, self.scheduler) = AsyncStream.makeStream()
    }

    /// The bound port (0 before the server listens).
    public var port: Int { self.boundPort.withLockedValue { $0 } }

    /// `http://127.0.0.1:PORT` — the project URL (REST at `/rest/v1`, status endpoint at `/classify`).
    public var baseURL: URL { URL(string: "http://\(self.configuration.host):\(self.port)")! }

    /// `ws://127.0.0.1:PORT/realtime/v1/websocket` (add `apikey` and `vsn` query parameters).
    public var realtimeURL: URL { URL(string: "ws://\(self.configuration.host):\(self.port)/realtime/v1/websocket")! }

    /// Number of open Realtime sockets.
    public var openSocketCount: Int { self.registry.count }

    /// Number of Realtime sockets accepted since start.
    public var acceptedSocketCount: Int { self.registry.acceptedTotal }

    /// Mints a user JWT signed with the project secret.
    ///
    /// - Parameters:
    ///   - role: The `role` claim (`authenticated` by default).
    ///   - lifetime: Time until `exp`; negative values give an already expired token.
    ///   - claims: Extra claims (`sub`, …).
    public func mintUserToken(
        role: String = "authenticated",
        lifetime: Duration = .seconds(3600),
        claims: [String: LocalJSON] = [:]
    ) -> String {
        self.signer.mint(role: role, now: self.configuration.wallClock.now(), lifetime: lifetime, extraClaims: claims)
    }

    /// Signs arbitrary claims with the project secret (to build tokens without `role` or `exp`, say).
    public func signToken(claims: [String: LocalJSON]) -> String {
        self.signer.sign(claims: claims)
    }

    /// Starts a job simulation in the background (it stops with the stack). Returns the planned jobs.
    @discardableResult
    public func startSimulation(
        count: Int, configuration: JobSimulator.Configuration = .init()
    ) async throws
        -> [JobSimulator.Plan]
    {
        let simulator = JobSimulator(
            backend: self.backend, configuration: configuration, clock: self.configuration.clock)
        let plans = try await simulator.createJobs(count: count)
        self.schedule(after: .zero) { try await simulator.drive(plans) }
        return plans
    }

    /// Runs the server, the backend and the change pump until cancelled.
    ///
    /// - Parameter onStarted: Called once with the bound port when the server listens.
    public func run(onStarted: @escaping @Sendable (Int) -> Void = { _ in }) async throws {
        let changes = self.backend.changes()
        let broadcasts = self.backend.broadcastBackend?.broadcasts()
        let router = Router(context: BasicRequestContext.self)
        self.addRoutes(to: router)
        // Hummingbird logs routine shutdown noise ("Waiting on child channel: CancellationError") at error level;
        // the stand-in keeps its own logging at trace/debug.
        var serverLogger = self.configuration.logger
        serverLogger.logLevel = .critical
        let app = Application(
            router: router,
            server: HTTPServerBuilder { responder in
                RealtimeUpgradeChannel(responder: responder, stack: self)
            },
            configuration: .init(address: .hostname(self.configuration.host, port: self.configuration.port)),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                self.boundPort.withLockedValue { $0 = port }
                self.configuration.logger.debug("supabase-local listening", metadata: ["port": "\(port)"])
                onStarted(port)
            },
            logger: serverLogger
        )
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await self.backend.run() }
            group.addTask { try await self.pumpChanges(changes) }
            if let broadcasts {
                group.addTask { await self.pumpBroadcasts(broadcasts) }
            }
            group.addTask { try await self.runScheduler() }
            group.addTask { try await app.run() }
            try await group.next()
            group.cancelAll()
        }
    }

    /// Fans committed changes out to sockets, applying the drop/delay faults.
    private func pumpChanges(_ changes: AsyncStream<TableChange>) async throws {
        var generator = SystemRandomNumberGenerator()
        for await change in changes {
            let (fraction, delay) = self.faultState.withLockedValue { ($0.changeDropFraction, $0.changeDelay) }
            if fraction > 0, Double.random(in: 0..<1, using: &generator) < fraction {
                self.faultState.withLockedValue { $0.statistics.changesDropped += 1 }
                continue
            }
            if delay > .zero {
                self.faultState.withLockedValue { $0.statistics.changesDelayed += 1 }
                try await self.sleep(for: delay)
            }
            self.faultState.withLockedValue { $0.statistics.changesDelivered += 1 }
            self.registry.broadcast(.change(change))
        }
    }

    /// Fans committed broadcasts out to sockets, applying the drop and rate-limit faults (shared by both backends).
    private func pumpBroadcasts(_ broadcasts: AsyncStream<BroadcastRow>) async {
        var generator = SystemRandomNumberGenerator()
        for await row in broadcasts {
            let (fraction, limited) = self.faultState.withLockedValue {
                ($0.broadcastDropFraction, $0.broadcastsRateLimited)
            }
            if limited {
                // §B6: dropped at the source, the receiving channels are closed.
                self.faultState.withLockedValue { $0.statistics.broadcastsRateLimited += 1 }
                self.registry.broadcast(.broadcastRateLimited(row))
                continue
            }
            if fraction > 0, Double.random(in: 0..<1, using: &generator) < fraction {
                self.faultState.withLockedValue { $0.statistics.broadcastsDropped += 1 }
                continue
            }
            self.faultState.withLockedValue { $0.statistics.broadcastsDelivered += 1 }
            self.registry.broadcast(.broadcast(row))
        }
    }

    /// Runs a read check (and a join's replay query) for a session (§B2, §B5). A rule set by
    /// ``SupabaseLocalFaults/setBroadcastReadRule(_:)`` replaces the backend's policies.
    func authorize(_ request: AuthorizationRequest) async -> AuthorizationOutcome {
        guard let store = self.backend.broadcastBackend else { return .refused }
        let override = self.faultState.withLockedValue { $0.broadcastReadRule }
        let allowed: Bool
        if let override {
            allowed = override.allows(topic: request.subTopic, reader: request.reader)
            if !allowed { self.faultState.withLockedValue { $0.statistics.broadcastReadsRefusedByRule += 1 } }
        } else {
            // A failing policy query counts as "no read passed" (the probe selects nothing).
            allowed = (try? await store.canRead(topic: request.subTopic, reader: request.reader)) ?? false
        }
        guard allowed else { return .refused }
        guard let replay = request.replay else { return .allowed(replayed: []) }
        do {
            let rows = try await store.replay(
                topic: request.subTopic, isPrivate: true, sinceMilliseconds: replay.sinceMilliseconds,
                limit: replay.limit)
            return .allowed(replayed: rows)
        } catch {
            return .replayFailed
        }
    }

    /// Runs timed fault endings.
    private func runScheduler() async throws {
        try await withThrowingDiscardingTaskGroup { group in
            for await (delay, work) in self.scheduled {
                group.addTask {
                    do {
                        try await self.sleep(for: delay)
                        try await work()
                    } catch {
                        self.configuration.logger.debug(
                            "background work ended", metadata: ["error.type": "\(type(of: error))"])
                    }
                }
            }
        }
    }

    func sleep(for duration: Duration) async throws {
        guard duration > .zero else { return }
        try await self.configuration.clock.sleep(for: duration, tolerance: nil)
    }

    func schedule(after delay: Duration, _ work: @escaping @Sendable () async throws -> Void) {
        self.scheduler.yield((delay, work))
    }

    // MARK: Settings snapshots

    func verifier() -> TokenVerifier {
        TokenVerifier(
            signer: self.signer,
            projectKeys: [self.anonKey, self.serviceKey],
            revokedAtOrBefore: self.faultState.withLockedValue { $0.tokensRevokedAtOrBefore }
        )
    }

    func sessionPolicy() -> SessionPolicy {
        self.faultState.withLockedValue { faults in
            SessionPolicy(
                systemOkDelay: faults.withholdSystemOk
                    ? nil : (faults.systemOkDelay ?? self.configuration.systemOkDelay),
                joinErrorDelay: self.configuration.joinErrorDelay,
                forcedJoinError: faults.forcedJoinError,
                maxChannels: self.configuration.maxChannelsPerSocket,
                heartbeat: faults.heartbeat,
                tokenCheckInterval: self.configuration.tokenCheckInterval,
                replicationReadyDelay: faults.withholdReplicationReady
                    ? nil : (faults.replicationReadyDelay ?? self.configuration.replicationReadyDelay),
                replicationReadyTimeout: self.configuration.replicationReadyTimeout
            )
        }
    }

    func maxRecordBytes() -> Int {
        self.faultState.withLockedValue { $0.maxRecordBytesOverride } ?? self.configuration.maxRecordBytes
    }

    // MARK: Handshake (§1.2, §1.3)

    func decideHandshake(uri: String, headers: HTTPHeaders) -> HandshakeDecision {
        let (path, query) = splitURI(uri)
        guard path == "/realtime/v1/websocket" || path == "/socket/websocket" else { return .notRealtime }
        let refusal = self.faultState.withLockedValue { faults in
            if faults.refusal != nil { faults.statistics.handshakesRefused += 1 }
            return faults.refusal
        }
        if let refusal {
            return .refuse(
                HandshakeRefusal(
                    status: refusal.status,
                    body: LocalJSON.object(["error": .string(refusal.message)]).encoded(),
                    retryAfterSeconds: refusal.retryAfterSeconds
                ))
        }
        let version: RealtimeVersion
        switch query["vsn"] ?? "1.0.0" {
        case "1.0.0": version = .v1
        case "2.0.0": version = .v2
        default:
            return .refuse(HandshakeRefusal(status: 403, body: "", retryAfterSeconds: nil))
        }
        let token = headers.first(name: "x-api-key") ?? query["apikey"]
        switch self.verifier().verify(token, now: self.configuration.wallClock.now()) {
        case .failure(let failure):
            let body = LocalJSON.object(["error": .string(JWTTexts.handshake(failure))]).encoded()
            return .refuse(HandshakeRefusal(status: 401, body: body, retryAfterSeconds: nil))
        case .success:
            return .accept(AcceptedSocket(version: version, token: token ?? ""))
        }
    }
}

/// Splits a request target into its path and decoded query parameters (first value wins).
func splitURI(_ uri: String) -> (String, [String: String]) {
    guard let mark = uri.firstIndex(of: "?") else { return (uri, [:]) }
    let path = String(uri[..<mark])
    var query: [String: String] = [:]
    for pair in uri[uri.index(after: mark)...].split(separator: "&") {
        let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
        let key = percentDecode(String(parts[0]))
        let value = parts.count > 1 ? percentDecode(String(parts[1])) : ""
        if query[key] == nil { query[key] = value }
    }
    return (path, query)
}

/// Decodes `%XX` escapes and `+` as space.
func percentDecode(_ text: String) -> String {
    let replaced = text.replacingOccurrences(of: "+", with: " ")
    return replaced.removingPercentEncoding ?? replaced
}
