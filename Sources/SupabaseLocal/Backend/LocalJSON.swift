/// A JSON value as SupabaseLocal stores and serves it.
///
/// Numbers keep their exact text (so `int8` and `numeric` never pass through `Double`). Objects are
/// unordered; the encoders choose the key order the real server would produce (see ``encoded(style:)``).
public enum LocalJSON: Sendable, Hashable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, kept as its exact JSON text (for example `"9007199254740993"` or `"0.87"`).
    case number(String)
    /// A string.
    case string(String)
    /// An array.
    case array([LocalJSON])
    /// An object (keys are unique, order is chosen when encoding).
    case object([String: LocalJSON])

    /// How an encoder writes objects and separators.
    public enum Style: Sendable {
        /// Compact, keys sorted bytewise (how Jason encodes Elixir maps in server frames).
        case compact
        /// PostgreSQL `jsonb` text: keys sorted by length then bytewise, `": "` and `", "` separators.
        case jsonb
    }

    /// A number value from an integer.
    public static func int(_ value: Int) -> LocalJSON { .number(String(value)) }

    /// A number value from a `Double` (for simulator data; uses Swift's shortest round-trip text).
    public static func double(_ value: Double) -> LocalJSON {
        if value.isFinite, value == value.rounded(), abs(value) < 1e15 {
            return .number(String(Int64(value)))
        }
        return .number(value.isFinite ? "\(value)" : "0")
    }

    /// The string payload, if this is a string.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The object payload, if this is an object.
    public var objectValue: [String: LocalJSON]? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The array payload, if this is an array.
    public var arrayValue: [LocalJSON]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// Whether this is `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// Subscript into an object (nil for non-objects and missing keys).
    public subscript(key: String) -> LocalJSON? {
        self.objectValue?[key]
    }

    /// The JSON text of this value in the given style.
    public func encoded(style: Style = .compact) -> String {
        var out = ""
        self.write(to: &out, style: style)
        return out
    }

    /// Appends the JSON text of this value to `out`.
    public func write(to out: inout String, style: Style) {
        switch self {
        case .null: out += "null"
        case .bool(let value): out += value ? "true" : "false"
        case .number(let text): out += text
        case .string(let value): LocalJSON.writeString(value, to: &out)
        case .array(let items):
            out += "["
            for (index, item) in items.enumerated() {
                if index > 0 { out += style == .jsonb ? ", " : "," }
                item.write(to: &out, style: style)
            }
            out += "]"
        case .object(let members):
            out += "{"
            for (index, key) in LocalJSON.sortedKeys(members.keys, style: style).enumerated() {
                if index > 0 { out += style == .jsonb ? ", " : "," }
                LocalJSON.writeString(key, to: &out)
                out += style == .jsonb ? ": " : ":"
                members[key]!.write(to: &out, style: style)
            }
            out += "}"
        }
    }

    /// Keys in the order the style prescribes.
    static func sortedKeys(_ keys: some Sequence<String>, style: Style) -> [String] {
        switch style {
        case .compact:
            return keys.sorted { Array($0.utf8).lexicographicallyPrecedes($1.utf8) }
        case .jsonb:
            return keys.sorted { lhs, rhs in
                let left = lhs.utf8.count
                let right = rhs.utf8.count
                if left != right { return left < right }
                return Array(lhs.utf8).lexicographicallyPrecedes(rhs.utf8)
            }
        }
    }

    /// Writes a JSON string literal with the escapes Jason and PostgreSQL use.
    static func writeString(_ value: String, to out: inout String) {
        out += "\""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 {
                    let hex = String(scalar.value, radix: 16)
                    out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }
}

extension LocalJSON {
    /// Parses JSON text. Numbers keep their exact text; duplicate object keys keep the last value.
    ///
    /// - Throws: ``SupabaseLocalError`` with code `invalidJSON` on malformed input.
    public init(parsing text: String) throws {
        var parser = LocalJSONParser(bytes: Array(text.utf8))
        self = try parser.parseDocument()
    }

