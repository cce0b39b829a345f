import Foundation
import Logging
import Metrics
import NIOConcurrencyHelpers
public import RealtimeProtocol
public import ServiceLifecycle
import WebSocketTransport

/// A Supabase Realtime client for `postgres_changes`: one WebSocket, any number of channels.
///
/// Create it, call ``run()`` in a task (or add it to a `ServiceGroup`), and subscribe with
/// ``postgresChanges(schema:table:event:filter:channel:)``. Subscriptions made before `run()` starts are joined once
/// the socket opens. The client reconnects with backoff, rejoins channels, refreshes the access token and reports
/// when each subscription is live (§4.5) so callers know when to catch up over REST.
///
/// ```swift
/// let client = try RealtimeClient(configuration: .init(
///     projectURL: URL(string: "https://abcd.supabase.co")!, apiKey: key,
///     transport: LWSWebSocketTransport(), logger: logger))
/// let jobs = client.postgresChanges(schema: "public", table: "jobs", event: .all, filter: "id=in.(1,2)")
/// try await withThrowingDiscardingTaskGroup { group in
///     group.addTask { try await client.run() }
///     for try await event in jobs { … }
/// }
/// ```
///
/// - Important: ``run()`` may be called once. Cancelling it (or a graceful shutdown of its `ServiceGroup`) sends
///   `phx_leave` for joined channels, closes the socket with 1000 and ends every subscription normally.
public final class RealtimeClient: Service, Sendable {
    /// The socket status reported by ``statusUpdates``.
    public typealias Status = SocketStatus

    let configuration: Configuration
    let connectURL: URL
    let events: Mailbox<DriverEvent>
    /// Unread events per subscription: the connection reader waits while a consumer is far behind.
    let backlog: SubscriptionBacklog
    let statusBroadcaster: Broadcaster<Status>
    let roundTripBroadcaster: Broadcaster<Duration>
    let metrics: ClientMetrics
    private let lifecycle: NIOLockedValueBox<Lifecycle>
    private let subscriptionCounter: NIOLockedValueBox<UInt64>

    private enum Lifecycle {
        case idle
        case running
        case finished
    }

    /// Creates a client. Does no I/O; ``run()`` does.
    /// - Throws: ``RealtimeClientError/Code/invalidConfiguration`` for an unusable URL, an empty API key or
    ///   non-positive sizes and timeouts.
    public init(configuration: Configuration) throws(RealtimeClientError) {
        try configuration.validate()
        self.configuration = configuration
        self.connectURL = try configuration.connectURL()
        self.events = Mailbox()
        self.backlog = SubscriptionBacklog(highWater: configuration.subscriptionBufferSize / 2)
        self.statusBroadcaster = Broadcaster(initial: .idle, replaysLatest: true)
        self.roundTripBroadcaster = Broadcaster(initial: nil, replaysLatest: false)
        self.metrics = ClientMetrics()
        self.lifecycle = NIOLockedValueBox(.idle)
        self.subscriptionCounter = NIOLockedValueBox(0)
    }

    /// The socket status: the current value first, then every change. Ends when the client shuts down.
    public var statusUpdates: RealtimeObservation<Status> { self.statusBroadcaster.subscribe() }

    /// The latest socket status.
    public var status: Status { self.statusBroadcaster.latest ?? .idle }

    /// Heartbeat round-trip times (§3), one per answered heartbeat. Ends when the client shuts down.
    public var heartbeatRoundTrips: RealtimeObservation<Duration> { self.roundTripBroadcaster.subscribe() }

    /// The most recent heartbeat round-trip time, if any heartbeat was answered yet.
    public var latestHeartbeatRoundTrip: Duration? { self.roundTripBroadcaster.latest }

