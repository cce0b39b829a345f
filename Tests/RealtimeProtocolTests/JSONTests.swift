import Testing

@testable import RealtimeProtocol

@Suite("JSON: RFC 8259 parser and serializer")
struct JSONTests {
    @Test("scalars and containers parse")
    func basics() throws {
        #expect(try JSON.parse("null") == .null)
        #expect(try JSON.parse(" true ") == .bool(true))
        #expect(try JSON.parse("false") == .bool(false))
        #expect(try JSON.parse("\"x\"") == .string("x"))
        #expect(try JSON.parse("[]") == .array([]))
        #expect(try JSON.parse("{}") == .object([:]))
        let expected: JSONValue = .array([.number(JSONNumber(1)), .object(["a": .array([.null])])])
        #expect(try JSON.parse(" [1, {\"a\" : [null]}]\r\n\t") == expected)
    }

    @Test("numbers are kept as literal text", arguments: [
        "0", "-0", "12", "-12", "1.5", "1e10", "1E+10", "1e-10", "-0.0e0", "9223372036854775808",
        "1e999999", "123456789012345678901234567890.123456789",
    ])
    func numberLiteral(_ text: String) throws {
        #expect(try JSON.parse(text) == .number(JSONNumber(text: text)))
        #expect(JSON.serialize(try JSON.parse(text)) == text)
    }

    @Test("§5.2 int8 beyond 2^53 and a 400-digit integer survive exactly")
    func hugeIntegers() throws {
        let int8 = "9007199254740993"
        #expect(try JSON.parse("[\(int8)]").arrayValue?.first?.numberValue?.int64 == 9_007_199_254_740_993)
        let digits = String(repeating: "1234567890", count: 40)
        let value = try JSON.parse("{\"n\":\(digits)}")
        #expect(value["n"]?.numberValue?.text == digits)
        #expect(value["n"]?.numberValue?.int64 == nil)
        #expect(JSON.serialize(value) == "{\"n\":\(digits)}")
    }

    @Test("1e999999 parses (kept as text) and its Double is infinite, not a crash")
    func hugeExponent() throws {
        let number = try #require(try JSON.parse("1e999999").numberValue)
        #expect(number.text == "1e999999")
        #expect(number.double == .infinity)
    }

    @Test("invalid number grammar is rejected", arguments: [
        "01", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity", "1.e5", "--1", "1_000",
    ])
    func invalidNumber(_ text: String) {
        #expect(throws: RealtimeProtocolError.self) { try JSON.parse(text) }
    }

    @Test("escapes decode, including surrogate pairs")
    func escapes() throws {
        #expect(try JSON.parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{08}\u{0C}\n\r\t"))
        #expect(try JSON.parse(#""\u00e9\u20AC""#) == .string("é€"))
        #expect(try JSON.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSON.parse(#""x\u0000y""#) == .string("x\u{0}y"))
        #expect(try JSON.parse("\"héllo 😀\"") == .string("héllo 😀"))
    }

    @Test("lone and reversed surrogates are errors", arguments: [
        #""\ud83d""#, #""\ud83dx""#, #""\ude00""#, #""\ude00\ud83d""#, #""\ud83d\u0041""#, #""\ud83d\""#,
    ])
    func loneSurrogates(_ text: String) {
        #expect(throws: RealtimeProtocolError.self) { try JSON.parse(text) }
    }

    @Test("bad escapes and raw control characters are errors", arguments: [
        #""\x""#, #""\u12""#, #""\u12G4""#, "\"a\nb\"", "\"a\u{01}\"", #""\"#, #"""#, #""abc"#,
    ])
    func badStrings(_ text: String) {
        #expect(throws: RealtimeProtocolError.self) { try JSON.parse(text) }
    }

    @Test("invalid or truncated UTF-8 in strings is an error", arguments: [
        [0x22, 0xC3, 0x22] as [UInt8],  // truncated 2-byte sequence
        [0x22, 0xE2, 0x82, 0x22],  // truncated 3-byte sequence
        [0x22, 0xF0, 0x9F, 0x98, 0x22],  // truncated 4-byte sequence
        [0x22, 0xFF, 0x22],  // invalid byte
        [0x22, 0xC0, 0xAF, 0x22],  // overlong
        [0x22, 0xED, 0xA0, 0x80, 0x22],  // encoded surrogate
        [0x22, 0x5C, 0x6E, 0xC3, 0x22],  // escape then truncated sequence (slow path)
        [0x22, 0xC3],  // unterminated and truncated
    ])
    func invalidUTF8(_ bytes: [UInt8]) {
        #expect(throws: RealtimeProtocolError.self) { try JSON.parse(bytes) }
    }

    @Test("structural errors", arguments: [
        "", "   ", "[", "]", "{", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "[1 2]",
        "{\"a\":1 \"b\":2}", "nul", "tru", "falsey", "[] []", "'x'", "[1]x", "\u{FEFF}[]",
    ])
    func structuralErrors(_ text: String) throws {
        let error = try #require(throws: RealtimeProtocolError.self) { try JSON.parse(text) }
        #expect(error.code == .malformedJSON)
    }

    @Test("nesting is limited: 512 parses, 513 is a typed error, 100 000 does not overflow the stack")
    func nestingDepth() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(throws: Never.self) { try JSON.parse(ok) }
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        let error = try #require(throws: RealtimeProtocolError.self) { try JSON.parse(tooDeep) }
        #expect(error.code == .nestingTooDeep)
        let huge = String(repeating: "{\"a\":", count: 100_000)
        let hugeError = try #require(throws: RealtimeProtocolError.self) { try JSON.parse(huge) }
        #expect(hugeError.code == .nestingTooDeep)
    }

    @Test("object members keep wire order and duplicates; lookup returns the first")
    func memberOrder() throws {
        let object = try #require(try JSON.parse(#"{"b":1,"a":2,"b":3}"#).objectValue)
        #expect(object.keys == ["b", "a", "b"])
        #expect(object["b"] == .number(JSONNumber(1)))
        #expect(JSON.serialize(.object(object)) == #"{"b":1,"a":2,"b":3}"#)
    }

    @Test("serializer escapes control characters and keeps non-ASCII as UTF-8")
    func serializerEscapes() {
        #expect(JSON.serialize(.string("\u{0}\u{1F}\"\\/é")) == #""\u0000\u001f\"\\/é""#)
    }

    @Test("serializer never emits an invalid number literal")
    func serializerInvalidNumber() {
        #expect(JSON.serialize(.array([.number(JSONNumber(text: "1,\"x\":2"))])) == "[null]")
        #expect(JSON.serialize(.number(JSONNumber(text: ""))) == "null")
    }

    @Test("parse from a non-contiguous collection matches parse from bytes")
    func nonContiguousInput() throws {
        let text = #"{"k":[1,"v",true]}"#
        #expect(try JSON.parse(text.utf8.lazy.map { $0 }) == JSON.parse(text))
    }

    @Test("error messages never echo the input")
    func errorMessageIsSafe() throws {
        let secret = "eyJhbGciOiJIUzI1NiJ9.secret"
        let error = try #require(throws: RealtimeProtocolError.self) { try JSON.parse("{\"t\":\"\(secret)\" x}") }
        #expect(!error.description.contains("eyJ"))
        #expect(!error.message.contains("secret"))
    }
}
