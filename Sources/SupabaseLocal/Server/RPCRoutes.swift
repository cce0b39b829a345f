import Hummingbird
import NIOConcurrencyHelpers

/// The database functions SupabaseLocal serves as PostgREST RPC (`POST /rest/v1/rpc/<name>`): JobSync's fleet
/// claims, created by `supabase/migrations/20261202000000_jobsync_claims.sql` in schema `public`.
enum RPCFunction: String, CaseIterable {
    /// `jobsync_claim(p_consumer text, p_job_id uuid, p_holder text, p_lease_seconds integer) returns jsonb`.
    case claim = "jobsync_claim"
    /// `jobsync_ack(p_consumer text, p_job_id uuid, p_holder text) returns boolean`.
    case acknowledge = "jobsync_ack"

    /// The schema the migration creates the functions in.
    static let schema = "public"

    /// The roles the migration grants `EXECUTE` to.
    static let executingRoles: Set<String> = ["authenticated", "service_role"]

    /// Parameter names, in declaration order.
    var parameters: [String] {
        switch self {
        case .claim: ["p_consumer", "p_job_id", "p_holder", "p_lease_seconds"]
        case .acknowledge: ["p_consumer", "p_job_id", "p_holder"]
        }
    }
}

/// The named arguments of an RPC call, converted to the parameters' types as PostgREST has PostgreSQL convert them
/// (`json_to_record` on the body): a string gives its contents, any other JSON value its JSON text, `null` is SQL
/// `NULL`; text that does not parse for the type is PostgreSQL's `22P02` (realtime-protocol.md §11.2).
struct RPCArguments {
    let values: [String: LocalJSON]

    /// A `text` parameter.
    func text(_ name: String) -> String? {
        switch self.values[name] ?? .null {
        case .null: nil
        case .string(let text): text
        case let value: value.encoded()
        }
    }

    /// A `uuid` parameter, in canonical lowercase form (SupabaseLocal accepts the canonical 8-4-4-4-12 form only,
    /// as in its filters; PostgreSQL also takes braces and other hyphenations).
    func uuid(_ name: String) throws(RESTError) -> String? {
        guard let text = self.text(name) else { return nil }
        guard isUUID(text) else { throw .invalidInput(type: "uuid", value: text) }
        return text.lowercased()
    }

    /// An `integer` (`int4`) parameter: optional white space and sign around decimal digits, as PostgreSQL 15 reads
    /// it; out of range is `22003`.
    func integer(_ name: String) throws(RESTError) -> Int32? {
        guard let text = self.text(name) else { return nil }
        let isSpace: (Character) -> Bool = { " \t\n\r\u{0B}\u{0C}".contains($0) }
        var trimmed = Substring(text)
        while let first = trimmed.first, isSpace(first) { trimmed.removeFirst() }
        while let last = trimmed.last, isSpace(last) { trimmed.removeLast() }
        if let value = Int32(trimmed) { return value }
        let digits = trimmed.first == "-" || trimmed.first == "+" ? trimmed.dropFirst() : trimmed
        if !digits.isEmpty, digits.allSatisfy({ $0.isASCII && $0.isNumber }) {
            throw .postgrest(400, code: "22003", message: "value \"\(text)\" is out of range for type integer")
        }
        throw .invalidInput(type: "integer", value: text)
    }
}

extension SupabaseLocalStack {
    /// What the fleet-claims RPC answered so far (counted since the stack started).
    public var claimStatistics: ClaimStatistics { self.claimCounters.withLockedValue { $0 } }

    /// `POST /rest/v1/rpc/<function>`: PostgREST's call of a database function with named arguments, a JSON object
    /// (an empty body calls it without arguments). Same gateway and JWT checks as the table routes (§11.1), the REST
    /// faults apply, `Content-Profile` chooses the schema. The answer is the function's value as JSON: the object
    /// for `jsonb`, the bare `true`/`false` for `boolean`. realtime-protocol.md §11.2 gives the error body and the
    /// SQLSTATE rows; the RPC-specific errors follow PostgREST itself (its `errors.rst` and `SchemaCacheError.hs`):
    /// `404 PGRST202` when no function has that name and exactly those argument names, `400 PGRST102` for a body
    /// that is not JSON, `401`/`403 42501` for a role without `EXECUTE`.
    func rpc(_ request: Request, function name: String) async throws -> Response {
        do {
            return try await self.answerRPC(request, function: name)
        } catch {
            self.claimCounters.withLockedValue { $0.failedCalls += 1 }
            throw error
        }
    }

