/// A JSON value as returned by PostgREST, with numbers kept as their literal text so that `int8` ids beyond 2^53
/// and `numeric` values lose nothing.
///
/// Objects are dictionaries (member order is not significant for rows). Decode a body with ``JSON/parse(_:)``
/// and re-encode with ``JSON/serialized``.
public indirect enum JSON: Hashable, Sendable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, kept as its literal text (validated JSON number syntax).
    case number(String)
    /// A string.
    case string(String)
    /// An array.
    case array([JSON])
    /// An object.
    case object([String: JSON])

    /// The string payload, if this is a string.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The object payload, if this is an object.
    public var objectValue: [String: JSON]? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The array payload, if this is an array.
    public var arrayValue: [JSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The boolean payload, if this is a boolean.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The number as a `Double`, if this is a number.
    public var doubleValue: Double? {
        if case .number(let text) = self { return Double(text) }
        return nil
    }

    /// The number as an `Int64`, if this is an integral number that fits.
    public var int64Value: Int64? {
        if case .number(let text) = self { return Int64(text) }
        return nil
    }

    /// Whether this is `null`.
    public var isNull: Bool { self == .null }

    /// Member lookup for objects; `nil` for other kinds or a missing key.
    public subscript(key: String) -> JSON? {
        self.objectValue?[key]
    }
}

extension JSON {
    /// The compact JSON text of this value (object keys sorted, so equal values serialize equally).
    public var serialized: String {
        var out = ""
        self.write(into: &out)
        return out
    }

    private func write(into out: inout String) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let text): out += text
        case .string(let value): JSON.writeString(value, into: &out)
        case .array(let values):
            out += "["
            for (index, value) in values.enumerated() {
                if index > 0 { out += "," }
                value.write(into: &out)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in members.keys.sorted().enumerated() {
                if index > 0 { out += "," }
                JSON.writeString(key, into: &out)
                out += ":"
                members[key]!.write(into: &out)  // key comes from the dictionary itself
            }
            out += "}"
        }
    }

    private static func writeString(_ value: String, into out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                let hex = String(scalar.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
    }
}

extension JSON {
    /// The deepest nesting ``parse(_:)`` accepts; deeper input is rejected rather than risking the stack.
    public static let maximumDepth = 256

    /// Parses JSON text.
    ///
    /// - Parameter bytes: UTF-8 JSON text.
    /// - Returns: the value, or `nil` when the text is not valid JSON (or nests deeper than ``maximumDepth``).
    public static func parse<Bytes: Collection<UInt8>>(_ bytes: Bytes) -> JSON? {
        var parser = JSONParser(bytes: Array(bytes))
        return parser.parseDocument()
    }

    /// Parses JSON text from a string.
    public static func parse(_ text: String) -> JSON? {
        self.parse(Array(text.utf8))
    }
}

/// A small recursive-descent JSON parser over UTF-8 bytes.
private struct JSONParser {
    let bytes: [UInt8]
    var index = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    mutating func parseDocument() -> JSON? {
        guard let value = self.parseValue(depth: 0) else { return nil }
        self.skipWhitespace()
        return self.index == self.bytes.count ? value : nil
    }

    mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    mutating func consume(_ literal: String) -> Bool {
        let utf8 = Array(literal.utf8)
        guard self.index + utf8.count <= self.bytes.count,
            Array(self.bytes[self.index..<self.index + utf8.count]) == utf8
        else { return false }
        self.index += utf8.count
        return true
    }