    /// Parses JSON from UTF-8 bytes.
    public init(parsing bytes: [UInt8]) throws {
        var parser = LocalJSONParser(bytes: bytes)
        self = try parser.parseDocument()
    }
}

/// A small recursive-descent JSON parser with a depth limit.
struct LocalJSONParser {
    let bytes: [UInt8]
    var index = 0
    var depth = 0
    static let maxDepth = 512

    init(bytes: [UInt8]) {
        self.bytes = bytes
    }

    mutating func parseDocument() throws -> LocalJSON {
        let value = try self.parseValue()
        self.skipWhitespace()
        guard self.index == self.bytes.count else { throw self.failure("trailing characters") }
        return value
    }

    func failure(_ what: String) -> SupabaseLocalError {
        SupabaseLocalError(.invalidJSON, "malformed JSON at byte \(self.index): \(what)")
    }

    mutating func skipWhitespace() {
        while self.index < self.bytes.count {
            switch self.bytes[self.index] {
            case 0x20, 0x09, 0x0A, 0x0D: self.index += 1
            default: return
            }
        }
    }

    mutating func parseValue() throws -> LocalJSON {
        self.skipWhitespace()
        guard self.index < self.bytes.count else { throw self.failure("unexpected end") }
        switch self.bytes[self.index] {
        case UInt8(ascii: "{"): return try self.parseObject()
        case UInt8(ascii: "["): return try self.parseArray()
        case UInt8(ascii: "\""): return .string(try self.parseString())
        case UInt8(ascii: "t"):
            try self.expectLiteral("true")
            return .bool(true)
        case UInt8(ascii: "f"):
            try self.expectLiteral("false")
            return .bool(false)
        case UInt8(ascii: "n"):
            try self.expectLiteral("null")
            return .null
        default: return try self.parseNumber()
        }
    }

    mutating func expectLiteral(_ literal: String) throws {
        let utf8 = Array(literal.utf8)
        guard self.index + utf8.count <= self.bytes.count,
            Array(self.bytes[self.index..<self.index + utf8.count]) == utf8
        else { throw self.failure("invalid literal") }
        self.index += utf8.count
    }

    mutating func enter() throws {
        self.depth += 1
        if self.depth > LocalJSONParser.maxDepth { throw self.failure("nesting too deep") }
    }

