/// A JSON value that keeps numbers exactly as written (so `int8` beyond 2^53 and `numeric` lose nothing)
/// and object members in their original order. Not `indirect`: arrays and objects already store their
/// elements on the heap, so scalars need no extra box.
public enum JSONValue: Hashable, Sendable {
    case null
    case bool(Bool)
    case number(JSONNumber)
    case string(String)
    case array([JSONValue])
    case object(JSONObject)
}

/// A JSON number kept as its literal text.
public struct JSONNumber: Hashable, Sendable, CustomStringConvertible {
    /// The literal as it appeared on the wire (validated JSON number syntax).
    public let text: String
    public init(text: String) { self.text = text }
    public init(_ value: Int) { self.text = String(value) }
    public var int64: Int64? { Int64(self.text) }
    public var double: Double? { Double(self.text) }
    public var description: String { self.text }
}

/// A JSON object with members in wire order. Lookup returns the first member with the key.
public struct JSONObject: Hashable, Sendable, ExpressibleByDictionaryLiteral {
    public var members: [Member]

    public struct Member: Hashable, Sendable {
        public var key: String
        public var value: JSONValue
        public init(key: String, value: JSONValue) {
            self.key = key
            self.value = value
        }
    }

    public init(_ members: [Member] = []) { self.members = members }
    public init(dictionaryLiteral elements: (String, JSONValue)...) {
        self.members = elements.map { Member(key: $0.0, value: $0.1) }
    }

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
