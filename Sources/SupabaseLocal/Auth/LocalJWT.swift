import Crypto
import Foundation

/// Why a JWT was not accepted.
public enum JWTFailure: Error, Sendable, Hashable {
    /// No token at all.
    case missing
    /// Not three base64url parts with JSON header and claims.
    case malformed
    /// The HS256 signature does not match the local secret (or the algorithm is not HS256).
    case badSignature
    /// `role` or `exp` is missing.
    case missingClaims
    /// `exp` is zero or negative.
    case invalidExpiration
    /// `exp` is in the past by this many whole seconds.
    case expired(secondsAgo: Int64)
}

/// The claims of a verified token.
public struct JWTClaims: Sendable, Hashable {
    /// All claims as sent.
    public var raw: [String: LocalJSON]
    /// The `role` claim.
    public var role: String
    /// The `exp` claim (seconds since the epoch).
    public var expiresAt: Int64
    /// The `iat` claim, if present.
    public var issuedAt: Int64?
}

/// Signs and verifies HS256 JWTs with a local secret, the way Supabase's project JWT secret works.
public struct LocalJWTSigner: Sendable {
    private let secret: [UInt8]

    /// Creates a signer for the given secret (at least 32 bytes recommended).
    public init(secret: String) {
        self.secret = Array(secret.utf8)
    }

    private var key: SymmetricKey { SymmetricKey(data: self.secret) }

    /// Signs a claims object, producing `header.claims.signature`.
    public func sign(claims: [String: LocalJSON]) -> String {
        let header = LocalJSON.object(["alg": .string("HS256"), "typ": .string("JWT")]).encoded()
        let body = LocalJSON.object(claims).encoded()
        let signingInput = Base64URL.encode(Array(header.utf8)) + "." + Base64URL.encode(Array(body.utf8))
        let mac = HMAC<SHA256>.authenticationCode(for: Array(signingInput.utf8), using: self.key)
        return signingInput + "." + Base64URL.encode(Array(mac))
    }

    /// Mints a token with `role`, `iss` `supabase-local`, `iat` and `exp` (`now + lifetime`; negative → expired).
    public func mint(
        role: String,
        now: LocalTimestamp,
        lifetime: Duration,
        extraClaims: [String: LocalJSON] = [:]
    ) -> String {
        let nowSeconds = now.microsecondsSinceEpoch / 1_000_000
        var claims = extraClaims
        claims["role"] = .string(role)
        claims["iss"] = .string("supabase-local")
        claims["iat"] = .int(Int(nowSeconds))
        claims["exp"] = .int(Int(nowSeconds + lifetime.components.seconds))
        return self.sign(claims: claims)
    }

    /// Verifies a token: structure, signature, `role` and `exp` present, `exp` positive and not past.
    public func verify(_ token: String?, now: LocalTimestamp) -> Result<JWTClaims, JWTFailure> {
        guard let token, !token.isEmpty else { return .failure(.missing) }
        let parts = token.split(separator: ".", omittingEmptySubsequences: false)
        guard parts.count == 3,
            let headerBytes = Base64URL.decode(String(parts[0])),
            let claimBytes = Base64URL.decode(String(parts[1])),
            let signature = Base64URL.decode(String(parts[2])),
            let header = try? LocalJSON(parsing: headerBytes),
            let claims = (try? LocalJSON(parsing: claimBytes))?.objectValue
        else { return .failure(.malformed) }
        guard header["alg"]?.stringValue == "HS256" else { return .failure(.badSignature) }
        let signingInput = Array("\(parts[0]).\(parts[1])".utf8)
        guard HMAC<SHA256>.isValidAuthenticationCode(signature, authenticating: signingInput, using: self.key) else {
            return .failure(.badSignature)
        }
        guard let role = claims["role"]?.stringValue, let expValue = claims["exp"], case .number(let expText) = expValue
        else { return .failure(.missingClaims) }
        guard let exp = Int64(expText) ?? Double(expText).map({ Int64($0) }) else { return .failure(.missingClaims) }
        guard exp > 0 else { return .failure(.invalidExpiration) }
        let nowSeconds = now.microsecondsSinceEpoch / 1_000_000
        if exp <= nowSeconds { return .failure(.expired(secondsAgo: nowSeconds - exp)) }
        var issuedAt: Int64?
        if case .number(let iat) = claims["iat"] ?? .null { issuedAt = Int64(iat) }
        return .success(JWTClaims(raw: claims, role: role, expiresAt: exp, issuedAt: issuedAt))
    }
}

/// Base64url without padding (RFC 7515 §2).
enum Base64URL {
    static func encode(_ bytes: [UInt8]) -> String {
        Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-")
            .replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
    }

    static func decode(_ text: String) -> [UInt8]? {
        guard text.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-" || $0 == "_") }) else {
            return nil
        }
        var base64 = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/")
        while base64.count % 4 != 0 { base64 += "=" }
        return Data(base64Encoded: base64).map { Array($0) }
    }
}

/// The texts Supabase uses for JWT failures in each place (realtime-protocol.md §1.3, §4.4, §8.1, §11.2).
enum JWTTexts {
    /// Handshake refusal body text (§1.3); nil when the token is fine.
    static func handshake(_ failure: JWTFailure) -> String {
        switch failure {
        case .missing: return "API key is missing"
        case .malformed: return "The token provided is not a valid JWT"
        case .badSignature: return "Failed to validate JWT signature"
        case .missingClaims: return "Fields `role` and `exp` are required in JWT"
        case .invalidExpiration: return "Token expiration time is invalid"
        case .expired: return "Token has expired"
        }
    }

    /// Join refusal reason (§4.4).
    static func joinReason(_ failure: JWTFailure) -> String {
        switch failure {
        case .missing, .malformed: return "MalformedJWT: The token provided is not a valid JWT"
        case .badSignature: return "JwtSignatureError: Failed to validate JWT signature"
        case .missingClaims: return "InvalidJWTToken: Fields `role` and `exp` are required in JWT"
        case .invalidExpiration: return "InvalidJWTToken: Token expiration time is invalid"
        case .expired(let seconds): return "InvalidJWTToken: Token has expired \(seconds) seconds ago"
        }
    }

    /// `system` error message after an `access_token` push or a periodic check (§8.1, §8.2).
    static func channelMessage(_ failure: JWTFailure) -> String {
        switch failure {
        case .missing, .malformed: return "The token provided is not a valid JWT"
        case .badSignature: return ":signature_error"
        case .missingClaims: return "Fields `role` and `exp` are required in JWT"
        case .invalidExpiration: return "Token expiration time is invalid"
        case .expired(let seconds): return "Token has expired \(seconds) seconds ago"
        }
    }
}
