/// A strict RFC 8259 JSON parser and a compact serializer for ``JSONValue``.
///
/// The parser works on UTF-8 bytes without Foundation. It keeps numbers as their literal text (after checking
/// the number grammar), keeps object members in wire order (duplicates included; lookup returns the first),
/// validates UTF-8 inside strings, decodes every escape including surrogate pairs (a lone surrogate is an
/// error), and refuses input nested deeper than a limit. Errors are `RealtimeProtocolError` values whose
/// message gives a byte offset but never echoes the input.
public enum JSON {
    /// The default maximum nesting depth of arrays and objects.
    public static let defaultMaxDepth = 512

    /// Parses one JSON text (surrounding whitespace allowed, nothing else).
    /// - Parameters:
    ///   - bytes: UTF-8 encoded JSON.
    ///   - maxDepth: The deepest allowed nesting of arrays and objects.
    /// - Throws: `RealtimeProtocolError` with code `.malformedJSON` or `.nestingTooDeep`.
    public static func parse(
        _ bytes: some Collection<UInt8>, maxDepth: Int = JSON.defaultMaxDepth
    ) throws(RealtimeProtocolError) -> JSONValue {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Self.parseResult(buffer, maxDepth: maxDepth)
        }
        if let result {
            return try result.get()
        }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { Self.parseResult($0, maxDepth: maxDepth) }.get()
    }

    /// Parses one JSON text given as a Swift string.
    /// - Throws: `RealtimeProtocolError` with code `.malformedJSON` or `.nestingTooDeep`.
    public static func parse(_ text: String, maxDepth: Int = JSON.defaultMaxDepth) throws(RealtimeProtocolError)
        -> JSONValue
    {
        var text = text
        return try text.withUTF8 { Self.parseResult($0, maxDepth: maxDepth) }.get()
    }

    private static func parseResult(
        _ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int
    ) -> Result<JSONValue, RealtimeProtocolError> {
        var parser = JSONParser(buffer, maxDepth: maxDepth)
        do throws(RealtimeProtocolError) {
            return .success(try parser.parseDocument())
        } catch {
            return .failure(error)
        }
    }

    /// Serializes compactly (no whitespace), members in stored order, strings escaped per RFC 8259
    /// (`"`, `\`, and control characters; other characters as UTF-8). A ``JSONNumber`` whose text is not a valid
    /// JSON number is written as `null`, so the output is always valid JSON.
    public static func serialize(_ value: JSONValue) -> String {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        Self.write(value, into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Serializes into a byte buffer (see ``serialize(_:)``).
    public static func serialize(_ value: JSONValue, into output: inout [UInt8]) {
        Self.write(value, into: &output)
    }

    /// Whether `text` is a valid RFC 8259 number literal.
    public static func isValidNumber(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { buffer in
            let parser = JSONParser(buffer, maxDepth: 1)
            guard let end = parser.scanNumber(from: 0) else { return false }
            return end == buffer.count
        }
    }

    static func write(_ value: JSONValue, into output: inout [UInt8]) {
        switch value {
        case .null:
            output.append(contentsOf: "null".utf8)
        case .bool(let flag):
            output.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let number):
            if Self.isValidNumber(number.text) {
                output.append(contentsOf: number.text.utf8)
            } else {
                output.append(contentsOf: "null".utf8)
            }
        case .string(let string):
            Self.writeString(string, into: &output)
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.write(element, into: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, into: &output)
                output.append(UInt8(ascii: ":"))
                Self.write(member.value, into: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    static func writeString(_ string: String, into output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""):
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "\""))
            case UInt8(ascii: "\\"):
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "\\"))
            case 0x0A:
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "n"))
            case 0x0D:
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "r"))
            case 0x09:
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "t"))
            case 0x08:
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "b"))
            case 0x0C:
                output.append(UInt8(ascii: "\\"))
                output.append(UInt8(ascii: "f"))
            case 0x00..<0x20:
                output.append(contentsOf: "\\u00".utf8)
                output.append(Self.hexDigits[Int(byte >> 4)])
                output.append(Self.hexDigits[Int(byte & 0x0F)])
            default:
                output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}

extension JSONValue: CustomStringConvertible {
    /// The compact JSON text of this value.
    public var description: String { JSON.serialize(self) }
}

