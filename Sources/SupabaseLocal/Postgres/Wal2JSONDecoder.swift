/// Turns wal2json format-version 2 rows into ``TableChange`` values, typed the way Supabase Realtime types them.
///
/// Realtime reads its slot with `include-pk`, `include-timestamp`, `include-type-oids`, `format-version 2` and
/// actions `insert,update,delete` (realtime-protocol.md §5.3). Each row of `pg_logical_slot_get_changes` is then one
/// JSON object such as:
///
/// ```json
/// {"action":"U","timestamp":"2026-11-29 07:47:34.901912+00","schema":"public","table":"jobs",
///  "columns":[{"name":"id","type":"uuid","typeoid":2950,"value":"…"},…],
///  "identity":[{"name":"id","type":"uuid","typeoid":2950,"value":"…"}],"pk":[…]}
/// ```
///
/// Realtime casts each value with `to_jsonb(<text>::<type>)` (§5.2). This decoder does the same in Swift for the
/// types wal2json does not already emit as JSON: `json`/`jsonb` text is parsed, `timestamptz` becomes
/// `2026-11-29T07:47:34.899418+00:00`, `timestamp` becomes `2026-11-29T07:47:34.899418`. Numbers stay exact
/// (``LocalJSON/number(_:)`` keeps their text). The commit timestamp keeps microseconds; Realtime shows it truncated
/// to milliseconds (``LocalTimestamp/commitTimestampText``).
///
/// The decoder is a pure value: no I/O, no clock.
struct Wal2JSONDecoder: Sendable {
    /// What one wal2json row turned into.
    enum Outcome: Sendable, Equatable {
        /// A change of the served table.
        case change(TableChange)
        /// A change of another table (Realtime reads every table from one slot); ignored.
        case otherTable(schema: String, table: String)
        /// A row inserted into `realtime.messages` (broadcast-from-database.md §B1.1, §B6: only inserts stream).
        case broadcast(BroadcastRow)
        /// A row inserted into `realtime.messages` that Realtime would not stream: its `topic`, `event` or `private`
        /// is NULL, or its extension is not `broadcast` (§B6).
        case undeliverableBroadcast
    }

    /// The served table.
    let table: TableDescriptor
    /// `pg_type.typname` by type OID for the served table's columns (from the catalog); wal2json's own `type` text
    /// (`timestamp with time zone`, `bigint`, …) is not a typname.
    let typeNames: [Int: String]

    init(table: TableDescriptor, typeNames: [Int: String] = [:]) {
        self.table = table
        self.typeNames = typeNames
    }

    /// Decodes one wal2json row.
    ///
    /// - Throws: ``SupabaseLocalError`` `invalidJSON` or `invalidRow` for text that is not a wal2json v2 change.
    func decode(_ text: String) throws -> Outcome {
        let json = try LocalJSON(parsing: text)
        guard let object = json.objectValue else {
            throw SupabaseLocalError(.invalidRow, "wal2json row is not an object")
        }
        guard let schema = object["schema"]?.stringValue, let table = object["table"]?.stringValue else {
            throw SupabaseLocalError(.invalidRow, "wal2json row has no schema or table")
        }
        if schema == "realtime", table == "messages" {
            guard object["action"]?.stringValue == "I" else { return .otherTable(schema: schema, table: table) }
            return try Self.broadcastRow(object["columns"])
        }
        guard schema == self.table.schema, table == self.table.name else {
            return .otherTable(schema: schema, table: table)
        }
        let kind: TableChange.Kind
        switch object["action"]?.stringValue {
        case "I": kind = .insert
        case "U": kind = .update
        case "D": kind = .delete
        default: throw SupabaseLocalError(.invalidRow, "wal2json row has an unknown action")
        }
        guard let stampText = object["timestamp"]?.stringValue, let stamp = LocalTimestamp(parsing: stampText) else {
            throw SupabaseLocalError(.invalidTimestamp, "wal2json row has no valid commit timestamp")
        }
        var record: TableRow?
        var oldRecord: TableRow?
        switch kind {
        case .insert:
            record = try self.row(object["columns"])
        case .update:
            record = try self.row(object["columns"])
            oldRecord = try self.row(object["identity"])
        case .delete:
            oldRecord = try self.row(object["identity"])
        }
        if kind == .update, var new = record, let old = oldRecord {
            // wal2json omits unchanged TOASTed values; Realtime fills them from the old identity when it has them
            // (realtime-protocol.md §5.3, migration output_full_record_when_unchanged_toast).
            for (name, value) in old where new[name] == nil {
                new[name] = value
            }
            record = new
        }
        return .change(
            TableChange(
                kind: kind, schema: schema, table: table, commitTimestamp: stamp,
                record: record, oldRecord: oldRecord ?? (kind == .insert ? nil : [:])
            )
        )
    }