    mutating func parseValue(depth: Int) -> JSON? {
        guard depth < JSON.maximumDepth else { return nil }
        self.skipWhitespace()
        guard self.index < self.bytes.count else { return nil }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return self.parseObject(depth: depth)
        case UInt8(ascii: "["): return self.parseArray(depth: depth)
        case UInt8(ascii: "\""): return self.parseString().map(JSON.string)
        case UInt8(ascii: "t"): return self.consume("true") ? .bool(true) : nil
        case UInt8(ascii: "f"): return self.consume("false") ? .bool(false) : nil
        case UInt8(ascii: "n"): return self.consume("null") ? .null : nil
        default: return self.parseNumber()
        }
    }

    mutating func parseObject(depth: Int) -> JSON? {
        self.index += 1
        var members: [String: JSON] = [:]
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\""),
                let key = self.parseString()
            else { return nil }
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else { return nil }
            self.index += 1
            guard let value = self.parseValue(depth: depth + 1) else { return nil }
            // First occurrence wins, as in most PostgREST clients.
            if members[key] == nil { members[key] = value }
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
            } else if self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            } else {
                return nil
            }
        }
    }

    mutating func parseArray(depth: Int) -> JSON? {
        self.index += 1
        var values: [JSON] = []
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            return .array(values)
        }
        while true {
            guard let value = self.parseValue(depth: depth + 1) else { return nil }
            values.append(value)
            self.skipWhitespace()
            guard self.index < self.bytes.count else { return nil }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
            } else if self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(values)
            } else {
                return nil
            }
        }
    }

    mutating func parseHex4() -> UInt32? {
        guard self.index + 4 <= self.bytes.count else { return nil }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: return nil
            }
            value = value * 16 + digit
            self.index += 1
        }
        return value
    }

    mutating func parseString() -> String? {
        self.index += 1
        var scalars = String.UnicodeScalarView()
        var runStart = self.index
        func flush(_ parser: JSONParser, upTo end: Int) -> Bool {
            guard runStart < end else { return true }
            guard let run = String(validating: parser.bytes[runStart..<end], as: UTF8.self) else { return false }
            scalars.append(contentsOf: run.unicodeScalars)
            return true
        }
        while self.index < self.bytes.count {
            let byte = self.bytes[self.index]
            if byte == UInt8(ascii: "\"") {
                guard flush(self, upTo: self.index) else { return nil }
                self.index += 1
                return String(scalars)
            }
            if byte < 0x20 { return nil }
            if byte != UInt8(ascii: "\\") {
                self.index += 1
                continue
            }
            guard flush(self, upTo: self.index) else { return nil }
            self.index += 1
            guard self.index < self.bytes.count else { return nil }
            let escape = self.bytes[self.index]
            self.index += 1
            switch escape {
            case UInt8(ascii: "\""): scalars.append("\"")
            case UInt8(ascii: "\\"): scalars.append("\\")
            case UInt8(ascii: "/"): scalars.append("/")
            case UInt8(ascii: "b"): scalars.append("\u{08}")
            case UInt8(ascii: "f"): scalars.append("\u{0C}")
            case UInt8(ascii: "n"): scalars.append("\n")
            case UInt8(ascii: "r"): scalars.append("\r")
            case UInt8(ascii: "t"): scalars.append("\t")
            case UInt8(ascii: "u"):
                guard let high = self.parseHex4() else { return nil }
                var code = high
                if (0xD800...0xDBFF).contains(high) {
                    guard self.consume("\\u"), let low = self.parseHex4(), (0xDC00...0xDFFF).contains(low) else {
                        return nil
                    }
                    code = 0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00)
                }
                // A lone low surrogate is not a scalar: replace it rather than fail the whole document.
                scalars.append(Unicode.Scalar(code) ?? "\u{FFFD}")
            default: return nil
            }
            runStart = self.index
        }
        return nil
    }

    mutating func parseNumber() -> JSON? {
        let start = self.index
        func digits(_ parser: inout JSONParser) -> Int {
            var count = 0
            while parser.index < parser.bytes.count,
                (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(parser.bytes[parser.index])
            {
                parser.index += 1
                count += 1
            }
            return count
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count else { return nil }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
        } else if digits(&self) == 0 {
            return nil
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            self.index += 1
            guard digits(&self) > 0 else { return nil }
        }
        if self.index < self.bytes.count, self.bytes[self.index] | 0x20 == UInt8(ascii: "e") {
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            guard digits(&self) > 0 else { return nil }
        }
        return .number(String(decoding: self.bytes[start..<self.index], as: UTF8.self))
    }
}
