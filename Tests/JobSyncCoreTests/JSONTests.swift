import Testing

import JobSyncCore

@Suite("JSON: RFC 8259 parser and serializer")
struct JSONTests {
    @Test("scalars and containers parse")
    func basics() throws {
        #expect(try JSONValue.parse("null") == .null)
        #expect(try JSONValue.parse(" true ") == .bool(true))
        #expect(try JSONValue.parse("false") == .bool(false))
        #expect(try JSONValue.parse("\"x\"") == .string("x"))
        #expect(try JSONValue.parse("[]") == .array([]))
        #expect(try JSONValue.parse("{}") == .object([:]))
        let expected: JSONValue = .array([.number(JSONNumber(1)), .object(["a": .array([.null])])])
        #expect(try JSONValue.parse(" [1, {\"a\" : [null]}]\r\n\t") == expected)
    }

    @Test("numbers are kept as literal text", arguments: [
        "0", "-0", "12", "-12", "1.5", "1e10", "1E+10", "1e-10", "-0.0e0", "9223372036854775808",
        "1e999999", "123456789012345678901234567890.123456789",
    ])
    func numberLiteral(_ text: String) throws {
        #expect(try JSONValue.parse(text) == .number(JSONNumber(text: text)))
        #expect(try JSONValue.parse(text).serialized() == text)
    }

    @Test("§5.2 int8 beyond 2^53 and a 400-digit integer survive exactly")
    func hugeIntegers() throws {
        let int8 = "9007199254740993"
        #expect(try JSONValue.parse("[\(int8)]").arrayValue?.first?.numberValue?.int64 == 9_007_199_254_740_993)
        let digits = String(repeating: "1234567890", count: 40)
        let value = try JSONValue.parse("{\"n\":\(digits)}")
        #expect(value["n"]?.numberValue?.text == digits)
        #expect(value["n"]?.numberValue?.int64 == nil)
        #expect(value.serialized() == "{\"n\":\(digits)}")
    }

    @Test("1e999999 parses (kept as text) and its Double is infinite, not a crash")
    func hugeExponent() throws {
        let number = try #require(try JSONValue.parse("1e999999").numberValue)
        #expect(number.text == "1e999999")
        #expect(number.double == .infinity)
    }

    @Test("invalid number grammar is rejected", arguments: [
        "01", "-", "+1", "1.", ".5", "1e", "1e+", "0x10", "NaN", "Infinity", "-Infinity", "1.e5", "--1", "1_000",
    ])
    func invalidNumber(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
    }

    @Test("escapes decode, including surrogate pairs")
    func escapes() throws {
        #expect(try JSONValue.parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{08}\u{0C}\n\r\t"))
        #expect(try JSONValue.parse(#""\u00e9\u20AC""#) == .string("é€"))
        #expect(try JSONValue.parse(#""\ud83d\ude00""#) == .string("😀"))
        #expect(try JSONValue.parse(#""x\u0000y""#) == .string("x\u{0}y"))
        #expect(try JSONValue.parse("\"héllo 😀\"") == .string("héllo 😀"))
    }

    @Test("lone and reversed surrogates are errors", arguments: [
        #""\ud83d""#, #""\ud83dx""#, #""\ude00""#, #""\ude00\ud83d""#, #""\ud83d\u0041""#, #""\ud83d\""#,
    ])
    func loneSurrogates(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
    }

    @Test("bad escapes and raw control characters are errors", arguments: [
        #""\x""#, #""\u12""#, #""\u12G4""#, "\"a\nb\"", "\"a\u{01}\"", #""\"#, #"""#, #""abc"#,
    ])
    func badStrings(_ text: String) {
        #expect(throws: JSONError.self) { try JSONValue.parse(text) }
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
        #expect(throws: JSONError.self) { try JSONValue.parse(bytes) }
    }

    @Test("structural errors", arguments: [
        "", "   ", "[", "]", "{", "[1,]", "[,1]", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "{a:1}", "[1 2]",
        "{\"a\":1 \"b\":2}", "nul", "tru", "falsey", "[] []", "'x'", "[1]x", "\u{FEFF}[]",
    ])
    func structuralErrors(_ text: String) throws {
        let error = try #require(throws: JSONError.self) { try JSONValue.parse(text) }
        #expect(error.code == .malformedJSON)
    }

    @Test("nesting is limited: 512 parses, 513 is a typed error, 100 000 does not overflow the stack")
    func nestingDepth() throws {
        let ok = String(repeating: "[", count: 512) + String(repeating: "]", count: 512)
        #expect(throws: Never.self) { try JSONValue.parse(ok) }
        let tooDeep = String(repeating: "[", count: 513) + String(repeating: "]", count: 513)
        let error = try #require(throws: JSONError.self) { try JSONValue.parse(tooDeep) }
        #expect(error.code == .nestingTooDeep)
        let huge = String(repeating: "{\"a\":", count: 100_000)
        let hugeError = try #require(throws: JSONError.self) { try JSONValue.parse(huge) }
        #expect(hugeError.code == .nestingTooDeep)
    }

