import JobSyncCore
import Testing

@testable import RealtimeProtocol

/// Socket lifecycle tests. Time is an explicit `Duration` since an arbitrary origin; nothing sleeps.
@Suite("SocketStateMachine")
struct SocketStateMachineTests {
    typealias Machine = SocketStateMachine
    typealias Action = SocketStateMachine.Action

    /// A machine with jitter switched off, so delays equal the schedule.
    static func exactMachine(_ configuration: Machine.Configuration = .init()) -> Machine {
        var configuration = configuration
        configuration.reconnect.jitter = 0
        return Machine(configuration: configuration, random: SplitMix64(seed: 1))
    }

    /// Connects and opens; returns the connection id.
    static func open(_ machine: inout Machine) throws -> Machine.ConnectionID {
        let actions = machine.connect()
        let connection = try #require(actions.compactMap { action -> Machine.ConnectionID? in
            if case .openTransport(let id) = action { return id }
            return nil
        }.first)
        _ = machine.transportOpened(connection)
        return connection
    }

    static func scheduledDelay(_ actions: [Action], _ timer: Machine.Timer) -> Duration? {
        for case .scheduleTimer(let scheduled, let after) in actions where scheduled == timer { return after }
        return nil
    }

    @Test("connect opens the transport; opening starts the heartbeat every 25 s (§3)")
    func connectAndOpen() throws {
        var machine = Self.exactMachine()
        let actions = machine.connect()
        #expect(actions == [.openTransport(.init(rawValue: 1)), .reportStatus(.connecting(attempt: 0))])
        #expect(machine.connect().isEmpty, "a second connect while connecting does nothing")
        let opened = machine.transportOpened(.init(rawValue: 1))
        #expect(opened == [
            .scheduleTimer(.heartbeat, after: .seconds(25)),
            .notifySocketOpened,
            .reportStatus(.connected),
        ])
        #expect(machine.status == .connected)
    }

    @Test("§3 heartbeat: sent on topic phoenix with a fresh ref; reply gives the round-trip time")
    func heartbeatRoundTrip() throws {
        var machine = Self.exactMachine()
        _ = try Self.open(&machine)
        let beat = machine.timerFired(.heartbeat, now: .seconds(25))
        #expect(beat == [
            .sendHeartbeat("1"),
            .scheduleTimer(.heartbeatTimeout("1"), after: .seconds(10)),
            .scheduleTimer(.heartbeat, after: .seconds(25)),
        ])
        #expect(machine.heartbeatReplyReceived(ref: "999", now: .seconds(26)).isEmpty, "unknown ref ignored")
        let reply = machine.heartbeatReplyReceived(ref: "1", now: .milliseconds(25_042))
        #expect(reply == [.cancelTimer(.heartbeatTimeout("1")), .reportHeartbeatRoundTrip(.milliseconds(42))])
        #expect(machine.heartbeatReplyReceived(ref: "1", now: .seconds(27)).isEmpty, "duplicate reply ignored")
        // The next heartbeat uses the next ref from the shared counter.
        let second = machine.timerFired(.heartbeat, now: .seconds(50))
        #expect(second.first == .sendHeartbeat("2"))
    }

    @Test("§3 heartbeat timeout: no reply within 10 s closes with 1000 \"heartbeat timeout\" and reconnects")
    func heartbeatTimeout() throws {
        var machine = Self.exactMachine()
        let connection = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(25))
        let timeout = machine.timerFired(.heartbeatTimeout("1"), now: .seconds(35))
        // Effects first (the reconnect timer included), then what channels and observers learn of the loss.
        #expect(timeout == [
            .cancelTimer(.heartbeat),
            .cancelTimer(.heartbeatTimeout("1")),
            .closeTransport(connection, code: 1000, reason: "heartbeat timeout"),
            .scheduleTimer(.reconnect, after: .seconds(1)),
            .notifySocketLost,
            .reportStatus(.disconnected(.heartbeatTimeout)),
            .reportStatus(.reconnecting(attempt: 1, delay: .seconds(1))),
        ])
        // The close of the abandoned connection arrives later and changes nothing.
        #expect(machine.transportClosed(connection, code: 1000, reason: "heartbeat timeout").isEmpty)
        let reconnect = machine.timerFired(.reconnect, now: .seconds(36))
        #expect(reconnect == [.openTransport(.init(rawValue: 2)), .reportStatus(.connecting(attempt: 1))])
    }

    @Test("§15.7 a 5 s server pause does not trip the default heartbeat timeout")
    func tolerateJoinErrorPause() throws {
        var machine = Self.exactMachine()
        _ = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(25))
        // The reply comes 5.5 s late (the server sat on a join error); the timeout timer (10 s) had not fired.
        let reply = machine.heartbeatReplyReceived(ref: "1", now: .milliseconds(30_500))
        #expect(reply.contains(.reportHeartbeatRoundTrip(.milliseconds(5_500))))
        #expect(machine.status == .connected)
    }

    @Test("§3 a heartbeat due while one is pending waits for it; a timeout once it waited heartbeatTimeout")
    func heartbeatDueWhilePending() throws {
        var configuration = Machine.Configuration()
        configuration.heartbeatInterval = .seconds(5)
        configuration.heartbeatTimeout = .seconds(12)
        var machine = Self.exactMachine(configuration)
        let connection = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(5))
        // 5 s unanswered (< 12 s): no second heartbeat on top of the first, no timeout.
        let early = machine.timerFired(.heartbeat, now: .seconds(10))
        #expect(early == [.scheduleTimer(.heartbeat, after: .seconds(5))])
        #expect(machine.status == .connected)
        // 12 s unanswered: the heartbeat tick that finds it pending is the timeout (§13.1 item 3).
        let late = machine.timerFired(.heartbeat, now: .seconds(17))
        #expect(late.contains(.closeTransport(connection, code: 1000, reason: "heartbeat timeout")))
        #expect(late.contains(.reportStatus(.disconnected(.heartbeatTimeout))))
    }

    @Test("§13.1 a late heartbeat reply reports the socket unresponsive, once, and responsive when it arrives")
    func unresponsiveThenResponsive() throws {
        var machine = Self.exactMachine(.init(heartbeatInterval: .seconds(3), unresponsiveAfter: .milliseconds(1_500)))
        _ = try Self.open(&machine)
        let beat = machine.timerFired(.heartbeat, now: .seconds(3))
        #expect(beat == [
            .sendHeartbeat("1"),
            .scheduleTimer(.heartbeatTimeout("1"), after: .seconds(10)),
            .scheduleTimer(.heartbeatLate("1"), after: .milliseconds(1_500)),
            .scheduleTimer(.heartbeat, after: .seconds(3)),
        ])
        #expect(machine.timerFired(.heartbeatLate("1"), now: .milliseconds(4_500)) == [.notifySocketUnresponsive])
        #expect(machine.timerFired(.heartbeat, now: .seconds(6)) == [.scheduleTimer(.heartbeat, after: .seconds(3))])
        let reply = machine.heartbeatReplyReceived(ref: "1", now: .seconds(7))
        #expect(reply == [
            .cancelTimer(.heartbeatTimeout("1")), .cancelTimer(.heartbeatLate("1")),
            .notifySocketResponsive, .reportHeartbeatRoundTrip(.seconds(4)),
        ])
        #expect(machine.status == .connected)
        // A prompt reply reports nothing more than the round trip.
        _ = machine.timerFired(.heartbeat, now: .seconds(9))
        #expect(!machine.heartbeatReplyReceived(ref: "2", now: .milliseconds(9_010)).contains(.notifySocketResponsive))
    }

    @Test("§13.1 an unresponsive socket whose heartbeat times out is lost, not responsive again")
    func unresponsiveThenTimeout() throws {
        var machine = Self.exactMachine(.init(heartbeatInterval: .seconds(3), unresponsiveAfter: .seconds(1)))
        let connection = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(3))
        #expect(machine.timerFired(.heartbeatLate("1"), now: .seconds(4)) == [.notifySocketUnresponsive])
        let timeout = machine.timerFired(.heartbeatTimeout("1"), now: .seconds(13))
        #expect(timeout.contains(.cancelTimer(.heartbeatLate("1"))))
        #expect(timeout.contains(.notifySocketLost))
        #expect(timeout.contains(.closeTransport(connection, code: 1000, reason: "heartbeat timeout")))
        #expect(!timeout.contains(.notifySocketResponsive))
    }

    @Test("§3 frames are signs of life: a reply queued behind a backlog is neither late nor timed out; silence is")
    func framesKeepTheSocketAlive() throws {
        var machine = Self.exactMachine(.init(heartbeatInterval: .seconds(3), unresponsiveAfter: .milliseconds(1_500)))
        let connection = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(3))
        // The client is working through a backlog: frames keep arriving, the reply is still behind them.
        machine.frameReceived()
        let stillLive = [SocketStateMachine.Action.scheduleTimer(.heartbeatLate("1"), after: .milliseconds(1_500))]
        #expect(machine.timerFired(.heartbeatLate("1"), now: .milliseconds(4_500)) == stillLive)
        machine.frameReceived()
        #expect(machine.timerFired(.heartbeatLate("1"), now: .seconds(6)) == stillLive)
        // 1.5 s without a frame: late.
        #expect(machine.timerFired(.heartbeatLate("1"), now: .milliseconds(7_500)) == [.notifySocketUnresponsive])
        machine.frameReceived()
        #expect(machine.timerFired(.heartbeat, now: .seconds(12)) == [.scheduleTimer(.heartbeat, after: .seconds(3))])
        #expect(
            machine.timerFired(.heartbeatTimeout("1"), now: .seconds(13))
                == [.scheduleTimer(.heartbeatTimeout("1"), after: .seconds(10))])
        // The heartbeat tick no longer decides once the timeout was armed again, though 12 s passed without a reply.
        #expect(machine.timerFired(.heartbeat, now: .seconds(15)) == [.scheduleTimer(.heartbeat, after: .seconds(3))])
        #expect(machine.status == .connected)
        // No frame since the timeout was armed again: the connection is given up.
        let timeout = machine.timerFired(.heartbeatTimeout("1"), now: .seconds(23))
        #expect(timeout.contains(.closeTransport(connection, code: 1000, reason: "heartbeat timeout")))
        #expect(timeout.contains(.notifySocketLost))
    }

    @Test("an answered heartbeat cancels its timers; a timer the machine cancelled traps in debug builds")
    func answeredHeartbeatCancelsTimers() async throws {
        var machine = Self.exactMachine()
        _ = try Self.open(&machine)
        _ = machine.timerFired(.heartbeat, now: .seconds(25))
        let reply = machine.heartbeatReplyReceived(ref: "1", now: .seconds(26))
        #expect(reply.contains(.cancelTimer(.heartbeatTimeout("1"))))
        #if DEBUG
        await #expect(processExitsWith: .failure) {
            var machine = SocketStateMachine(random: SplitMix64(seed: 1))
            guard case .openTransport(let connection) = machine.connect().first else { return }
            _ = machine.transportOpened(connection)
            _ = machine.timerFired(.heartbeat, now: .seconds(25))
            _ = machine.heartbeatReplyReceived(ref: "1", now: .seconds(26))
            _ = machine.timerFired(.heartbeatTimeout("1"), now: .seconds(35))
        }
        #endif
    }

    @Test("§9.3 reconnect schedule 1, 2, 5, 10, 10 s; reset once the socket opens")
    func reconnectSchedule() throws {
        var machine = Self.exactMachine()
        var connection = try #require(machine.connect().compactMap { action -> Machine.ConnectionID? in
            if case .openTransport(let id) = action { return id }
            return nil
        }.first)
        var delays: [Duration] = []
        for _ in 0..<6 {
            let failed = machine.transportFailedToOpen(connection, httpStatus: nil, message: "connection refused")
            delays.append(try #require(Self.scheduledDelay(failed, .reconnect)))
            let next = machine.timerFired(.reconnect, now: .zero)
            connection = try #require(next.compactMap { action -> Machine.ConnectionID? in
                if case .openTransport(let id) = action { return id }
                return nil
            }.first)
        }
        #expect(delays == [.seconds(1), .seconds(2), .seconds(5), .seconds(10), .seconds(10), .seconds(10)])
        // Opening resets the schedule: the next loss waits 1 s again.
        _ = machine.transportOpened(connection)
        let closed = machine.transportClosed(connection, code: 1012, reason: "")
        #expect(closed.contains(.reportStatus(.disconnected(.closed(code: 1012, reason: "")))))
        #expect(closed.contains(.notifySocketLost))
        #expect(Self.scheduledDelay(closed, .reconnect) == .seconds(1))
    }

    @Test("§9.3 reconnect jitter stays within ±20 % and actually varies")
    func reconnectJitterBounds() throws {
        var seen = Set<Duration>()
        for seed in 0..<300 as Range<UInt64> {
            var machine = Machine(random: SplitMix64(seed: seed))
            let connection = try Self.open(&machine)
            let closed = machine.transportClosed(connection, code: nil, reason: "")
            let delay = try #require(Self.scheduledDelay(closed, .reconnect))
            #expect(delay >= .milliseconds(800) && delay <= .milliseconds(1_200), "delay \(delay)")
            seen.insert(delay)
        }
        #expect(seen.count > 100, "jitter should spread the delays")
        let schedule = BackoffSchedule(steps: [.seconds(10)], jitter: 0.2)
        #expect(schedule.delay(attempt: 1, unit: 0) == .seconds(8))
        #expect(schedule.delay(attempt: 1, unit: 1) == .seconds(12))
        #expect(schedule.delay(attempt: 7, unit: 0.5) == .seconds(10))
    }

    @Test("§1.3 HTTP 429 at the handshake backs off to at least the long step")
    func handshakeRateLimited() throws {
        var machine = Self.exactMachine()
        let actions = machine.connect()
        guard case .openTransport(let connection) = actions.first else {
            Issue.record("no openTransport")
            return
        }
        let failed = machine.transportFailedToOpen(connection, httpStatus: 429, message: "Too many connected users")
        #expect(failed.contains(.reportStatus(.disconnected(.handshakeRejected(status: 429)))))
        #expect(Self.scheduledDelay(failed, .reconnect) == .seconds(10))
        // With jitter the delay still stays near the long step.
        for seed in 0..<100 as Range<UInt64> {
            var jittered = Machine(random: SplitMix64(seed: seed))
            guard case .openTransport(let id) = jittered.connect().first else { continue }
            let delay = try #require(Self.scheduledDelay(
                jittered.transportFailedToOpen(id, httpStatus: 429, message: ""),
                .reconnect
            ))
            #expect(delay >= .seconds(8))
        }
        // A 401 follows the normal schedule (the driver refreshes the token before the next attempt).
        var other = Self.exactMachine()
        guard case .openTransport(let id) = other.connect().first else { return }
        #expect(Self.scheduledDelay(other.transportFailedToOpen(id, httpStatus: 401, message: ""), .reconnect)
            == .seconds(1))
    }

    @Test("explicit disconnect closes with 1000 and never reconnects")
    func explicitDisconnect() throws {
        var machine = Self.exactMachine()
        let connection = try Self.open(&machine)
        let actions = machine.disconnect()
        #expect(actions == [
            .cancelTimer(.heartbeat),
            .notifySocketLost,
            .closeTransport(connection, code: 1000, reason: "client disconnect"),
            .reportStatus(.disconnected(.requested)),
        ])
        let closed = machine.transportClosed(connection, code: 1000, reason: "client disconnect")
        #expect(closed == [.reportStatus(.closed)])
        #expect(machine.status == .closed)
    }

    @Test("disconnect while waiting to reconnect cancels the timer")
    func disconnectWhileWaiting() throws {
        var machine = Self.exactMachine()
        let connection = try Self.open(&machine)
        _ = machine.transportClosed(connection, code: nil, reason: "")
        #expect(machine.disconnect() == [.cancelTimer(.reconnect), .reportStatus(.closed)])
    }

    @Test("disconnect while connecting closes the connection if it opens late")
    func disconnectWhileConnecting() throws {
        var machine = Self.exactMachine()
        guard case .openTransport(let connection) = machine.connect().first else {
            Issue.record("no openTransport")
            return
        }
        #expect(machine.disconnect() == [.reportStatus(.disconnected(.requested))])
        #expect(machine.transportOpened(connection) == [
            .closeTransport(connection, code: 1000, reason: "client disconnect"),
        ])
        #expect(machine.transportClosed(connection, code: 1000, reason: "") == [.reportStatus(.closed)])
    }

    @Test("refs come from one counter shared with channel pushes (§2.2)")
    func sharedRefCounter() throws {
        var machine = Self.exactMachine()
        _ = try Self.open(&machine)
        #expect(machine.refs.next() == "1")
        #expect(machine.refs.next() == "2")
        let beat = machine.timerFired(.heartbeat, now: .seconds(25))
        #expect(beat.first == .sendHeartbeat("3"))
    }
}
