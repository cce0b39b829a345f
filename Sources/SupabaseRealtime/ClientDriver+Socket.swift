import JobSyncCore
import Logging
import Metrics
import RealtimeProtocol
import WebSocketTransport

extension ClientDriver {
    // MARK: Socket actions

    /// Executes socket actions in the order the machine returned them.
    func execute(_ actions: [SocketStateMachine.Action], group: inout TaskGroup<Void>) {
        for action in actions {
            switch action {
            case .openTransport(let id):
                self.openTransport(id, group: &group)
            case .closeTransport(let id, let code, let reason):
                self.closeConnection(id, code: code, reason: reason, group: &group)
            case .sendHeartbeat(let ref):
                self.send(PhoenixSerializer.heartbeat(ref: ref))
                // Heartbeats bring a refreshed token to joined channels before the old one expires (§3, §8.1), but
                // ask the provider only once the current token is due (its `exp`), so a provider that mints a new
                // string per call does not make every channel push `access_token` on every heartbeat.
                if self.tokenSchedule.isDue(now: self.time.now()) {
                    self.startTokenFetch(group: &group)
                }
            case .scheduleTimer(let timer, let delay):
                self.schedule(.socket(timer), after: delay, group: &group)
            case .cancelTimer(let timer):
                self.cancel(.socket(timer))
            case .reportStatus(let status):
                self.report(status)
            case .reportHeartbeatRoundTrip(let roundTrip):
                let (seconds, attoseconds) = roundTrip.components
                self.client.metrics.heartbeatRoundTrip.recordNanoseconds(
                    seconds * 1_000_000_000 + attoseconds / 1_000_000_000)
                self.client.roundTripBroadcaster.publish(roundTrip)
                self.logger.trace("realtime heartbeat", metadata: ["realtime.rtt": "\(roundTrip)"])
            case .notifySocketOpened:
                self.withEveryChannel(group: &group) { machine, refs in machine.socketOpened(refs: &refs) }
            case .notifySocketLost:
                self.withEveryChannel(group: &group) { machine, refs in machine.socketClosed(refs: &refs) }
            case .notifySocketUnresponsive:
                self.logger.debug("realtime socket unresponsive: heartbeat reply late")
                self.withEveryChannel(group: &group) { machine, _ in machine.socketUnresponsive() }
            case .notifySocketResponsive:
                self.logger.debug("realtime socket responsive again")
                self.withEveryChannel(group: &group) { machine, _ in machine.socketResponsive() }
            }
        }
    }

    private func report(_ status: SocketStateMachine.Status) {
        if case .reconnecting(let attempt, let delay) = status {
            self.client.metrics.reconnects.increment()
            self.logger.debug(
                "realtime reconnect scheduled",
                metadata: ["realtime.attempt": "\(attempt)", "realtime.delay": "\(delay)"])
        } else {
            self.logger.debug("realtime socket status", metadata: ["realtime.status": "\(status)"])
        }
        self.client.statusBroadcaster.publish(status)
    }

    private func openTransport(_ id: SocketStateMachine.ConnectionID, group: inout TaskGroup<Void>) {
        let configuration = self.configuration
        let request = WebSocketRequest(
            url: self.client.connectURL,
            headers: configuration.headers,
            tls: configuration.tls,
            maxMessageSize: configuration.maxMessageSize,
            connectTimeout: configuration.connectTimeout)
        let events = self.client.events
        let serializer = self.serializer
        let metrics = self.client.metrics
        let credits = self.inboundCredits
        let backlog = self.client.backlog
        let time = self.time
        // The token fetch is part of this task so a connect never waits behind the run loop.
        let wantsToken = configuration.accessToken != nil && !self.tokenFetchInFlight
        if wantsToken { self.tokenFetchInFlight = true }
        group.addTask {
            let token = wantsToken ? await DriverWork.fetchToken(configuration.accessToken) : .unavailable
            let connection: any WebSocketConnection
            do throws(WebSocketTransportError) {
                connection = try await configuration.transport.connect(request)
            } catch {
                events.send(.openFailed(id, error, token))
                return
            }
            events.send(.opened(id, connection, token))
            for await event in connection.events {
                switch event {
                case .message(let message):
                    metrics.framesIn.increment()
                    let frame = DriverWork.decode(message, serializer: serializer)
                    // A consumer far behind holds the socket back for up to a second (see SubscriptionBacklog).
                    await backlog.waitWhileBehind(time: time, maximum: .seconds(1))
                    guard await credits.acquire() else { return }
                    events.send(.inbound(id, frame))
                case .closed(let close):
                    events.send(.closed(id, close))
                    return
                }
            }
        }
    }

    // MARK: Tokens

