import Foundation

/// A job's status, decoded case-insensitively (`queued`, `PROCESSING`, ...). Unknown values are kept.
public enum JobStatus: Hashable, Sendable, CustomStringConvertible {
    /// Waiting to be processed.
    case queued
    /// Being processed.
    case processing
    /// Finished successfully (terminal).
    case completed
    /// Finished with an error (terminal).
    case failed
    /// A status this version does not know, as received.
    case unknown(String)

    /// Decodes a raw status, ignoring case and surrounding spaces.
    public init(raw: String) {
        switch raw {  // the usual spelling first, without allocating
        case "queued": self = .queued
        case "processing": self = .processing
        case "completed": self = .completed
        case "failed": self = .failed
        default: self.init(normalizing: raw)
        }
    }

    private init(normalizing raw: String) {
        switch raw.trimmingCharacters(in: .whitespacesAndNewlines).lowercased() {
        case "queued": self = .queued
        case "processing": self = .processing
        case "completed": self = .completed
        case "failed": self = .failed
        default: self = .unknown(raw)
        }
    }

    /// Whether the job is finished (`completed` or `failed`).
    public var isTerminal: Bool {
        self == .completed || self == .failed
    }

    /// The order used when no timestamp decides: queued (0) < processing and unknown (1) < terminal (2).
    public var rank: Int {
        switch self {
        case .queued: return 0
        case .processing, .unknown: return 1
        case .completed, .failed: return 2
        }
    }

    /// The canonical lower-case name, or the raw text for ``unknown(_:)``.
    public var description: String {
        switch self {
        case .queued: return "queued"
        case .processing: return "processing"
        case .completed: return "completed"
        case .failed: return "failed"
        case .unknown(let raw): return raw
        }
    }
}