/// Recursive-descent parser over a contiguous UTF-8 buffer.
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0
    private var depth = 0
    private var scratch: [UInt8] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(RealtimeProtocolError) -> JSONValue {
        self.skipWhitespace()
        guard self.index < self.bytes.count else {
            throw self.error(self.bytes.isEmpty ? "empty input" : "no value")
        }
        let value = try self.parseValue()
        self.skipWhitespace()
        guard self.index == self.bytes.count else {
            throw self.error("unexpected data after the value")
        }
        return value
    }

    private func error(_ what: String) -> RealtimeProtocolError {
        RealtimeProtocolError(.malformedJSON, "\(what) at byte offset \(self.index)")
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(RealtimeProtocolError) -> JSONValue {
        guard self.index < self.bytes.count else { throw self.error("unexpected end of input") }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return try self.parseObject()
        case UInt8(ascii: "["): return try self.parseArray()
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"): try self.expectLiteral("true"); return .bool(true)
        case UInt8(ascii: "f"): try self.expectLiteral("false"); return .bool(false)
        case UInt8(ascii: "n"): try self.expectLiteral("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"):
            let start = self.index
            guard let end = self.scanNumber(from: start) else { throw self.error("invalid number") }
            self.index = end
            let text = String(decoding: UnsafeBufferPointer(rebasing: self.bytes[start..<end]), as: UTF8.self)
            return .number(JSONNumber(text: text))
        default:
            throw self.error("unexpected character")
        }
    }

    private mutating func expectLiteral(_ literal: StaticString) throws(RealtimeProtocolError) {
        let count = literal.utf8CodeUnitCount
        guard self.bytes.count - self.index >= count else { throw self.error("invalid literal") }
        let pointer = literal.utf8Start
        for offset in 0..<count where self.bytes[self.index + offset] != pointer[offset] {
            throw self.error("invalid literal")
        }
        self.index += count
    }

    /// Scans a number literal starting at `start`; returns the end offset, or `nil` if the grammar is violated.
    func scanNumber(from start: Int) -> Int? {
        var position = start
        let count = self.bytes.count
        @inline(__always) func isDigit(_ position: Int) -> Bool {
            position < count && self.bytes[position] >= 0x30 && self.bytes[position] <= 0x39
        }
        if position < count && self.bytes[position] == UInt8(ascii: "-") { position += 1 }
        guard isDigit(position) else { return nil }
        if self.bytes[position] == UInt8(ascii: "0") {
            position += 1
        } else {
            while isDigit(position) { position += 1 }
        }
        if position < count && self.bytes[position] == UInt8(ascii: ".") {
            position += 1
            guard isDigit(position) else { return nil }
            while isDigit(position) { position += 1 }
        }
        if position < count && (self.bytes[position] | 0x20) == UInt8(ascii: "e") {
            position += 1
            if position < count,
                self.bytes[position] == UInt8(ascii: "+") || self.bytes[position] == UInt8(ascii: "-")
            {
                position += 1
            }
            guard isDigit(position) else { return nil }
            while isDigit(position) { position += 1 }
        }
        return position
    }

    private mutating func enter() throws(RealtimeProtocolError) {
        self.depth += 1
        if self.depth > self.maxDepth {
            throw RealtimeProtocolError(
                .nestingTooDeep, "nesting deeper than \(self.maxDepth) at byte offset \(self.index)")
        }
    }

    private mutating func parseArray() throws(RealtimeProtocolError) -> JSONValue {
        try self.enter()
        self.index += 1  // [
        var elements: [JSONValue] = []
        self.skipWhitespace()
        if self.index < self.bytes.count && self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            self.depth -= 1
            return .array(elements)
        }
        while true {
            self.skipWhitespace()
            elements.append(try self.parseValue())
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unterminated array") }
            let byte = self.bytes[self.index]
            self.index += 1
            if byte == UInt8(ascii: ",") { continue }
            if byte == UInt8(ascii: "]") { break }
            self.index -= 1
            throw self.error("expected ',' or ']'")
        }
        self.depth -= 1
        return .array(elements)
    }

    private mutating func parseObject() throws(RealtimeProtocolError) -> JSONValue {
        try self.enter()
        self.index += 1  // {
        var members: [JSONObject.Member] = []
        self.skipWhitespace()
        if self.index < self.bytes.count && self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            self.depth -= 1
            return .object(JSONObject(members))
        }
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                throw self.error("expected a string key")
            }
            let key = try self.parseString()
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else {
                throw self.error("expected ':'")
            }
            self.index += 1
            self.skipWhitespace()
            let value = try self.parseValue()
            members.append(JSONObject.Member(key: key, value: value))
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.error("unterminated object") }
            let byte = self.bytes[self.index]
            self.index += 1
            if byte == UInt8(ascii: ",") { continue }
            if byte == UInt8(ascii: "}") { break }
            self.index -= 1
            throw self.error("expected ',' or '}'")
        }
        self.depth -= 1
        return .object(JSONObject(members))
    }

    /// Parses a string starting at the opening quote.
    private mutating func parseString() throws(RealtimeProtocolError) -> String {
        self.index += 1  // opening quote
        let start = self.index
        var highBits: UInt8 = 0
        // Fast path: no escapes.
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                let slice = UnsafeBufferPointer(rebasing: self.bytes[start..<self.index])
                self.index += 1
                if highBits & 0x80 == 0 {
                    return String(decoding: slice, as: UTF8.self)
                }
                guard let string = String(validating: slice, as: UTF8.self) else {
                    self.index = start
                    throw self.error("invalid UTF-8 in string")
                }
                return string
            }
            if byte == UInt8(ascii: "\\") { break }
            if byte < 0x20 { throw self.error("control character in string") }
            highBits |= byte
            self.index += 1
        }
        guard self.index < self.bytes.count else { throw self.error("unterminated string") }
        // Slow path: copy what we have, then decode escapes.
        self.scratch.removeAll(keepingCapacity: true)
        self.scratch.append(contentsOf: UnsafeBufferPointer(rebasing: self.bytes[start..<self.index]))
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                self.index += 1
                guard let string = String(validating: self.scratch, as: UTF8.self) else {
                    throw self.error("invalid UTF-8 in string")
                }
                return string
            }
            if byte < 0x20 { throw self.error("control character in string") }
            if byte != UInt8(ascii: "\\") {
                self.scratch.append(byte)
                self.index += 1
                continue
            }
            self.index += 1
            guard self.index < self.bytes.count else { throw self.error("unterminated escape") }
            let escape = self.bytes[self.index]
            self.index += 1
            switch escape {
            case UInt8(ascii: "\""): self.scratch.append(0x22)
            case UInt8(ascii: "\\"): self.scratch.append(0x5C)
            case UInt8(ascii: "/"): self.scratch.append(0x2F)
            case UInt8(ascii: "b"): self.scratch.append(0x08)
            case UInt8(ascii: "f"): self.scratch.append(0x0C)
            case UInt8(ascii: "n"): self.scratch.append(0x0A)
            case UInt8(ascii: "r"): self.scratch.append(0x0D)
            case UInt8(ascii: "t"): self.scratch.append(0x09)
            case UInt8(ascii: "u"): try self.parseUnicodeEscape()
            default:
                self.index -= 1
                throw self.error("invalid escape")
            }
        }
        throw self.error("unterminated string")
    }

    /// After `\u`: decodes 4 hex digits (and a following low surrogate escape when needed) into `scratch`.
    private mutating func parseUnicodeEscape() throws(RealtimeProtocolError) {
        let first = try self.hex4()
        var scalarValue: UInt32
        switch first {
        case 0xD800...0xDBFF:
            guard self.bytes.count - self.index >= 6, self.bytes[self.index] == UInt8(ascii: "\\"),
                self.bytes[self.index + 1] == UInt8(ascii: "u")
            else { throw self.error("lone high surrogate") }
            self.index += 2
            let second = try self.hex4()
            guard (0xDC00...0xDFFF).contains(second) else { throw self.error("invalid low surrogate") }
            scalarValue = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
        case 0xDC00...0xDFFF:
            throw self.error("lone low surrogate")
        default:
            scalarValue = first
        }
        guard let scalar = Unicode.Scalar(scalarValue) else { throw self.error("invalid code point") }
        self.scratch.append(contentsOf: scalar.utf8)
    }

    private mutating func hex4() throws(RealtimeProtocolError) -> UInt32 {
        guard self.bytes.count - self.index >= 4 else { throw self.error("truncated \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt8
            switch byte {
            case 0x30...0x39: digit = byte - 0x30
            case 0x41...0x46: digit = byte - 0x41 + 10
            case 0x61...0x66: digit = byte - 0x61 + 10
            default: throw self.error("invalid hex digit in \\u escape")
            }
            value = value << 4 | UInt32(digit)
            self.index += 1
        }
        return value
    }
}
