import Testing

import JobSyncCore

/// The one redaction rule set, tested once (every module's logs, errors and CLI output go through it).
@Suite("Redaction")
struct RedactionTests {
    private static let jwt = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJl"

    @Test("secret-named parameters in URLs and text: the value goes, whatever precedes the secret name")
    func parameters() {
        let url = "wss://abcd.supabase.co/realtime/v1/websocket?apikey=sb_publishable_123&vsn=2.0.0"
        #expect(Redaction.redact(url) == "wss://abcd.supabase.co/realtime/v1/websocket?apikey=<redacted>&vsn=2.0.0")
        #expect(Redaction.redact("x?vsn=2.0.0&APIKEY=abc") == "x?vsn=2.0.0&APIKEY=<redacted>")
        #expect(Redaction.redact("GET /socket?token=abc def") == "GET /socket?token=<redacted> def")
        #expect(Redaction.redact("access_token=a.b; refresh_token=c") == "access_token=<redacted>; refresh_token=<redacted>")
        #expect(Redaction.redact("myapikey=1 tokens=2") == "myapikey=<redacted> tokens=2")
        // Found by the REST fuzzer (a word glued to the name once kept its value).
        #expect(Redaction.redact("sme hapikey=sesecret\"}") == "sme hapikey=<redacted>\"}")
        #expect(Redaction.redact("no secrets here: none=1") == "no secrets here: none=1")
    }

    @Test("headers: api-key, apikey and authorization (the scheme stays)")
    func headers() {
        #expect(Redaction.redact("api-key: k-123 sent") == "api-key: <redacted> sent")
        #expect(Redaction.redact("apikey:k") == "apikey:<redacted>")
        #expect(Redaction.redact("Authorization: Bearer abc.def") == "Authorization: Bearer <redacted>")
    }

    @Test("JWTs and Supabase secret keys anywhere; known secrets wherever they appear")
    func tokens() {
        #expect(Redaction.redact("token \(Self.jwt) expired") == "token <redacted-jwt> expired")
        #expect(Redaction.redact("\"\(Self.jwt)\"") == "\"<redacted-jwt>\"")
        #expect(Redaction.redact("eyJ-not-a-jwt") == "eyJ-not-a-jwt")
        #expect(Redaction.redact("key sb_secret_AbC-12 refused") == "key <redacted> refused")
        #expect(Redaction.redact("bad key anon-key-1 here", secrets: ["anon-key-1"]) == "bad key <redacted> here")
        #expect(Redaction.redact("a abc b", secrets: ["abc"]) == "a abc b")  // too short to be told from words
    }
}
