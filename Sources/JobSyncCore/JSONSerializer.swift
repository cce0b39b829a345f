extension JSONValue: CustomStringConvertible {
    /// The compact JSON text of this value (``serialized()``).
    public var description: String { self.serialized() }

    /// The compact JSON text of this value: no whitespace, object members in stored order.
    ///
    /// Strings are escaped per RFC 8259 (`"`, `\` and control characters), and DEL, U+2028 and U+2029 are
    /// written as `\u` escapes too, so the text is safe on a terminal, in a log line and inside JavaScript; every
    /// other character is written as UTF-8. A ``JSONNumber`` whose text is not a valid JSON number is written as
    /// `null`, so the output is always valid JSON.
    public func serialized() -> String {
        var output: [UInt8] = []
        output.reserveCapacity(256)
        self.serialize(into: &output)
        return String(decoding: output, as: UTF8.self)
    }

    /// Appends the compact JSON text of this value to `output` (see ``serialized()``).
    public func serialize(into output: inout [UInt8]) {
        switch self {
        case .null:
            output.append(contentsOf: "null".utf8)
        case .bool(let flag):
            output.append(contentsOf: (flag ? "true" : "false").utf8)
        case .number(let number):
            output.append(contentsOf: (number.isValid ? number.text : "null").utf8)
        case .string(let string):
            Self.writeString(string, into: &output)
        case .array(let elements):
            output.append(UInt8(ascii: "["))
            for (index, element) in elements.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                element.serialize(into: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let object):
            output.append(UInt8(ascii: "{"))
            for (index, member) in object.members.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.writeString(member.key, into: &output)
                output.append(UInt8(ascii: ":"))
                member.value.serialize(into: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    /// The client side's one JSON string writer: `string` quoted and escaped, runs that need no escape copied whole.
    private static func writeString(_ string: String, into output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        var string = string
        string.withUTF8 { bytes in
            var written = 0
            var index = 0
            while index < bytes.count {
                guard let (codePoint, width) = Self.characterToEscape(in: bytes, at: index) else {
                    index += 1
                    continue
                }
                output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[written..<index]))
                Self.writeEscape(codePoint, into: &output)
                index += width
                written = index
            }
            output.append(contentsOf: UnsafeBufferPointer(rebasing: bytes[written...]))
        }
        output.append(UInt8(ascii: "\""))
    }

    /// The code point starting at `index` and its UTF-8 length when it must be escaped; `nil` to copy the byte.
    @inline(__always)
    private static func characterToEscape(in bytes: UnsafeBufferPointer<UInt8>, at index: Int) -> (UInt16, Int)? {
        let byte = bytes[index]
        switch byte {
        case 0x00..<0x20, UInt8(ascii: "\""), UInt8(ascii: "\\"), 0x7F:
            return (UInt16(byte), 1)
        case 0xE2 where index + 2 < bytes.count && bytes[index + 1] == 0x80 && (bytes[index + 2] | 1) == 0xA9:
            return (0x2028 + UInt16(bytes[index + 2] - 0xA8), 3)  // U+2028 LINE SEPARATOR, U+2029 PARAGRAPH SEPARATOR
        default:
            return nil
        }
    }

    private static let hexDigits: [UInt8] = Array("0123456789abcdef".utf8)

    private static func writeEscape(_ codePoint: UInt16, into output: inout [UInt8]) {
        let letter: UInt8? =
            switch codePoint {
            case 0x22, 0x5C: UInt8(codePoint)  // \" and \\
            case 0x0A: UInt8(ascii: "n")
            case 0x0D: UInt8(ascii: "r")
            case 0x09: UInt8(ascii: "t")
            case 0x08: UInt8(ascii: "b")
            case 0x0C: UInt8(ascii: "f")
            default: nil
            }
        output.append(UInt8(ascii: "\\"))
        if let letter {
            output.append(letter)
            return
        }
        output.append(UInt8(ascii: "u"))
        for shift in stride(from: 12, through: 0, by: -4) {
            output.append(Self.hexDigits[Int((codePoint >> UInt16(shift)) & 0x0F)])
        }
    }
}
