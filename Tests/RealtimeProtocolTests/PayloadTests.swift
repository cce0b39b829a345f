import JobSyncCore
import Testing

@testable import RealtimeProtocol

@Suite("Payloads: error reasons (§4.4, §4.5, §7.2, §8.1)")
struct PayloadErrorReasonTests {
    struct Case: CustomTestStringConvertible, Sendable {
        var raw: String
        var code: String?
        var kind: ErrorReason.Kind
        var testDescription: String { self.raw }
    }

    static let cases: [Case] = [
        Case(raw: "InvalidJWTToken: Token has expired 12 seconds ago", code: "InvalidJWTToken", kind: .tokenExpired),
        Case(raw: "InvalidJWTExpiration: Token has expired", code: "InvalidJWTExpiration", kind: .tokenExpired),
        Case(raw: "Token has expired 0 seconds ago", code: nil, kind: .tokenExpired),
        Case(
            raw: "InvalidJWTToken: Fields `role` and `exp` are required in JWT", code: "InvalidJWTToken",
            kind: .invalidToken),
        Case(raw: "InvalidJWTToken: Token expiration time is invalid", code: "InvalidJWTToken", kind: .invalidToken),
        Case(raw: "MalformedJWT: The token provided is not a valid JWT", code: "MalformedJWT", kind: .invalidToken),
        Case(
            raw: "JwtSignatureError: Failed to validate JWT signature", code: "JwtSignatureError", kind: .invalidToken),
        Case(
            raw: "JwtSignerError: Failed to generate JWT signer, check your JWT secret or JWKS configuration",
            code: "JwtSignerError", kind: .invalidToken),
        Case(raw: ":signature_error", code: nil, kind: .invalidToken),
        Case(raw: "The token provided is not a valid JWT", code: nil, kind: .invalidToken),
        Case(
            raw: "Unauthorized: You do not have permissions to read from this Channel topic: jobs",
            code: "Unauthorized", kind: .unauthorized),
        Case(
            raw: "You no longer have permission to read from this Channel topic: jobs", code: nil,
            kind: .unauthorized),
        Case(raw: "PrivateOnly: This project only allows private channels", code: "PrivateOnly", kind: .unauthorized),
        Case(raw: "ChannelRateLimitReached: Too many channels", code: "ChannelRateLimitReached", kind: .rateLimited),
        Case(
            raw: "ConnectionRateLimitReached: Too many connected users", code: "ConnectionRateLimitReached",
            kind: .rateLimited),
        Case(
            raw: "ClientJoinRateLimitReached: Too many joins per second", code: "ClientJoinRateLimitReached",
            kind: .rateLimited),
        Case(
            raw: "DatabaseConnectionRateLimitReached: Too many database connections attempts per second",
            code: "DatabaseConnectionRateLimitReached", kind: .rateLimited),
        Case(raw: "Too many messages per second", code: nil, kind: .rateLimited),
        Case(raw: "Client presence rate limit exceeded", code: nil, kind: .rateLimited),
        Case(
            raw: "RealtimeRestarting: Realtime is restarting, please standby", code: "RealtimeRestarting",
            kind: .serverRestarting),
        Case(
            raw: "InitializingProjectConnection: Realtime is initializing the project connection",
            code: "InitializingProjectConnection", kind: .transient),
        Case(
            raw: "InitializingProjectConnection: Connecting to the project database",
            code: "InitializingProjectConnection", kind: .transient),
        Case(
            raw: "UnableToConnectToProject: Realtime was unable to connect to the project database",
            code: "UnableToConnectToProject", kind: .transient),
        Case(
            raw: "DatabaseLackOfConnections: Database can't accept more connections, Realtime won't connect",
            code: "DatabaseLackOfConnections", kind: .transient),
        Case(
            raw: "IncreaseConnectionPool: Please increase your connection pool size", code: "IncreaseConnectionPool",
            kind: .transient),
        Case(raw: #"{:error, "Too many database timeouts"}"#, code: nil, kind: .transient),
        Case(raw: "Unknown Error on Channel", code: nil, kind: .other),
        Case(raw: "unmatched topic", code: nil, kind: .other),
        Case(
            raw: "TenantNotFound: Tenant with the given ID does not exist", code: "TenantNotFound", kind: .other),
        Case(
            raw: "TopicNameRequired: You must provide a topic name", code: "TopicNameRequired", kind: .other),
        Case(raw: "", code: nil, kind: .other),
        Case(raw: "Code:NoSpace", code: nil, kind: .other),
        Case(raw: "Two Words: message", code: nil, kind: .other),
        Case(raw: "9Lives: message", code: nil, kind: .other),
        Case(raw: "Code: ", code: "Code", kind: .other),
    ]

    @Test("reasons split into code and message and classify by text", arguments: cases)
    func classify(_ testCase: Case) {
        let reason = ErrorReason(testCase.raw)
        #expect(reason.raw == testCase.raw)
        #expect(reason.code == testCase.code)
        #expect(reason.kind == testCase.kind)
        if let code = testCase.code {
            #expect(reason.message == String(testCase.raw.dropFirst(code.count + 2)))
        } else {
            #expect(reason.message == testCase.raw)
        }
    }

    @Test("§4.4 error reply exposes its reason")
    func errorReplyReason() throws {
        let reply = try Reply(
            payload: JSONValue.parse(
                #"{"response":{"reason":"ChannelRateLimitReached: Too many channels"},"status":"error"}"#))
        #expect(reply.status == .error)
        #expect(reply.errorReason?.code == "ChannelRateLimitReached")
        #expect(reply.errorReason?.message == "Too many channels")
        #expect(try Reply(payload: JSONValue.parse(#"{"response":{},"status":"ok"}"#)).errorReason == nil)
    }
}

@Suite("Payloads: replies, bindings, system messages, changes")
struct PayloadDecodingTests {
    @Test("§3 reply status: ok, error, other; missing response reads as {}")
    func replyStatus() throws {
        #expect(try Reply(payload: JSONValue.parse(#"{"status":"ok"}"#)) == Reply(status: .ok, response: .object([:])))
        #expect(try Reply(payload: JSONValue.parse(#"{"status":"timeout","response":1}"#)).status == .other("timeout"))
        let reply = Reply(status: .error, response: .object(["reason": .string("x")]))
        #expect(reply.jsonValue.serialized() == #"{"response":{"reason":"x"},"status":"error"}"#)
    }

    @Test("§3 malformed replies are typed errors")
    func badReplies() throws {
        let missing = try #require(throws: RealtimeProtocolError.self) { try Reply(payload: JSONValue.parse("{}")) }
        #expect(missing.code == .missingField)
        let wrong = try #require(throws: RealtimeProtocolError.self) {
            try Reply(payload: JSONValue.parse(#"{"status":1}"#))
        }
        #expect(wrong.code == .unexpectedType)
        let notObject = try #require(throws: RealtimeProtocolError.self) { try Reply(payload: .array([])) }
        #expect(notObject.code == .unexpectedType)
    }

    @Test("§4.3 binding ids may be strings; missing postgres_changes means none; extra keys ignored")
    func joinReplyLenient() throws {
        let reply = try JoinReply(
            response: JSONValue.parse(
                #"{"postgres_changes":[{"id":"134217727","event":"insert","schema":"public","table":"jobs","#
                    + #""filter":null,"select":["id"]}]}"#))
        let binding = try #require(reply.postgresChanges.first)
        #expect(binding.id == 134_217_727)
        #expect(binding.event == .insert)
        #expect(binding.filter == nil)
        #expect(binding.matches(PostgresChangeBinding(event: .insert, schema: "public", table: "jobs")))
        #expect(try JoinReply(response: JSONValue.parse("{}")).postgresChanges.isEmpty)
        #expect(try JoinReply(response: JSONValue.parse(#"{"postgres_changes":[]}"#)).postgresChanges.isEmpty)
    }

    @Test("§4.3 malformed binding ids are typed errors", arguments: [
        #"{"postgres_changes":[{"event":"*"}]}"#,
        #"{"postgres_changes":[{"id":"abc"}]}"#,
        #"{"postgres_changes":[{"id":1.5}]}"#,
        #"{"postgres_changes":[{"id":-1}]}"#,
        #"{"postgres_changes":[{"id":99999999999999999999999}]}"#,
        #"{"postgres_changes":[{"id":true}]}"#,
        #"{"postgres_changes":[7]}"#,
        #"{"postgres_changes":{}}"#,
        #"{"postgres_changes":[{"id":1,"table":5}]}"#,
    ])
    func badJoinReply(_ text: String) throws {
        let response = try JSONValue.parse(text)
        #expect(throws: RealtimeProtocolError.self) { try JoinReply(response: response) }
    }

    @Test("§4.5 system message fields default when absent; status is required")
    func systemDefaults() throws {
        let message = try SystemMessage(payload: JSONValue.parse(#"{"status":"ok","extension":"system"}"#))
        #expect(message.channel == "")
        #expect(message.message == "")
        #expect(!message.isChannelError)
        let missing = try #require(throws: RealtimeProtocolError.self) {
            try SystemMessage(payload: JSONValue.parse(#"{"message":"x"}"#))
        }
        #expect(missing.code == .missingField)
        let postgresError = try SystemMessage(
            payload: JSONValue.parse(
                #"{"channel":"jobs","extension":"postgres_changes","#
                    + #""message":"Unable to subscribe to changes with given parameters. ...","status":"error"}"#))
        #expect(postgresError.isPostgresChangesError)
        #expect(!postgresError.isPostgresChangesOK)
        #expect(!postgresError.isChannelError)
    }

    @Test("§5.2 missing type/schema/table and wrong field types are typed errors", arguments: [
        #"{"data":{"schema":"public","table":"t"},"ids":[]}"#,
        #"{"data":{"type":"INSERT","table":"t"},"ids":[]}"#,
        #"{"data":{"type":"INSERT","schema":"public"},"ids":[]}"#,
        #"{"ids":[1]}"#,
        #"{"data":[],"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","record":[]},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","old_record":"x"},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","columns":{}},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","columns":[{"type":"int4"}]},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","errors":"Error 413"},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","errors":[{}]},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t","commit_timestamp":5},"ids":[1]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t"},"ids":["x"]}"#,
        #"{"data":{"type":"INSERT","schema":"public","table":"t"},"ids":7}"#,
        #"{"data":{"type":7,"schema":"public","table":"t"},"ids":[]}"#,
    ])
    func badChanges(_ text: String) throws {
        let payload = try JSONValue.parse(text)
        #expect(throws: RealtimeProtocolError.self) { try PostgresChangesMessage(payload: payload) }
    }

    @Test("§5.2 minimal change: optional fields absent, unknown type kept, extra keys ignored")
    func minimalChange() throws {
        let message = try PostgresChangesMessage(
            payload: JSONValue.parse(#"{"data":{"type":"TRUNCATE","schema":"s","table":"t","extra":1}}"#))
        #expect(message.ids.isEmpty)
        #expect(message.change.type == .unknown("TRUNCATE"))
        #expect(message.change.columns.isEmpty)
        #expect(message.change.record == nil)
        #expect(message.change.oldRecord == nil)
        #expect(message.change.errors == nil)
        #expect(!message.change.hasErrors)
    }

    @Test("§5.5 binding event matches change types")
    func eventMatching() {
        #expect(PostgresChangeEvent.all.matches(.delete))
        #expect(PostgresChangeEvent.all.matches(.unknown("X")))
        #expect(PostgresChangeEvent.update.matches(.update))
        #expect(!PostgresChangeEvent.update.matches(.insert))
        #expect(PostgresChangeEvent(wireValue: "delete") == .delete)
        #expect(PostgresChangeEvent(wireValue: "truncate") == nil)
    }
}

@Suite("Payloads: commit timestamps (§5.2)")
struct PayloadTimestampTests {
    @Test("valid timestamps", arguments: [
        ("1970-01-01T00:00:00.000Z", 0),
        ("1970-01-01T00:00:00Z", 0),
        ("2026-08-21T10:15:03.412Z", 1_787_307_303_412),
        ("2026-08-21T10:15:03.4Z", 1_787_307_303_400),
        ("2026-08-21T10:15:03.401882+00:00", 1_787_307_303_401),
        ("2026-08-21T12:15:03.412+02:00", 1_787_307_303_412),
        ("2026-08-21T08:15:03.412-0200", 1_787_307_303_412),
        ("2026-08-21 10:15:03.412+00", 1_787_307_303_412),
        ("2000-02-29T00:00:00Z", 951_782_400_000),
        ("1969-12-31T23:59:59.999Z", -1),
    ] as [(String, Int64)])
    func valid(_ text: String, _ expected: Int64) {
        #expect(Timestamp.millisecondsSinceEpoch(text) == expected)
    }

    @Test("invalid timestamps give nil", arguments: [
        "", "2026-08-21", "2026-08-21T10:15:03", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z",
        "2026-08-21T24:00:00Z", "2026-08-21T10:15:03.Z", "2026-08-21T10:15:03.412Zx", "2026-08-21T10:15:03+2",
        "1900-02-29T00:00:00Z", "２026-08-21T10:15:03Z",
    ])
    func invalid(_ text: String) {
        #expect(Timestamp.millisecondsSinceEpoch(text) == nil)
    }
}
