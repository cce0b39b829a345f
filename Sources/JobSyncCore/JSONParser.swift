extension JSONValue {
    /// The default maximum nesting depth of arrays and objects.
    public static let defaultMaxDepth = 512

    /// Parses one JSON text (surrounding whitespace allowed, nothing else), strictly per RFC 8259.
    ///
    /// Numbers are kept as their literal text (after checking the number grammar), object members in wire order
    /// (duplicates included; lookup returns the first). Strings must be valid UTF-8; every escape is decoded,
    /// surrogate pairs included (a lone surrogate is an error). Input nested deeper than `maxDepth` is refused
    /// before it can exhaust the stack.
    ///
    /// - Parameters:
    ///   - bytes: UTF-8 encoded JSON.
    ///   - maxDepth: The deepest allowed nesting of arrays and objects.
    /// - Throws: ``JSONError`` with code `.malformedJSON` or `.nestingTooDeep`.
    public static func parse(
        _ bytes: some Collection<UInt8>, maxDepth: Int = JSONValue.defaultMaxDepth
    ) throws(JSONError) -> JSONValue {
        let result = bytes.withContiguousStorageIfAvailable { buffer in
            Self.parseResult(buffer, maxDepth: maxDepth)
        }
        if let result {
            return try result.get()
        }
        let copy = Array(bytes)
        return try copy.withUnsafeBufferPointer { Self.parseResult($0, maxDepth: maxDepth) }.get()
    }

    /// Parses one JSON text given as a Swift string (see `parse(_:maxDepth:)` on bytes).
    /// - Throws: ``JSONError`` with code `.malformedJSON` or `.nestingTooDeep`.
    public static func parse(_ text: String, maxDepth: Int = JSONValue.defaultMaxDepth) throws(JSONError) -> JSONValue {
        var text = text
        return try text.withUTF8 { Self.parseResult($0, maxDepth: maxDepth) }.get()
    }

    private static func parseResult(
        _ buffer: UnsafeBufferPointer<UInt8>, maxDepth: Int
    ) -> Result<JSONValue, JSONError> {
        var parser = JSONParser(buffer, maxDepth: maxDepth)
        do throws(JSONError) {
            return .success(try parser.parseDocument())
        } catch {
            return .failure(error)
        }
    }
}

/// Recursive-descent parser over a contiguous UTF-8 buffer.
struct JSONParser {
    private let bytes: UnsafeBufferPointer<UInt8>
    private let maxDepth: Int
    private var index = 0
    private var depth = 0
    private var scratch: [UInt8] = []
    // Containers are built on shared stacks and copied out once at their exact size, which avoids regrowing
    // a fresh array per container.
    private var elementStack: [JSONValue] = []
    private var memberStack: [JSONObject.Member] = []

    init(_ bytes: UnsafeBufferPointer<UInt8>, maxDepth: Int) {
        self.bytes = bytes
        self.maxDepth = maxDepth
    }

    mutating func parseDocument() throws(JSONError) -> JSONValue {
        // One allocation each for a typical document (a Realtime frame holds about a dozen members at once),
        // instead of regrowing from empty.
        self.elementStack.reserveCapacity(16)
        self.memberStack.reserveCapacity(32)
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

    private func error(_ what: String) -> JSONError {
        JSONError(.malformedJSON, what, byteOffset: self.index)
    }

    private mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x0A, 0x0D, 0x09: self.index += 1
            default: return
            }
        }
    }

    private mutating func parseValue() throws(JSONError) -> JSONValue {
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

    private mutating func expectLiteral(_ literal: StaticString) throws(JSONError) {
        let count = literal.utf8CodeUnitCount
        guard self.bytes.count - self.index >= count else { throw self.error("invalid literal") }
        let pointer = literal.utf8Start
        for offset in 0..<count where self.bytes[self.index + offset] != pointer[offset] {
            throw self.error("invalid literal")
        }
        self.index += count
    }

    /// Whether `text` is exactly one valid number literal.
    static func isNumberLiteral(_ text: String) -> Bool {
        var text = text
        return text.withUTF8 { buffer in
            JSONParser(buffer, maxDepth: 1).scanNumber(from: 0) == buffer.count
        }
    }

    /// Scans a number literal starting at `start`; returns the end offset, or `nil` if the grammar is violated.
    private func scanNumber(from start: Int) -> Int? {
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

    private mutating func enter() throws(JSONError) {
        self.depth += 1
        if self.depth > self.maxDepth {
            throw JSONError(.nestingTooDeep, "nesting deeper than \(self.maxDepth)", byteOffset: self.index)
        }
    }

    private mutating func parseArray() throws(JSONError) -> JSONValue {
        try self.enter()
        self.index += 1  // [
        self.skipWhitespace()
        if self.index < self.bytes.count && self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            self.depth -= 1
            return .array([])
        }
        let base = self.elementStack.count
        while true {
            self.skipWhitespace()
            let element = try self.parseValue()
            self.elementStack.append(element)
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
        let elements = Array(self.elementStack[base...])
        self.elementStack.removeSubrange(base...)
        return .array(elements)
    }

    private mutating func parseObject() throws(JSONError) -> JSONValue {
        try self.enter()
        self.index += 1  // {
        self.skipWhitespace()
        if self.index < self.bytes.count && self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            self.depth -= 1
            return .object(JSONObject())
        }
        let base = self.memberStack.count
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
            self.memberStack.append(JSONObject.Member(key: key, value: value))
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
        let members = Array(self.memberStack[base...])
        self.memberStack.removeSubrange(base...)
        return .object(JSONObject(members))
    }

    /// Parses a string starting at the opening quote.
    private mutating func parseString() throws(JSONError) -> String {
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
    private mutating func parseUnicodeEscape() throws(JSONError) {
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

    private mutating func hex4() throws(JSONError) -> UInt32 {
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