    /// Subscribes to row changes of a table (§4.2).
    ///
    /// Each call adds one binding. Without `channel`, the binding gets a channel of its own (`realtime:<prefix>-<n>`),
    /// so adding or removing it never disturbs other subscriptions. Calls with the same `channel` share one channel
    /// (at most 100 channels per socket, §7.1); adding or removing a binding on a shared channel rejoins it, and its
    /// other subscriptions see ``RealtimeSubscriptionEvent/notLive(_:)`` then ``RealtimeSubscriptionEvent/live``.
    /// Identical bindings on one channel share the server binding and both receive its changes.
    ///
    /// - Parameters:
    ///   - schema: the schema, e.g. `public`.
    ///   - table: the table, e.g. `jobs`.
    ///   - event: the row events wanted. Default all.
    ///   - filter: a filter such as `id=in.(…)` (≤ 100 values, §6), or `nil`.
    ///   - channel: the channel name to share, or `nil` for a channel of its own.
    /// - Returns: the subscription's events. Ending its iteration removes the binding.
    public func postgresChanges(
        schema: String,
        table: String,
        event: PostgresChangeEvent = .all,
        filter: String? = nil,
        channel: String? = nil
    ) -> PostgresChangeSubscription {
        let binding = PostgresChangeBinding(event: event, schema: schema, table: table, filter: filter)
        let id = self.nextSubscriberID()
        let (stream, continuation) = AsyncThrowingStream<RealtimeSubscriptionEvent, any Error>.makeStream(
            bufferingPolicy: .bufferingOldest(self.configuration.subscriptionBufferSize))
        let events = self.events
        continuation.onTermination = { _ in events.send(.unsubscribe(id)) }
        let request = SubscriptionRequest(
            id: id, kind: .postgresChanges(binding), channel: channel, sink: .postgresChanges(continuation))
        if !self.events.send(.subscribe(request)) {
            continuation.finish(throwing: RealtimeClientError(.clientShutDown, "the Realtime client has shut down"))
        }
        return PostgresChangeSubscription(stream: stream, backlog: (self.backlog, id))
    }

    func nextSubscriberID() -> SubscriberID {
        self.subscriptionCounter.withLockedValue { counter -> SubscriberID in
            counter += 1
            return SubscriberID(rawValue: counter)
        }
    }

    /// Runs the client until cancelled or gracefully shut down: connects, keeps the socket alive, reconnects,
    /// joins and rejoins channels, and feeds subscriptions.
    /// - Throws: ``RealtimeClientError/Code/alreadyRunning`` if called twice. Connection problems do not throw;
    ///   they are retried and reported through ``statusUpdates``.
    public func run() async throws {
        let canRun = self.lifecycle.withLockedValue { state -> Bool in
            guard case .idle = state else { return false }
            state = .running
            return true
        }
        guard canRun else {
            throw RealtimeClientError(.alreadyRunning, "run() may be called only once per RealtimeClient")
        }
        defer { self.lifecycle.withLockedValue { $0 = .finished } }
        let events = self.events
        await withTaskCancellationOrGracefulShutdownHandler {
            await self.runLoop()
        } onCancelOrGracefulShutdown: {
            events.send(.shutdown)
        }
    }

    private func runLoop() async {
        let writer = Mailbox<WriterCommand>()
        let driver = ClientDriver(client: self, writer: writer)
        await withTaskGroup(of: Void.self) { outer in
            outer.addTask { await ClientDriver.runWriter(writer, logger: self.configuration.logger) }
            await withTaskGroup(of: Void.self) { group in
                driver.start(group: &group)
                while let event = await self.events.next() {
                    driver.handle(event, group: &group)
                    if driver.isShuttingDown { break }
                }
                driver.shutdown(group: &group)
                group.cancelAll()
            }
            // Every child task has ended; handle what raced with the shutdown, then let the writer finish sending
            // the final frames and closing the socket (the outer group waits for it).
            self.events.finish()
            while let event = await self.events.next() {
                driver.handleAfterShutdown(event)
            }
            writer.finish()
        }
        self.statusBroadcaster.finish()
        self.roundTripBroadcaster.finish()
    }
}

/// The client's swift-metrics instruments.
struct ClientMetrics: Sendable {
    let framesIn = Counter(label: "supabase_realtime_frames_in")
    let framesOut = Counter(label: "supabase_realtime_frames_out")
    let decodeErrors = Counter(label: "supabase_realtime_decode_errors")
    let ignoredMessages = Counter(label: "supabase_realtime_ignored_messages")
    let reconnects = Counter(label: "supabase_realtime_reconnects")
    let changesDelivered = Counter(label: "supabase_realtime_changes_delivered")
    let broadcastsDelivered = Counter(label: "supabase_realtime_broadcasts_delivered")
    let heartbeatRoundTrip = Metrics.Timer(label: "supabase_realtime_heartbeat_rtt")
}
