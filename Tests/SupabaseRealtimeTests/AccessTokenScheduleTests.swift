import Foundation
import JobSyncCore
import JobSyncTestSupport
import NIOConcurrencyHelpers
import RealtimeProtocol
import Testing

@testable import SupabaseRealtime

/// An unsigned JWT (the client never checks signatures) with the given claims; `extra` makes each string unique.
func unsignedJWT(exp: Double?, iat: Double? = nil, extra: String = "") -> String {
    func base64url(_ text: String) -> String {
        Data(text.utf8).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }
    var claims = ["\"role\":\"authenticated\"", "\"jti\":\"\(extra)\""]
    if let exp { claims.append("\"exp\":\(exp)") }
    if let iat { claims.append("\"iat\":\(iat)") }
    return base64url(#"{"alg":"HS256","typ":"JWT"}"#) + "." + base64url("{" + claims.joined(separator: ",") + "}")
        + ".c2lnbmF0dXJl"
}

@Suite("Access token schedule (§8.1): ask the provider when the token is due")
struct AccessTokenScheduleTests {
    let date = Date(timeIntervalSince1970: 1_800_000_000)

    @Test("exp and iat are read from the base64url payload without a signature check")
    func claims() throws {
        let claims = try #require(JWTClaims(unsignedJWT(exp: 1_800_003_600, iat: 1_800_000_000)))
        #expect(claims.expiresAt == Date(timeIntervalSince1970: 1_800_003_600))
        #expect(claims.issuedAt == Date(timeIntervalSince1970: 1_800_000_000))
        #expect(JWTClaims(unsignedJWT(exp: nil)) == nil)
        #expect(JWTClaims("not-a-jwt") == nil)
        #expect(JWTClaims("a.%%%%.c") == nil)
        #expect(JWTClaims("a.\(Data("[1]".utf8).base64EncodedString()).c") == nil)
        // An `exp` that is not a number is unreadable, not zero.
        let text = Data(#"{"exp":"soon"}"#.utf8).base64EncodedString()
        #expect(JWTClaims("a.\(text).c") == nil)
    }

    @Test("a one-hour token is due 10 % of its lifetime (and one heartbeat) before exp")
    func dueBeforeExpiry() {
        var schedule = AccessTokenSchedule(fallbackInterval: .seconds(25), checkInterval: .seconds(25))
        #expect(schedule.isDue(now: .zero))  // no token yet
        let issued = self.date.timeIntervalSince1970
        schedule.tokenReceived(unsignedJWT(exp: issued + 3600, iat: issued), now: .seconds(100), date: self.date)
        #expect(schedule.dueAt == .seconds(100 + 3600 - 360 - 25))
        #expect(!schedule.isDue(now: .seconds(100 + 3214)))
        #expect(schedule.isDue(now: .seconds(100 + 3215)))
    }

    @Test("short tokens keep at least 10 s; tokens already due are due now; no exp falls back to the interval")
    func marginsAndFallback() {
        var schedule = AccessTokenSchedule(fallbackInterval: .seconds(25), checkInterval: .seconds(3))
        let now = self.date.timeIntervalSince1970
        schedule.tokenReceived(unsignedJWT(exp: now + 60, iat: now), now: .zero, date: self.date)
        #expect(schedule.dueAt == .seconds(60 - 10 - 3))
        // A cached token handed out late in its life: `iat` long ago, 20 s left.
        schedule.tokenReceived(unsignedJWT(exp: now + 20, iat: now - 3580), now: .seconds(5), date: self.date)
        #expect(schedule.dueAt == .seconds(5))
        schedule.tokenReceived(unsignedJWT(exp: now - 1), now: .seconds(7), date: self.date)
        #expect(schedule.isDue(now: .seconds(7)))
        schedule.tokenReceived("opaque-token", now: .seconds(10), date: self.date)
        #expect(schedule.dueAt == .seconds(35))
        schedule.tokenReceived(nil, now: .seconds(40), date: self.date)
        #expect(schedule.dueAt == .seconds(65))
        schedule.fetchFailed(now: .seconds(50))
        #expect(schedule.dueAt == .seconds(65))  // not later than it already was
        schedule.tokenReceived(unsignedJWT(exp: now + 3600, iat: now), now: .zero, date: self.date)
        schedule.fetchFailed(now: .seconds(60))
        #expect(schedule.dueAt == .seconds(85))
    }

    @Test("a provider minting a fresh 1 h token per call is asked once per connect, not per heartbeat")
    func freshTokenPerCallIsNotAskedPerHeartbeat() async throws {
        let calls = NIOLockedValueBox(0)
        let start = self.date
        let clockBox = NIOLockedValueBox<ManualClock?>(nil)
        try await withDeadline(.seconds(60)) { try await Self.freshTokenRun(start: start, calls: calls, clockBox: clockBox) }
    }

    private static func freshTokenRun(
        start: Date, calls: NIOLockedValueBox<Int>, clockBox: NIOLockedValueBox<ManualClock?>
    ) async throws {
        try await withTestClient(configure: { configuration in
            let clock = configuration.clock as? ManualClock
            clockBox.withLockedValue { $0 = clock }
            // The wall clock moves with the manual clock.
            configuration.now = {
                let offset = clockBox.withLockedValue { $0?.now.offset } ?? .zero
                return start.addingTimeInterval(Double(offset.components.seconds))
            }
            configuration.accessToken = {
                let call = calls.withLockedValue { count in
                    count += 1
                    return count
                }
                let offset = clockBox.withLockedValue { $0?.now.offset.components.seconds } ?? 0
                let now = start.timeIntervalSince1970 + Double(offset)
                return unsignedJWT(exp: now + 3600, iat: now, extra: "call-\(call)")
            }
        }) { client, clock, transport in
            var roundTrips = client.heartbeatRoundTrips.makeAsyncIterator()
            var attempts = transport.attempts.makeAsyncIterator()
            let subscription = client.postgresChanges(schema: "public", table: "jobs")
            var events = subscription.makeAsyncIterator()
            var server = ScriptedServer(try await attempts.nextAttempt().accept())
            let join = try await server.expect(.join)
            #expect(join.payload["access_token"]?.stringValue.map { JWTClaims($0) != nil } == true)
            server.acceptJoin(join)
            #expect(try await events.next() == .live)
            #expect(calls.withLockedValue { $0 } == 1)
            // 128 heartbeats (53 min 20 s): every frame is a heartbeat, never an `access_token` push or a rejoin.
            for beat in 1...128 {
                clock.advance(by: .seconds(25))
                let heartbeat = try #require(try await server.next())
                guard heartbeat.event == .heartbeat else {
                    Issue.record("after heartbeat \(beat - 1) the client sent \(heartbeat.event), not a heartbeat")
                    return
                }
                server.send(PhoenixMessage(
                    joinRef: nil, ref: heartbeat.ref, topic: .phoenix, event: .reply,
                    payload: .object(["response": .object([:]), "status": .string("ok")])))
                _ = await roundTrips.next()
            }
            #expect(calls.withLockedValue { $0 } == 1)
            // The token is due 3600 − 360 − 25 = 3215 s after it was minted: the heartbeat at 3225 s asks, and the
            // new token is pushed once, before the old one expires.
            clock.advance(by: .seconds(25))
            _ = try await server.expect(.heartbeat)
            let push = try await server.expect(.accessToken)
            #expect(push.joinRef == join.joinRef)
            #expect(push.payload["access_token"] != join.payload["access_token"])
            #expect(calls.withLockedValue { $0 } == 2)
        }
    }
}
