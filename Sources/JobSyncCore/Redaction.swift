// JobSyncCore: what every JobSync module shares and nothing else: the one rule set for redacting secrets, and the one
// JSON value with its parser and serializer (`JSONValue`).

/// Removes secrets from text before it is logged, printed or put in an error. One rule set for every module:
/// - each secret the caller knows (API key, access token) wherever it appears, as `<redacted>`;
/// - the value of a secret-named parameter or header (a name ending in `apikey`, `api_key`, `api-key`,
///   `access_token`, `refresh_token`, `token`, `jwt` or `authorization`, any case, written `name=value` or
///   `name: value`) as `<redacted>`: `x-apikey=…` and `myapikey=…` count too (better one redaction too many);
/// - anything that looks like a JWT (three base64url parts, the first starting `eyJ`) as `<redacted-jwt>`;
/// - a Supabase secret key (`sb_secret_…`) as `<redacted>`.
package enum Redaction {
    private static let parameterNames: Set<String> = [
        "apikey", "api_key", "api-key", "access_token", "refresh_token", "token", "jwt", "authorization",
    ]

    /// `text` with every secret removed; `secrets` shorter than 4 characters are ignored (they would match words).
    package static func redact(_ text: String, secrets: [String] = []) -> String {
        var result = text
        for secret in secrets where secret.count >= 4 {
            result = result.replacingEvery(secret, with: "<redacted>")
        }
        return Self.redactTokens(Self.redactParameters(result))
    }

    private static func isNameCharacter(_ character: Character) -> Bool {
        character.isASCII && (character.isLetter || character.isNumber || character == "_" || character == "-")
    }

    private static func isTokenCharacter(_ character: Character) -> Bool {
        Self.isNameCharacter(character) || character == "."
    }

    private static func endsValue(_ character: Character) -> Bool {
        character.isWhitespace || "&#\"',;)]}>".contains(character)
    }

    /// `name=value` and `name: value` for the secret names.
    private static func redactParameters(_ text: String) -> String {
        var output = ""
        var rest = Substring(text)
        while let separator = rest.firstIndex(where: { $0 == "=" || $0 == ":" }) {
            let before = rest[..<separator]
            let nameStart = before.lastIndex(where: { !Self.isNameCharacter($0) }).map(before.index(after:))
                ?? before.startIndex
            let name = before[nameStart...].lowercased()
            output += rest[...separator]
            rest = rest[rest.index(after: separator)...]
            guard let secretName = Self.parameterNames.first(where: { name.hasSuffix($0) }) else { continue }
            // A header value may follow spaces and a scheme (`authorization: Bearer …`).
            let spaces = rest.prefix(while: { $0 == " " })
            output += spaces
            rest = rest[spaces.endIndex...]
            if secretName == "authorization", rest.lowercased().hasPrefix("bearer ") {
                output += rest.prefix(7)
                rest = rest.dropFirst(7)
            }
            let end = rest.firstIndex(where: Self.endsValue) ?? rest.endIndex
            if end != rest.startIndex { output += "<redacted>" }
            rest = rest[end...]
        }
        return output + rest
    }

    /// JWTs and Supabase secret keys, wherever they stand.
    private static func redactTokens(_ text: String) -> String {
        guard text.contains("eyJ") || text.contains("sb_secret_") else { return text }
        var output = ""
        var rest = Substring(text)
        while let start = rest.firstIndex(where: Self.isTokenCharacter) {
            output += rest[..<start]
            let tail = rest[start...]
            let end = tail.firstIndex(where: { !Self.isTokenCharacter($0) }) ?? tail.endIndex
            let token = tail[..<end]
            if token.hasPrefix("eyJ"), token.split(separator: ".", omittingEmptySubsequences: false).count >= 3 {
                output += "<redacted-jwt>"
            } else if token.hasPrefix("sb_secret_") {
                output += "<redacted>"
            } else {
                output += token
            }
            rest = tail[end...]
        }
        return output + rest
    }
}

extension String {
    /// Every occurrence of `target` replaced (without Foundation).
    fileprivate func replacingEvery(_ target: String, with replacement: String) -> String {
        guard !target.isEmpty else { return self }
        var output = ""
        var rest = Substring(self)
        while let range = rest.firstRange(of: target) {
            output += rest[..<range.lowerBound]
            output += replacement
            rest = rest[range.upperBound...]
        }
        return output + rest
    }
}