    private func answerRPC(_ request: Request, function name: String) async throws -> Response {
        try await self.applyRESTFaults()
        let role = try self.authorizeREST(request)
        let schema = try self.requestedSchema(request, write: true)
        let values = try await self.rpcArguments(request)
        guard schema == RPCFunction.schema, let function = RPCFunction(rawValue: name),
            Set(function.parameters) == Set(values.keys)
        else {
            throw Self.noFunction(schema: schema, name: name, arguments: Array(values.keys))
        }
        let arguments = RPCArguments(values: values)
        do {
            // Permission is checked when the call starts, before PostgreSQL reads any argument.
            guard RPCFunction.executingRoles.contains(role) else {
                throw DatabaseFunctionError(sqlState: "42501", message: "permission denied for function \(name)")
            }
            switch function {
            case .claim:
                let state = try await self.claims.claim(
                    consumer: arguments.text("p_consumer"), jobID: arguments.uuid("p_job_id"),
                    holder: arguments.text("p_holder"), leaseSeconds: arguments.integer("p_lease_seconds"))
                self.claimCounters.withLockedValue {
                    if state.claimed { $0.claimsGranted += 1 } else { $0.claimsRefused += 1 }
                }
                return self.json(200, state.json.encoded(style: .jsonb))
            case .acknowledge:
                let acknowledged = try await self.claims.acknowledge(
                    consumer: arguments.text("p_consumer"), jobID: arguments.uuid("p_job_id"),
                    holder: arguments.text("p_holder"))
                self.claimCounters.withLockedValue {
                    if acknowledged { $0.acksAccepted += 1 } else { $0.acksRefused += 1 }
                }
                return self.json(200, acknowledged ? "true" : "false")
            }
        } catch let error as DatabaseFunctionError {
            // 42883: the database has no such function (the migration was not applied), as PostgREST would know it.
            if error.sqlState == "42883" {
                throw Self.noFunction(schema: schema, name: name, arguments: Array(values.keys))
            }
            throw RESTError.postgrest(
                Self.httpStatus(sqlState: error.sqlState, anonymous: role == "anon"), code: error.sqlState,
                message: error.message)
        }
    }

    /// The body's named arguments. PostgREST reads an empty body as `{}`, and any JSON that is neither an object nor
    /// an array as no arguments; an array is its bulk call (one call per object), which SupabaseLocal does not serve.
    private func rpcArguments(_ request: Request) async throws -> [String: LocalJSON] {
        let buffer = try await request.body.collect(upTo: 1 << 20)
        guard buffer.readableBytes > 0 else { return [:] }
        let body: LocalJSON
        do {
            body = try LocalJSON(parsing: Array(buffer: buffer))
        } catch {
            throw RESTError.postgrest(400, code: "PGRST102", message: "Empty or invalid json")
        }
        switch body {
        case .object(let values):
            return values
        case .array:
            throw RESTError.postgrest(
                400, code: "PGRST102", message: "SupabaseLocal does not serve bulk RPC calls (a JSON array body)")
        default:
            return [:]
        }
    }

    /// PostgREST's `404 PGRST202`: no function with this name and these argument names (sorted, as PostgREST lists
    /// them). PostgREST's hint comes from a fuzzy search of the schema cache; SupabaseLocal names the parameters of
    /// the function with this name, if there is one, and gives no hint otherwise.
    static func noFunction(schema: String, name: String, arguments: [String]) -> RESTError {
        let function = schema + "." + name
        let keys = arguments.sorted()
        let list = keys.joined(separator: ", ")
        let searched = keys.isEmpty ? " without parameters" : " with parameter\(keys.count > 1 ? "s" : "") \(list)"
        let known = schema == RPCFunction.schema ? RPCFunction(rawValue: name) : nil
        return .postgrest(
            404, code: "PGRST202",
            message: "Could not find the function \(function)\(keys.isEmpty ? " without parameters" : "(\(list))")"
                + " in the schema cache",
            details: "Searched for the function \(function)\(searched) or with a single unnamed json/jsonb parameter,"
                + " but no matches were found in the schema cache.",
            hint: known.map {
                "Perhaps you meant to call the function \(function)(\($0.parameters.sorted().joined(separator: ", ")))"
            })
    }

    /// PostgREST's HTTP status for an error PostgreSQL raised (its `errors.rst` table; §11.2 quotes the usual rows):
    /// `42501` is 401 for an anonymous request and 403 otherwise.
    static func httpStatus(sqlState: String, anonymous: Bool) -> Int {
        switch sqlState {
        case "42501": return anonymous ? 401 : 403
        case "23503", "23505": return 409
        case "P0001": return 400
        default: break
        }
        switch sqlState.prefix(2) {
        case "08": return 503
        case "22", "23": return 400
        case "28": return 403
        default: return 500
        }
    }
}
