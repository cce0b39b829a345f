import Foundation

/// A job's id: a UUID in canonical lower-case form (`8-4-4-4-12` hex digits).
///
/// ```swift
/// let id = try JobID("2F6A1C7E-0D5B-4A53-8F3E-0C9D1B2A3E4F")  // stored lower-cased
/// ```
public struct JobID: Hashable, Comparable, Sendable, CustomStringConvertible, Codable {
    /// The canonical lower-case text.
    public let rawValue: String

    /// Validates and normalises a job id.
    ///
    /// - Throws: ``JobSyncError`` with code ``JobSyncError/Code/invalidJobID`` when `text` is not a UUID.
    ///   The message quotes at most the first 40 characters of the input.
    public init(_ text: String) throws(JobSyncError) {
        if let canonical = Self.canonical(text) {
            self.rawValue = canonical
            return
        }
        let trimmed = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard trimmed.utf8.count != text.utf8.count, let canonical = Self.canonical(trimmed) else {
            let shown = text.count > 40 ? String(text.prefix(40)) + "…" : text
            throw JobSyncError(code: .invalidJobID, message: "not a UUID job id: \"\(shown)\"")
        }
        self.rawValue = canonical
    }

    /// The lower-case form of `text` if it is exactly a UUID (no surrounding spaces); nil otherwise.
    private static func canonical(_ text: String) -> String? {
        var text = text
        guard text.utf8.count == 36 else { return nil }
        // Native strings are contiguous UTF-8: check the bytes in place (no iterator per byte).
        let verdict: Bool? = text.withUTF8 { bytes in
            var hasUpperCase = false
            for index in 0..<36 {
                let byte = bytes[index]
                if index == 8 || index == 13 || index == 18 || index == 23 {
                    guard byte == UInt8(ascii: "-") else { return nil }
                } else {
                    guard Self.isHex(byte) else { return nil }
                    hasUpperCase = hasUpperCase || (byte >= UInt8(ascii: "A") && byte <= UInt8(ascii: "F"))
                }
            }
            return hasUpperCase
        }
        guard let hasUpperCase = verdict else { return nil }
        return hasUpperCase ? text.lowercased() : text
    }

    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(self.rawValue)
    }

    private static func isHex(_ byte: UInt8) -> Bool {
        (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || (UInt8(ascii: "a")...UInt8(ascii: "f")).contains(byte)
            || (UInt8(ascii: "A")...UInt8(ascii: "F")).contains(byte)
    }

    public static func < (lhs: JobID, rhs: JobID) -> Bool { lhs.rawValue < rhs.rawValue }
    public var description: String { self.rawValue }
}