    @Test("object members keep wire order and duplicates; lookup returns the first")
    func memberOrder() throws {
        let object = try #require(try JSONValue.parse(#"{"b":1,"a":2,"b":3}"#).objectValue)
        #expect(object.keys == ["b", "a", "b"])
        #expect(object["b"] == .number(JSONNumber(1)))
        #expect(JSONValue.object(object).serialized() == #"{"b":1,"a":2,"b":3}"#)
    }

    @Test("serializer escapes control characters and keeps non-ASCII as UTF-8")
    func serializerEscapes() {
        #expect(JSONValue.string("\u{0}\u{1F}\"\\/é").serialized() == #""\u0000\u001f\"\\/é""#)
    }

    @Test("serializer never emits an invalid number literal")
    func serializerInvalidNumber() {
        #expect(JSONValue.array([.number(JSONNumber(text: "1,\"x\":2"))]).serialized() == "[null]")
        #expect(JSONValue.number(JSONNumber(text: "")).serialized() == "null")
    }

    @Test("parse from a non-contiguous collection matches parse from bytes")
    func nonContiguousInput() throws {
        let text = #"{"k":[1,"v",true]}"#
        #expect(try JSONValue.parse(text.utf8.lazy.map { $0 }) == JSONValue.parse(text))
    }

    @Test("error messages never echo the input")
    func errorMessageIsSafe() throws {
        let secret = "eyJhbGciOiJIUzI1NiJ9.secret"
        let error = try #require(throws: JSONError.self) { try JSONValue.parse("{\"t\":\"\(secret)\" x}") }
        #expect(!error.description.contains("eyJ"))
        #expect(!error.message.contains("secret"))
    }

    @Test("error messages give the byte offset where parsing stopped")
    func errorOffset() throws {
        let error = try #require(throws: JSONError.self) { try JSONValue.parse("[1, x]") }
        #expect(error.code == .malformedJSON)
        #expect(error.byteOffset == 4)
        #expect(error.message == "unexpected character at byte offset 4")
        #expect(error.description == "malformedJSON: unexpected character at byte offset 4")
    }

    @Test("int8 beyond 2^53 and numerics in an object are kept as text and survive a round trip")
    func exactNumbersRoundTrip() throws {
        let text = #"{"id":9007199254740993,"c":0.1234567890123456789,"s":"a\"\u00e9\ud83d\ude00\n"}"#
        let value = try JSONValue.parse(text)
        #expect(value["id"]?.numberValue?.int64 == 9_007_199_254_740_993)
        #expect(value["c"] == .number(JSONNumber(text: "0.1234567890123456789")))
        #expect(value["s"] == .string("a\"é😀\n"))
        #expect(try JSONValue.parse(value.serialized()) == value)
    }

    @Test("serializer escapes DEL, U+2028 and U+2029 (terminals, logs, JavaScript) and copies other text")
    func serializerEscapesSeparators() throws {
        let text = "a\u{7F}b\u{2028}c\u{2029}d€—\u{2027}"
        let written = JSONValue.string(text).serialized()
        #expect(written == #""a\u007fb\u2028c\u2029d€—\#u{2027}""#)
        #expect(try JSONValue.parse(written) == .string(text))
    }

    @Test("object equality ignores the order of different keys; repeated keys compare in order")
    func objectEquality() throws {
        let rest = try JSONValue.parse(#"{"id":"a","status":"completed","result":{"x":1,"y":[1,2]}}"#)
        let realtime = try JSONValue.parse(#"{"result":{"y":[1,2],"x":1},"status":"completed","id":"a"}"#)
        #expect(rest == realtime)
        #expect(rest.hashValue == realtime.hashValue)
        #expect(Set([rest, realtime]).count == 1)
        #expect(try JSONValue.parse(#"{"a":[1,2]}"#) != JSONValue.parse(#"{"a":[2,1]}"#))
        #expect(try JSONValue.parse(#"{"a":1,"a":2}"#) != JSONValue.parse(#"{"a":2,"a":1}"#))
        #expect(try JSONValue.parse(#"{"a":1,"b":2,"a":3}"#) == JSONValue.parse(#"{"b":2,"a":1,"a":3}"#))
        #expect(try JSONValue.parse(#"{"a":1}"#) != JSONValue.parse(#"{"a":1,"b":2}"#))
        // The wire order is still what is stored and written.
        #expect(realtime.objectValue?.keys == ["result", "status", "id"])
    }

    @Test("numbers from Swift values: integers, finite doubles; infinities and NaN are not numbers")
    func numbersFromSwift() {
        #expect(JSONNumber(-42).text == "-42")
        #expect(JSONNumber(0.5)?.text == "0.5")
        #expect(JSONNumber(1e-7).map { JSONNumber(text: $0.text).isValid } == true)
        #expect(JSONNumber(Double.nan) == nil)
        #expect(JSONNumber(-Double.infinity) == nil)
        #expect(!JSONNumber(text: "1.").isValid)
    }
}
