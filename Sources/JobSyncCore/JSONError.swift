/// The one public error type of the `JobSyncCore` module: JSON text that `JSONValue.parse(_:maxDepth:)` refuses.
///
/// Its ``message`` is safe to print and log: it says what is wrong and at which byte offset, but never echoes the
/// input, so tokens and keys inside a payload cannot leak through it.
public struct JSONError: Error, Hashable, Sendable, CustomStringConvertible {
    /// What kind of failure this is. Extensible: new codes may be added in later versions, so `switch` over codes
    /// with a `default` branch.
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        /// A short stable identifier, safe as a metrics label.
        public let rawValue: String

        private init(_ rawValue: String) { self.rawValue = rawValue }

        /// The bytes are not valid RFC 8259 JSON (syntax, invalid UTF-8, bad escapes, lone surrogates).
        public static let malformedJSON = Code("malformedJSON")
        /// The JSON nests deeper than the parser's limit.
        public static let nestingTooDeep = Code("nestingTooDeep")

        /// The identifier.
        public var description: String { self.rawValue }
    }

    /// The failure kind.
    public var code: Code
    /// The offset in the input, in bytes, where the parser stopped.
    public var byteOffset: Int
    /// A human-readable explanation that ends with the byte offset and never contains input.
    public var message: String

    /// Creates an error; `what` must not contain input.
    package init(_ code: Code, _ what: String, byteOffset: Int) {
        self.code = code
        self.byteOffset = byteOffset
        self.message = "\(what) at byte offset \(byteOffset)"
    }

    /// `"<code>: <message>"`.
    public var description: String { "\(self.code.rawValue): \(self.message)" }
}