    func startTokenFetch(group: inout TaskGroup<Void>) {
        guard let provider = self.configuration.accessToken, !self.tokenFetchInFlight else { return }
        self.tokenFetchInFlight = true
        let events = self.client.events
        group.addTask {
            events.send(.tokenFetched(await DriverWork.fetchToken(provider)))
        }
    }

    func applyFetchedToken(_ fetch: TokenFetch, group: inout TaskGroup<Void>) {
        switch fetch {
        case .unavailable:
            return
        case .token(let token):
            self.tokenFetchInFlight = false
            self.tokenSchedule.tokenReceived(token, now: self.time.now(), date: self.configuration.now())
            self.accessToken = token
            self.withEveryChannel(group: &group) { machine, refs in machine.updateAccessToken(token, refs: &refs) }
        case .failed(let message):
            self.tokenFetchInFlight = false
            self.tokenSchedule.fetchFailed(now: self.time.now())
            self.logger.debug("realtime access token unavailable", metadata: ["realtime.error": "\(message)"])
            self.withEveryChannel(group: &group) { machine, _ in machine.tokenRefreshFailed() }
        }
    }

    // MARK: Timers

    func schedule(_ key: TimerKey, after delay: Duration, group: inout TaskGroup<Void>) {
        self.cancel(key)
        self.timerGeneration += 1
        let generation = self.timerGeneration
        let cancellation = TimerCancellation()
        self.timers[key] = (generation, cancellation)
        let deadline = self.time.now() + delay
        let time = self.time
        let events = self.client.events
        group.addTask {
            let fired = await withTaskGroup(of: Bool.self) { race in
                race.addTask {
                    // Sleep to the deadline computed when the timer was scheduled, so a late start does not drift.
                    do {
                        try await time.sleep(until: deadline)
                        return true
                    } catch {
                        return false
                    }
                }
                race.addTask {
                    await cancellation.wait()
                    return false
                }
                let first = await race.next() ?? false
                race.cancelAll()
                return first
            }
            if fired { events.send(.timerFired(key, generation: generation)) }
        }
    }

    func cancel(_ key: TimerKey) {
        guard let entry = self.timers.removeValue(forKey: key) else { return }
        entry.cancellation.cancel()
    }

    func timerFired(_ key: TimerKey, group: inout TaskGroup<Void>) {
        switch key {
        case .socket(let timer):
            self.execute(self.socket.timerFired(timer, now: self.time.now()), group: &group)
        case .channel(let topic, let timer):
            self.withChannel(topic, group: &group) { machine, refs in machine.timerFired(timer, refs: &refs) }
        }
    }

    // MARK: Inbound

    func receive(_ frame: InboundFrame, group: inout TaskGroup<Void>) {
        switch frame {
        case .malformed(let error):
            self.client.metrics.decodeErrors.increment()
            self.logger.debug("realtime frame skipped", metadata: ["realtime.error": "\(error.description)"])
        case .skippedBinary:
            self.client.metrics.ignoredMessages.increment()
            self.logger.trace("realtime binary frame skipped")
        case .message(let message):
            self.logger.trace(
                "realtime frame in",
                metadata: [
                    "realtime.topic": "\(message.topic)", "realtime.event": "\(message.event)",
                    "realtime.ref": "\(message.ref?.rawValue ?? "null")",
                ])
            if message.topic == .phoenix {
                if message.event == .reply, let ref = message.ref {
                    self.execute(self.socket.heartbeatReplyReceived(ref: ref, now: self.time.now()), group: &group)
                }
                return
            }
            guard self.channels[message.topic] != nil else {
                self.client.metrics.ignoredMessages.increment()
                self.logger.trace(
                    "realtime message for unknown topic", metadata: ["realtime.topic": "\(message.topic)"])
                return
            }
            self.withChannel(message.topic, group: &group) { machine, refs in machine.receive(message, refs: &refs) }
        }
    }
}

/// Work done in child tasks, outside the driver (no access to its state).
enum DriverWork {
    static func decode(_ message: WebSocketMessage, serializer: PhoenixSerializer) -> InboundFrame {
        do {
            switch message {
            case .text(let text):
                return .message(try serializer.decode(text: text))
            case .binary(let bytes):
                guard let decoded = try serializer.decode(binary: bytes) else { return .skippedBinary }
                return .message(decoded)
            }
        } catch {
            return .malformed(error)
        }
    }

    static func fetchToken(_ provider: (@Sendable () async throws -> String?)?) async -> TokenFetch {
        guard let provider else { return .unavailable }
        do {
            return .token(try await provider())
        } catch {
            // The provider's error may carry anything; only its type is safe to report.
            return .failed("access token provider threw \(type(of: error))")
        }
    }
}
