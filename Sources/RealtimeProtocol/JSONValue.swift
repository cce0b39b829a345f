/// A JSON value that keeps numbers exactly as written (so `int8` beyond 2^53 and `numeric` lose nothing)
/// and object members in their original order. Not `indirect`: arrays and objects already store their
/// elements on the heap, so scalars need no extra box.
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
    /// Wraps a literal. The text should be valid JSON number syntax; the serializer writes `null` otherwise.
    public init(text: String) { self.text = text }
    /// The literal of an integer.
    public init(_ value: Int) { self.text = String(value) }
    /// The value as `Int64` when the literal is an integer in range (no fraction or exponent), else `nil`.
    public var int64: Int64? { Int64(self.text) }
    /// The value as the nearest `Double` (may be infinite for huge exponents, or lose precision).
    public var double: Double? { Double(self.text) }
    /// The literal.
    public var description: String { self.text }
}

/// A JSON object with members in wire order. Lookup returns the first member with the key.
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
}
