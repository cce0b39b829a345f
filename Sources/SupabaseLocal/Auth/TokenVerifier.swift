/// JWT verification as both REST and Realtime apply it, including the "expire tokens" fault.
struct TokenVerifier: Sendable {
    var signer: LocalJWTSigner
    /// Tokens exempt from revocation (the project's anon and service keys).
    var projectKeys: Set<String>
    /// When set, every other token issued at or before this second counts as expired since then.
    var revokedAtOrBefore: Int64?

    func verify(_ token: String?, now: LocalTimestamp) -> Result<JWTClaims, JWTFailure> {
        let result = self.signer.verify(token, now: now)
        guard case .success(let claims) = result, let cutoff = self.revokedAtOrBefore,
            let token, !self.projectKeys.contains(token)
        else { return result }
        if (claims.issuedAt ?? 0) <= cutoff {
            let nowSeconds = now.microsecondsSinceEpoch / 1_000_000
            return .failure(.expired(secondsAgo: max(0, nowSeconds - cutoff)))
        }
        return result
    }
}
