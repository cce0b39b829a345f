import JobSyncCore

// MARK: - Parsing with the protocol's errors

extension RealtimeProtocolError {
    /// The protocol error for JSON that does not parse: the same code (`.malformedJSON`, `.nestingTooDeep`) and
    /// message (with its byte offset; never the input).
    init(_ error: JSONError) {
        let code: Code = error.code == .nestingTooDeep ? .nestingTooDeep : .malformedJSON
        self.init(code, error.message)
    }
}

extension JSONValue {
    /// Parses JSON text of a frame, as `JSONValue.parse(_:maxDepth:)`, with the failure as a `RealtimeProtocolError`.
    static func parseFrame(_ bytes: some Collection<UInt8>, maxDepth: Int) throws(RealtimeProtocolError) -> JSONValue {
        do {
            return try JSONValue.parse(bytes, maxDepth: maxDepth)
        } catch {
            throw RealtimeProtocolError(error)
        }
    }
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
