/// A JSON value that keeps numbers exactly as written (so `int8` beyond 2^53 and `numeric` lose nothing)
/// and object members in their original order. Not `indirect`: arrays and objects already store their
/// elements on the heap, so scalars need no extra box.
///
/// The one JSON value of the JobSync client side: Realtime frames, PostgREST rows, the job model and `jobwatch`'s
/// output all use it. Parse with `JSONValue.parse(_:maxDepth:)`, write with ``serialized()``.
///
/// ```swift
/// let row = try JSONValue.parse(#"{"id":"5b1f…","attempts":3}"#)
/// row["attempts"]?.numberValue?.int64  // 3
/// ```
public enum JSONValue: Hashable, Sendable {
    /// `null`.
    case null
    /// `true` or `false`.
    case bool(Bool)
    /// A number, kept as its literal text.
    case number(JSONNumber)
    /// A string.
    case string(String)
    /// An array.
    case array([JSONValue])
    /// An object, members in wire order.
    case object(JSONObject)
}

/// A JSON number kept as its literal text.
public struct JSONNumber: Hashable, Sendable, CustomStringConvertible {
    /// The literal as it appeared on the wire (validated JSON number syntax).
    public let text: String
    /// Wraps a literal. The text should be valid JSON number syntax (see ``isValid``); the serializer writes
    /// `null` otherwise.
    public init(text: String) { self.text = text }
    /// The literal of an integer.
    public init(_ value: Int) { self.text = String(value) }
    /// The shortest literal that reads back as `value`; `nil` for infinities and NaN, which JSON cannot write.
    public init?(_ value: Double) {
        guard value.isFinite else { return nil }
        self.text = "\(value)"
    }
    /// The value as `Int64` when the literal is an integer in range (no fraction or exponent), else `nil`.
    public var int64: Int64? { Int64(self.text) }
    /// The value as the nearest `Double` (may be infinite for huge exponents, or lose precision).
    public var double: Double? { Double(self.text) }
    /// Whether ``text`` is a valid RFC 8259 number literal.
    public var isValid: Bool { JSONParser.isNumberLiteral(self.text) }
    /// The literal.
    public var description: String { self.text }
}

/// A JSON object with members in wire order. Lookup returns the first member with the key.
///
/// Equality follows JSON's meaning rather than the wire order: two objects are equal when they hold the same
/// members, whatever the order of members with different keys (RFC 8259 §4: an object is unordered), so a row read
/// over REST equals the same row sent by Realtime. Members sharing a key compare in order, since lookup returns the
/// first.
public struct JSONObject: Hashable, Sendable, ExpressibleByDictionaryLiteral {
    /// The members in wire order; keys may repeat.
    public var members: [Member]

    /// One `key: value` member.
    public struct Member: Hashable, Sendable {
        /// The key.
        public var key: String
        /// The value.
        public var value: JSONValue
        /// Creates a member.
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    /// Creates an object from members in order.
    public init(_ members: [Member] = []) { self.members = members }
    /// Creates an object from a literal, keeping the literal's order.
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.members = elements.map { Member(key: $0.0, value: $0.1) }
    }

    /// The first member with `key`. Setting replaces the first such member's value (or appends a member);
    /// setting `nil` removes the first such member.
    public subscript(key: String) -> JSONValue? {
        get { self.members.first(where: { $0.key == key })?.value }
        set {
            if let index = self.members.firstIndex(where: { $0.key == key }) {
                if let newValue { self.members[index].value = newValue } else { self.members.remove(at: index) }
            } else if let newValue {
                self.members.append(Member(key: key, value: newValue))
            }
        }
    }

    /// The member keys in wire order.
    public var keys: [String] { self.members.map(\.key) }

    /// The number of members.
    public var count: Int { self.members.count }

    /// Whether the object has no members.
    public var isEmpty: Bool { self.members.isEmpty }

    /// Equal members, whatever the order of different keys (see the type's discussion).
    public static func == (lhs: JSONObject, rhs: JSONObject) -> Bool {
        guard lhs.members.count == rhs.members.count else { return false }
        if lhs.members == rhs.members { return true }  // the same order: the usual case
        return lhs.membersByKey.elementsEqual(rhs.membersByKey)
    }

    /// Hashes the members independently of their order, consistently with ``==(_:_:)``.
    public func hash(into hasher: inout Hasher) {
        var sum = 0
        for member in self.members {
            var memberHasher = Hasher()
            memberHasher.combine(member)
            sum &+= memberHasher.finalize()
        }
        hasher.combine(self.members.count)
        hasher.combine(sum)
    }

    /// The members sorted by key; members sharing a key keep their order.
    private var membersByKey: [Member] {
        self.members.enumerated()
            .sorted { ($0.element.key, $0.offset) < ($1.element.key, $1.offset) }
            .map(\.element)
    }
}

extension JSONValue {
    /// The string, if this is a JSON string.
    public var stringValue: String? {
        if case .string(let value) = self { return value }
        return nil
    }

    /// The object, if this is a JSON object.
    public var objectValue: JSONObject? {
        if case .object(let value) = self { return value }
        return nil
    }

    /// The elements, if this is a JSON array.
    public var arrayValue: [JSONValue]? {
        if case .array(let value) = self { return value }
        return nil
    }

    /// The Boolean, if this is `true` or `false`.
    public var boolValue: Bool? {
        if case .bool(let value) = self { return value }
        return nil
    }

    /// The number literal, if this is a JSON number.
    public var numberValue: JSONNumber? {
        if case .number(let value) = self { return value }
        return nil
    }

    /// Whether this is JSON `null`.
    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// A short name of the JSON type, for error messages ("string", "object", …).
    public var typeName: String {
        switch self {
        case .null: "null"
        case .bool: "boolean"
        case .number: "number"
        case .string: "string"
        case .array: "array"
        case .object: "object"
        }
    }

    /// Member lookup when this is an object; `nil` otherwise or when the key is absent.
    public subscript(key: String) -> JSONValue? {
        self.objectValue?[key]
    }
}
