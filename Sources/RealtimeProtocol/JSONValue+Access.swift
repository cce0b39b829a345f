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

extension JSONObject {
    /// The member keys in wire order.
    public var keys: [String] { self.members.map(\.key) }

    /// The number of members.
    public var count: Int { self.members.count }

    /// Whether the object has no members.
    public var isEmpty: Bool { self.members.isEmpty }
}

// MARK: - Typed field access used by the payload decoders

extension JSONObject {
    /// A required string member.
    func requiredString(_ key: String, in context: String) throws(RealtimeProtocolError) -> String {
        guard let value = self[key] else {
            throw RealtimeProtocolError(.missingField, "\(context): missing field '\(key)'")
        }
        guard case .string(let string) = value else {
            throw RealtimeProtocolError(
                .unexpectedType, "\(context): field '\(key)' is \(value.typeName), expected string")
        }
        return string
    }

    /// An optional string member: absent or `null` give `nil`; another type is an error.
    func optionalString(_ key: String, in context: String) throws(RealtimeProtocolError) -> String? {
        guard let value = self[key] else { return nil }
        switch value {
        case .null: return nil
        case .string(let string): return string
        default:
            throw RealtimeProtocolError(
                .unexpectedType, "\(context): field '\(key)' is \(value.typeName), expected string or null")
        }
    }

    /// An optional object member: absent or `null` give `nil`; another type is an error.
    func optionalObject(_ key: String, in context: String) throws(RealtimeProtocolError) -> JSONObject? {
        guard let value = self[key] else { return nil }
        switch value {
        case .null: return nil
        case .object(let object): return object
        default:
            throw RealtimeProtocolError(
                .unexpectedType, "\(context): field '\(key)' is \(value.typeName), expected object or null")
        }
    }

    /// An optional array member: absent or `null` give `nil`; another type is an error.
    func optionalArray(_ key: String, in context: String) throws(RealtimeProtocolError) -> [JSONValue]? {
        guard let value = self[key] else { return nil }
        switch value {
        case .null: return nil
        case .array(let array): return array
        default:
            throw RealtimeProtocolError(
                .unexpectedType, "\(context): field '\(key)' is \(value.typeName), expected array or null")
        }
    }
}

extension JSONValue {
    /// The value as an object, or a typed error naming `context`.
    func requireObject(_ context: String) throws(RealtimeProtocolError) -> JSONObject {
        guard case .object(let object) = self else {
            throw RealtimeProtocolError(.unexpectedType, "\(context) is \(self.typeName), expected object")
        }
        return object
    }

    /// An integer given as a JSON integer literal or as a decimal string (`84421330` or `"84421330"`).
    var lenientInt: Int? {
        switch self {
        case .number(let number): return Int(number.text)
        case .string(let string): return Int(string)
        default: return nil
        }
    }
}
