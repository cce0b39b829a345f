// Typed views over `postgres_changes` payloads (realtime-protocol.md §5).

public import JobSyncCore

/// The `type` of a row change (§5.2).
public enum ChangeType: Hashable, Sendable, CustomStringConvertible {
    /// `"INSERT"`.
    case insert
    /// `"UPDATE"`.
    case update
    /// `"DELETE"`.
    case delete
    /// Any other value, kept verbatim.
    case unknown(String)

    /// Parses the wire value (exact upper-case; anything else is `.unknown`).
    public init(rawValue: String) {
        switch rawValue {
        case "INSERT": self = .insert
        case "UPDATE": self = .update
        case "DELETE": self = .delete
        default: self = .unknown(rawValue)
        }
    }

    /// The wire value.
    public var rawValue: String {
        switch self {
        case .insert: "INSERT"
        case .update: "UPDATE"
        case .delete: "DELETE"
        case .unknown(let value): value
        }
    }

    /// The wire value.
    public var description: String { self.rawValue }
}

/// A `postgres_changes` payload (§5.1): `{"data": {…}, "ids": [Int]}`.
package struct PostgresChangesMessage: Hashable, Sendable {
    /// The ids of the channel's bindings this change matched (§5.5). Order is meaningless (§15.5).
    public var ids: [Int]
    /// The change itself.
    public var change: PostgresChange

    /// Creates a message.
    public init(ids: [Int], change: PostgresChange) {
        self.ids = ids
        self.change = change
    }

    /// Decodes the payload of a `postgres_changes` message. Ids may be integers or decimal strings.
    /// - Throws: `RealtimeProtocolError` if `data` is missing or malformed, or `ids` is not a list of integers.
    public init(payload: JSONValue) throws(RealtimeProtocolError) {
        let context = "postgres_changes payload"
        let object = try payload.requireObject(context)
        guard let data = object["data"] else {
            throw RealtimeProtocolError(.missingField, "\(context): missing field 'data'")
        }
        let idValues = try object.optionalArray("ids", in: context) ?? []
        var ids: [Int] = []
        ids.reserveCapacity(idValues.count)
        for value in idValues {
            guard let id = value.lenientInt else {
                throw RealtimeProtocolError(.unexpectedType, "\(context): 'ids' holds a \(value.typeName)")
            }
            ids.append(id)
        }
        self.ids = ids
        self.change = try PostgresChange(data: data)
    }
}

/// One row change, the `data` object of a `postgres_changes` payload (§5.2).
public struct PostgresChange: Hashable, Sendable {
    /// A column of the table, as listed in `columns`.
    public struct Column: Hashable, Sendable {
        /// The column name.
        public var name: String
        /// The `pg_type.typname`, e.g. `uuid`, `int8`, `jsonb`, `_text`.
        public var type: String

        /// Creates a column.
        public init(name: String, type: String) {
            self.name = name
            self.type = type
        }
    }

    /// An entry of `errors` (§5.4): what the server reports about the row instead of, or besides, its values.
    public struct RowError: Hashable, Sendable, CustomStringConvertible {
        /// The status the text starts with (`Error 413: …` gives 413), or `nil` for text of another shape.
        /// 413: the record exceeded the size limit and values longer than 64 bytes were cut; 400: the table has no
        /// primary key; 401: the subscriber may not read the row.
        public var status: Int?
        /// The text as sent, e.g. `Error 413: Payload Too Large`.
        public var text: String

        /// Reads an entry: `Error <status>: <reason>` gives its status.
        public init(_ text: String) {
            self.text = text
            let prefix = "Error "
            let digits = text.utf8.dropFirst(prefix.utf8.count).prefix(while: { $0 >= 0x30 && $0 <= 0x39 })
            self.status = text.hasPrefix(prefix) && (1...3).contains(digits.count) ? Int(Substring(digits)) : nil
        }

        /// The text as sent.
        public var description: String { self.text }
    }