    /// The columns of an insert into `realtime.messages` as a ``BroadcastRow``: `payload` (jsonb text) parsed,
    /// `binary_payload` (bytea as hex digits, which is how wal2json prints it) as bytes, `inserted_at` (`timestamp`,
    /// UTC) as a timestamp.
    static func broadcastRow(_ list: LocalJSON?) throws -> Outcome {
        var columns: [String: LocalJSON] = [:]
        for item in list?.arrayValue ?? [] {
            guard let name = item["name"]?.stringValue else {
                throw SupabaseLocalError(.invalidRow, "wal2json column without a name")
            }
            columns[name] = item["value"] ?? .null
        }
        guard let id = columns["id"]?.stringValue, let stampText = columns["inserted_at"]?.stringValue else {
            throw SupabaseLocalError(.invalidRow, "realtime.messages row without id or inserted_at")
        }
        guard let insertedAt = LocalTimestamp(parsing: stampText) else {
            throw SupabaseLocalError(.invalidTimestamp, "realtime.messages row with an invalid inserted_at")
        }
        guard columns["extension"]?.stringValue == "broadcast", let topic = columns["topic"]?.stringValue,
            let event = columns["event"]?.stringValue, case .bool(let isPrivate)? = columns["private"]
        else {
            return .undeliverableBroadcast
        }
        var payload: LocalJSON?
        if let text = columns["payload"]?.stringValue {
            payload = try LocalJSON(parsing: text)
        }
        var binaryPayload: [UInt8]?
        if let text = columns["binary_payload"]?.stringValue {
            guard let bytes = Self.hexBytes(text) else {
                throw SupabaseLocalError(.invalidRow, "realtime.messages row with an invalid binary_payload")
            }
            binaryPayload = bytes
        }
        return .broadcast(
            BroadcastRow(
                id: id, topic: topic, event: event, payload: payload, binaryPayload: binaryPayload,
                isPrivate: isPrivate, insertedAt: insertedAt
            )
        )
    }

    /// `0aff` (wal2json's bytea text) or `\x0aff` (PostgreSQL's bytea output) → `[0x0a, 0xff]`; nil otherwise.
    static func hexBytes(_ text: String) -> [UInt8]? {
        var digits = Array(text.utf8)
        if digits.count >= 2, digits[0] == UInt8(ascii: "\\"), digits[1] == UInt8(ascii: "x") {
            digits.removeFirst(2)
        }
        guard digits.count % 2 == 0 else { return nil }
        func value(_ digit: UInt8) -> UInt8? {
            switch digit {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): digit - UInt8(ascii: "0")
            case UInt8(ascii: "a")...UInt8(ascii: "f"): digit - UInt8(ascii: "a") + 10
            case UInt8(ascii: "A")...UInt8(ascii: "F"): digit - UInt8(ascii: "A") + 10
            default: nil
            }
        }
        var bytes: [UInt8] = []
        bytes.reserveCapacity(digits.count / 2)
        var index = 0
        while index < digits.count {
            guard let high = value(digits[index]), let low = value(digits[index + 1]) else { return nil }
            bytes.append(high << 4 | low)
            index += 2
        }
        return bytes
    }

    /// A wal2json column list (`columns` or `identity`) as a row; absent list → empty row.
    private func row(_ list: LocalJSON?) throws -> TableRow {
        guard let list, !list.isNull else { return [:] }
        guard let items = list.arrayValue else {
            throw SupabaseLocalError(.invalidRow, "wal2json column list is not an array")
        }
        var row: TableRow = [:]
        for item in items {
            guard let name = item["name"]?.stringValue else {
                throw SupabaseLocalError(.invalidRow, "wal2json column without a name")
            }
            let typeName = self.typeName(of: item, column: name)
            row[name] = try Self.typed(item["value"] ?? .null, typeName: typeName)
        }
        return row
    }

    /// The column's `typname`: from its type OID, else the table descriptor, else wal2json's type text.
    private func typeName(of item: LocalJSON, column: String) -> String {
        if case .number(let text)? = item["typeoid"], let oid = Int(text) {
            if let name = self.typeNames[oid] ?? Self.builtinTypeNames[oid] { return name }
        }
        if let name = self.table.column(named: column)?.type { return name }
        return item["type"]?.stringValue ?? "text"
    }

    /// `pg_type.typname` of common built-in types by OID (stable across PostgreSQL versions).
    static let builtinTypeNames: [Int: String] = [
        16: "bool", 17: "bytea", 20: "int8", 21: "int2", 23: "int4", 25: "text", 114: "json", 700: "float4",
        701: "float8", 1043: "varchar", 1082: "date", 1114: "timestamp", 1184: "timestamptz", 1700: "numeric",
        2950: "uuid", 3802: "jsonb",
    ]

    /// A wal2json value typed as `to_jsonb(<text>::<type>)` would type it.
    ///
    /// - Throws: ``SupabaseLocalError`` `invalidJSON` when a `json`/`jsonb` value is not valid JSON (PostgreSQL
    ///   never produces that, so it means the row is corrupt).
    static func typed(_ value: LocalJSON, typeName: String) throws -> LocalJSON {
        guard case .string(let text) = value else {
            // null, numbers and booleans already have their JSON type (numbers keep their exact text).
            return value
        }
        switch typeName {
        case "json", "jsonb":
            return try LocalJSON(parsing: text)
        case "timestamptz":
            guard let stamp = LocalTimestamp(parsing: text) else { return value }
            return .string(stamp.postgresJSONText)
        case "timestamp":
            return .string(Self.isoLocalTimestamp(text))
        default:
            return value
        }
    }

    /// `2026-11-29 07:47:34.5` → `2026-11-29T07:47:34.5` (`to_jsonb(timestamp)` form).
    static func isoLocalTimestamp(_ text: String) -> String {
        var bytes = Array(text.utf8)
        if bytes.count > 10, bytes[10] == UInt8(ascii: " ") {
            bytes[10] = UInt8(ascii: "T")
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
