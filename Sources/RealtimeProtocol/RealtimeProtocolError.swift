/// The one public error type of the `RealtimeProtocol` module.
///
/// Every decoding failure (malformed JSON, a frame of the wrong shape, a payload field of the wrong type)
/// is reported as a `RealtimeProtocolError`. Its ``message`` is safe to print and log: it names fields,
/// positions and expected types, but never echoes payload values, so tokens and keys cannot leak through it.
public struct RealtimeProtocolError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: new codes may be added in later versions, so `switch`
    /// over codes with a `default` branch.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable identifier, safe as a metrics label.
        public let rawValue: String

        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// The bytes are not valid RFC 8259 JSON (syntax, invalid UTF-8, bad escapes, lone surrogates).
        public static let malformedJSON = Code("malformedJSON")
        /// The JSON nests deeper than the parser's limit.
        public static let nestingTooDeep = Code("nestingTooDeep")
        /// Valid JSON, but not a Phoenix frame of the negotiated version (wrong arity, wrong element types).
        public static let malformedFrame = Code("malformedFrame")
        /// A payload field has the wrong JSON type.
        public static let unexpectedType = Code("unexpectedType")
        /// A required payload field is absent.
        public static let missingField = Code("missingField")
        /// A binary frame is truncated, inconsistent, or not allowed under the negotiated version.
        public static let unsupportedBinaryFrame = Code("unsupportedBinaryFrame")

        /// The identifier.
        public var description: String { self.rawValue }
    }

    /// The failure kind.
    public var code: Code
    /// A human-readable explanation that never contains payload values.
    public var message: String

    /// Creates an error.
    /// - Parameters:
    ///   - code: The failure kind.
    ///   - message: A safe-to-print explanation; never put payload values, tokens or URLs in it.
    public init(_ code: Code, _ message: String) {
        self.code = code
        self.message = message
    }

    /// `"<code>: <message>"`.
    public var description: String { "\(self.code.rawValue): \(self.message)" }
}