    /// INSERT, UPDATE, DELETE or an unknown value.
    public var type: ChangeType
    /// The source schema.
    public var schema: String
    /// The source table.
    public var table: String
    /// `commit_timestamp` as sent, e.g. `2026-08-21T10:15:03.412Z`; `nil` when `null` or absent.
    public var commitTimestamp: String?
    /// `commitTimestamp` parsed as milliseconds since the Unix epoch; `nil` if absent or unparseable.
    public var commitTimestampMilliseconds: Int64?
    /// The readable columns in attnum order; empty on error rows.
    public var columns: [Column]
    /// The new row (absent for DELETE).
    public var record: JSONObject?
    /// The old row or its primary key (absent for INSERT, §5.3).
    public var oldRecord: JSONObject?
    /// `nil`, or the server's errors about the row, such as `Error 413: Payload Too Large`.
    public var errors: [RowError]?

    /// Creates a change.
    public init(
        type: ChangeType,
        schema: String,
        table: String,
        commitTimestamp: String? = nil,
        columns: [Column] = [],
        record: JSONObject? = nil,
        oldRecord: JSONObject? = nil,
        errors: [RowError]? = nil
    ) {
        self.type = type
        self.schema = schema
        self.table = table
        self.commitTimestamp = commitTimestamp
        self.commitTimestampMilliseconds = commitTimestamp.flatMap(Timestamp.millisecondsSinceEpoch)
        self.columns = columns
        self.record = record
        self.oldRecord = oldRecord
        self.errors = errors
    }

    /// Decodes a `data` object. `type`, `schema` and `table` are required; every other field is optional.
    /// Extra keys are ignored. A present field of the wrong type is an error.
    public init(data: JSONValue) throws(RealtimeProtocolError) {
        let context = "postgres_changes data"
        let object = try data.requireObject(context)
        self.type = ChangeType(rawValue: try object.requiredString("type", in: context))
        self.schema = try object.requiredString("schema", in: context)
        self.table = try object.requiredString("table", in: context)
        self.commitTimestamp = try object.optionalString("commit_timestamp", in: context)
        self.commitTimestampMilliseconds = self.commitTimestamp.flatMap(Timestamp.millisecondsSinceEpoch)
        var columns: [Column] = []
        if let columnValues = try object.optionalArray("columns", in: context) {
            columns.reserveCapacity(columnValues.count)
            for value in columnValues {
                let column = try value.requireObject("postgres_changes column")
                columns.append(
                    Column(
                        name: try column.requiredString("name", in: "postgres_changes column"),
                        type: try column.optionalString("type", in: "postgres_changes column") ?? ""
                    ))
            }
        }
        self.columns = columns
        self.record = try object.optionalObject("record", in: context)
        self.oldRecord = try object.optionalObject("old_record", in: context)
        if let errorValues = try object.optionalArray("errors", in: context) {
            var errors: [RowError] = []
            errors.reserveCapacity(errorValues.count)
            for value in errorValues {
                // Keep scalars as text; the server only sends strings here.
                switch value {
                case .string(let text): errors.append(RowError(text))
                case .number(let number): errors.append(RowError(number.text))
                default:
                    throw RealtimeProtocolError(.unexpectedType, "\(context): 'errors' holds a \(value.typeName)")
                }
            }
            self.errors = errors
        } else {
            self.errors = nil
        }
    }

    /// Whether the server cut the row down to ≤ 64-byte values (an error with status 413, §5.4); refetch it over
    /// REST.
    public var isTruncated: Bool {
        self.errors?.contains { $0.status == 413 } ?? false
    }

    /// Whether the row carries any error (`errors` non-empty): 400 no primary key, 401, 413.
    public var hasErrors: Bool {
        !(self.errors?.isEmpty ?? true)
    }
}

/// Parsing of the ISO 8601 timestamps used by the server.
package enum Timestamp {
    /// Parses `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM|±HHMM|±HH)` into milliseconds since the Unix epoch.
    /// A space is accepted in place of `T`. Fractions beyond milliseconds are truncated. Returns `nil` for any
    /// other shape (a missing offset included) or an out-of-range field.
    public static func millisecondsSinceEpoch(_ text: String) -> Int64? {
        guard let parsed = ISO8601Timestamp(text), parsed.hasOffset else { return nil }
        return parsed.millisecondsSinceEpoch
    }
}
