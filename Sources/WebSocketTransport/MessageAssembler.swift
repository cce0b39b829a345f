/// Reassembles inbound WebSocket messages from the chunks libwebsockets delivers, enforcing a size limit.
///
/// A pure value type: no I/O, no locking. The lws service thread owns one per connection.
struct MessageAssembler: Sendable {
    /// What appending a chunk produced.
    enum Outcome: Equatable, Sendable {
        /// More chunks are needed to complete the message.
        case incomplete
        /// A complete message.
        case message(WebSocketMessage)
        /// The message exceeds `maxMessageSize`; the connection must close with 1009.
        case tooLarge
        /// A text message is not valid UTF-8; the connection must close with 1007.
        case invalidUTF8
    }

    /// The largest message accepted, in bytes.
    let maxMessageSize: Int
    private var buffer: [UInt8] = []
    private var isBinary = false
    private var inMessage = false

    init(maxMessageSize: Int) {
        self.maxMessageSize = maxMessageSize
    }

    /// Appends one chunk.
    /// - Parameters:
    ///   - chunk: the payload bytes of this chunk.
    ///   - binary: whether the message is binary (read on the first chunk of a message only).
    ///   - final: whether this chunk completes the message.
    mutating func append(_ chunk: UnsafeRawBufferPointer, binary: Bool, final: Bool) -> Outcome {
        if !self.inMessage {
            self.inMessage = true
            self.isBinary = binary
            self.buffer.removeAll(keepingCapacity: false)
        }
        if self.buffer.count + chunk.count > self.maxMessageSize {
            self.reset()
            return .tooLarge
        }
        self.buffer.append(contentsOf: chunk)
        guard final else { return .incomplete }
        let bytes = self.buffer
        let binary = self.isBinary
        self.reset()
        if binary {
            return .message(.binary(bytes))
        }
        guard let text = String(validating: bytes, as: UTF8.self) else { return .invalidUTF8 }
        return .message(.text(text))
    }

    private mutating func reset() {
        self.buffer = []
        self.inMessage = false
        self.isBinary = false
    }
}

extension WebSocketMessage {
    /// The payload size in bytes.
    var byteCount: Int {
        switch self {
        case .text(let text): text.utf8.count
        case .binary(let bytes): bytes.count
        }
    }
}