    mutating func parseObject() throws -> LocalJSON {
        try self.enter()
        defer { self.depth -= 1 }
        self.index += 1
        var members: [String: LocalJSON] = [:]
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "}") {
            self.index += 1
            return .object(members)
        }
        while true {
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\"") else {
                throw self.failure("expected a key")
            }
            let key = try self.parseString()
            self.skipWhitespace()
            guard self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ":") else {
                throw self.failure("expected ':'")
            }
            self.index += 1
            members[key] = try self.parseValue()
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.failure("unterminated object") }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
            } else if self.bytes[self.index] == UInt8(ascii: "}") {
                self.index += 1
                return .object(members)
            } else {
                throw self.failure("expected ',' or '}'")
            }
        }
    }

    mutating func parseArray() throws -> LocalJSON {
        try self.enter()
        defer { self.depth -= 1 }
        self.index += 1
        var items: [LocalJSON] = []
        self.skipWhitespace()
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "]") {
            self.index += 1
            return .array(items)
        }
        while true {
            items.append(try self.parseValue())
            self.skipWhitespace()
            guard self.index < self.bytes.count else { throw self.failure("unterminated array") }
            if self.bytes[self.index] == UInt8(ascii: ",") {
                self.index += 1
            } else if self.bytes[self.index] == UInt8(ascii: "]") {
                self.index += 1
                return .array(items)
            } else {
                throw self.failure("expected ',' or ']'")
            }
        }
    }

    mutating func parseHex4() throws -> UInt32 {
        guard self.index + 4 <= self.bytes.count else { throw self.failure("short \\u escape") }
        var value: UInt32 = 0
        for _ in 0..<4 {
            let byte = self.bytes[self.index]
            let digit: UInt32
            switch byte {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = UInt32(byte - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = UInt32(byte - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = UInt32(byte - UInt8(ascii: "A") + 10)
            default: throw self.failure("bad hex digit")
            }
            value = value * 16 + digit
            self.index += 1
        }
        return value
    }

    mutating func parseString() throws -> String {
        self.index += 1
        var raw: [UInt8] = []
        while true {
            guard self.index < self.bytes.count else { throw self.failure("unterminated string") }
            let byte = self.bytes[self.index]
            self.index += 1
            switch byte {
            case UInt8(ascii: "\""):
                guard let text = String(validating: raw, as: UTF8.self) else { throw self.failure("invalid UTF-8") }
                return text
            case UInt8(ascii: "\\"):
                guard self.index < self.bytes.count else { throw self.failure("unterminated escape") }
                let escape = self.bytes[self.index]
                self.index += 1
                switch escape {
                case UInt8(ascii: "\""): raw.append(UInt8(ascii: "\""))
                case UInt8(ascii: "\\"): raw.append(UInt8(ascii: "\\"))
                case UInt8(ascii: "/"): raw.append(UInt8(ascii: "/"))
                case UInt8(ascii: "b"): raw.append(0x08)
                case UInt8(ascii: "f"): raw.append(0x0C)
                case UInt8(ascii: "n"): raw.append(0x0A)
                case UInt8(ascii: "r"): raw.append(0x0D)
                case UInt8(ascii: "t"): raw.append(0x09)
                case UInt8(ascii: "u"):
                    var code = try self.parseHex4()
                    if (0xD800..<0xDC00).contains(code) {
                        guard self.index + 6 <= self.bytes.count, self.bytes[self.index] == UInt8(ascii: "\\"),
                            self.bytes[self.index + 1] == UInt8(ascii: "u")
                        else { throw self.failure("lone surrogate") }
                        self.index += 2
                        let low = try self.parseHex4()
                        guard (0xDC00..<0xE000).contains(low) else { throw self.failure("bad surrogate pair") }
                        code = 0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)
                    } else if (0xDC00..<0xE000).contains(code) {
                        throw self.failure("lone surrogate")
                    }
                    guard let scalar = Unicode.Scalar(code) else { throw self.failure("bad code point") }
                    raw.append(contentsOf: Array(String(Character(scalar)).utf8))
                default:
                    throw self.failure("bad escape")
                }
            default:
                if byte < 0x20 { throw self.failure("control character in string") }
                raw.append(byte)
            }
        }
    }

    mutating func parseNumber() throws -> LocalJSON {
        let start = self.index
        func isDigit(_ byte: UInt8) -> Bool { byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9") }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: "-") { self.index += 1 }
        guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else { throw self.failure("bad number") }
        if self.bytes[self.index] == UInt8(ascii: "0") {
            self.index += 1
        } else {
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        if self.index < self.bytes.count, self.bytes[self.index] == UInt8(ascii: ".") {
            self.index += 1
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else {
                throw self.failure("bad fraction")
            }
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        if self.index < self.bytes.count,
            self.bytes[self.index] == UInt8(ascii: "e") || self.bytes[self.index] == UInt8(ascii: "E")
        {
            self.index += 1
            if self.index < self.bytes.count,
                self.bytes[self.index] == UInt8(ascii: "+") || self.bytes[self.index] == UInt8(ascii: "-")
            {
                self.index += 1
            }
            guard self.index < self.bytes.count, isDigit(self.bytes[self.index]) else {
                throw self.failure("bad exponent")
            }
            while self.index < self.bytes.count, isDigit(self.bytes[self.index]) { self.index += 1 }
        }
        return .number(String(decoding: self.bytes[start..<self.index], as: UTF8.self))
    }
}
