import NIOConcurrencyHelpers

/// The state of one fleet claim after a `jobsync_claim` call: the function's `jsonb` answer
/// (`supabase/migrations/20261202000000_jobsync_claims.sql`).
struct ClaimState: Sendable, Hashable {
    /// Whether this call took or renewed the claim.
    var claimed: Bool
    /// Who holds the claim now (the caller when `claimed`).
    var holder: String
    /// When the holder's lease runs out, on the database's clock.
    var leaseUntil: LocalTimestamp
    /// Whether the claim is acknowledged (then nobody can take it again).
    var acked: Bool

    /// The answer as PostgreSQL prints the function's `jsonb`.
    var json: LocalJSON {
        .object([
            "claimed": .bool(self.claimed), "holder": .string(self.holder),
            "lease_until": .string(self.leaseUntil.postgresJSONText), "acked": .bool(self.acked),
        ])
    }

    /// Reads the function's `jsonb` answer; nil when it does not have that shape.
    init?(json: LocalJSON) {
        guard case .bool(let claimed) = json["claimed"] ?? .null, case .bool(let acked) = json["acked"] ?? .null,
            let holder = json["holder"]?.stringValue,
            let leaseUntil = json["lease_until"]?.stringValue.flatMap(LocalTimestamp.init(parsing:))
        else { return nil }
        self.init(claimed: claimed, holder: holder, leaseUntil: leaseUntil, acked: acked)
    }

    init(claimed: Bool, holder: String, leaseUntil: LocalTimestamp, acked: Bool) {
        self.claimed = claimed
        self.holder = holder
        self.leaseUntil = leaseUntil
        self.acked = acked
    }
}

/// An error raised by PostgreSQL while running a claims function, relayed as PostgREST relays it: the SQLSTATE as
/// `code` and the primary message (realtime-protocol.md §11.2: "`code` is a SQLSTATE when the error comes from
/// Postgres").
struct DatabaseFunctionError: Error, Hashable {
    /// The SQLSTATE, e.g. `22023`.
    var sqlState: String
    /// PostgreSQL's primary message.
    var message: String
}

/// Where fleet claims live: the `jobsync_claims` table and its functions. Arguments arrive typed as PostgREST
/// passes them (nil is SQL `NULL`; job ids are canonical lowercase UUIDs); the store validates them as the SQL
/// functions do and throws ``DatabaseFunctionError`` for what they reject.
protocol ClaimsStore: Sendable {
    /// `jobsync_claim(p_consumer, p_job_id, p_holder, p_lease_seconds)`.
    func claim(consumer: String?, jobID: String?, holder: String?, leaseSeconds: Int32?) async throws -> ClaimState

    /// `jobsync_ack(p_consumer, p_job_id, p_holder)`.
    func acknowledge(consumer: String?, jobID: String?, holder: String?) async throws -> Bool
}

/// The argument checks of the SQL functions, with their exact messages (SQLSTATE `22023`), for stores that are not
/// the SQL itself. The PostgreSQL tier runs the same tests against both, so the two cannot drift apart unseen.
enum ClaimArgumentRules {
    static let maximumLeaseSeconds: Int32 = 86_400

    /// The checks of both functions, in their order; returns the arguments without their optionality.
    static func checked(
        consumer: String?, jobID: String?, holder: String?
    ) throws(DatabaseFunctionError) -> (consumer: String, jobID: String, holder: String) {
        guard let consumer, !consumer.isEmpty else { throw Self.invalid("p_consumer must be a non-empty text") }
        guard let jobID else { throw Self.invalid("p_job_id must not be null") }
        guard let holder, !holder.isEmpty else { throw Self.invalid("p_holder must be a non-empty text") }
        return (consumer, jobID, holder)
    }

    /// `jobsync_claim`'s last check.
    static func checked(leaseSeconds: Int32?) throws(DatabaseFunctionError) -> Int32 {
        guard let leaseSeconds, (1...Self.maximumLeaseSeconds).contains(leaseSeconds) else {
            throw Self.invalid("p_lease_seconds must be between 1 and 86400")
        }
        return leaseSeconds
    }

    private static func invalid(_ message: String) -> DatabaseFunctionError {
        DatabaseFunctionError(sqlState: "22023", message: message)
    }
}

/// Fleet claims in memory, with the SQL functions' semantics; leases are measured on the stack's wall clock, so a
/// test with a controllable ``WallClock`` expires a lease without waiting.
final class InMemoryClaims: ClaimsStore {
    private struct Key: Hashable {
        var consumer: String
        var jobID: String
    }

    private struct Row {
        var holder: String
        var leaseUntil: LocalTimestamp
        var acked: Bool
    }

    private let clock: WallClock
    private let rows = NIOLockedValueBox([Key: Row]())

    /// Creates an empty claims table whose "now" is `clock`.
    init(clock: WallClock) {
        self.clock = clock
    }

    func claim(
        consumer: String?, jobID: String?, holder: String?, leaseSeconds: Int32?
    ) throws(DatabaseFunctionError) -> ClaimState {
        let (consumer, jobID, holder) = try ClaimArgumentRules.checked(consumer: consumer, jobID: jobID, holder: holder)
        let leaseSeconds = try ClaimArgumentRules.checked(leaseSeconds: leaseSeconds)
        let now = self.clock.now()
        return self.rows.withLockedValue { rows in
            let key = Key(consumer: consumer, jobID: jobID)
            if let row = rows[key], row.acked || (row.holder != holder && row.leaseUntil > now) {
                return ClaimState(claimed: false, holder: row.holder, leaseUntil: row.leaseUntil, acked: row.acked)
            }
            let row = Row(holder: holder, leaseUntil: now.advanced(by: .seconds(leaseSeconds)), acked: false)
            rows[key] = row
            return ClaimState(claimed: true, holder: holder, leaseUntil: row.leaseUntil, acked: false)
        }
    }

    func acknowledge(consumer: String?, jobID: String?, holder: String?) throws(DatabaseFunctionError) -> Bool {
        let (consumer, jobID, holder) = try ClaimArgumentRules.checked(consumer: consumer, jobID: jobID, holder: holder)
        return self.rows.withLockedValue { rows in
            let key = Key(consumer: consumer, jobID: jobID)
            guard rows[key]?.holder == holder else { return false }
            rows[key]?.acked = true
            return true
        }
    }
}

/// What a stack's fleet-claims RPC answered, counted since it started (``SupabaseLocalStack/claimStatistics``), so
/// a test can prove that its claims and acknowledgements reached the server.
public struct ClaimStatistics: Sendable, Hashable {
    /// `jobsync_claim` calls answered `"claimed": true` (new claims, renewals and takeovers).
    public var claimsGranted = 0
    /// `jobsync_claim` calls answered `"claimed": false`.
    public var claimsRefused = 0
    /// `jobsync_ack` calls answered `true`.
    public var acksAccepted = 0
    /// `jobsync_ack` calls answered `false`.
    public var acksRefused = 0
    /// RPC calls answered with an error (unknown function, bad arguments, no privilege, failures).
    public var failedCalls = 0

    /// Creates empty statistics.
    public init() {}
}
