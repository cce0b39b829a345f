/// Renders the `data` object of a `postgres_changes` frame (realtime-protocol.md §5.1–§5.4).
enum ChangePayload {
    /// The payload text `{"data":{…},"ids":[…]}`.
    ///
    /// - Parameters:
    ///   - change: The committed change.
    ///   - columns: The table's columns in attnum order.
    ///   - ids: Matching binding ids, already in the order to send (reverse binding order, §15.5).
    ///   - maxRecordBytes: Above this size, only values of ≤ 64 bytes are kept and `errors` is set (§5.4).
    static func render(change: TableChange, columns: [TableColumn], ids: [Int], maxRecordBytes: Int) -> String {
        var record = change.record
        var oldRecord = change.oldRecord
        var errors = "null"
        let size =
            (record.map { LocalJSON.object($0).encoded(style: .jsonb).utf8.count } ?? 0)
            + (oldRecord.map { LocalJSON.object($0).encoded(style: .jsonb).utf8.count } ?? 0)
        if size > maxRecordBytes {
            record = record.map(self.keepShortValues)
            oldRecord = oldRecord.map(self.keepShortValues)
            errors = "[\"Error 413: Payload Too Large\"]"
        }
        let columnsJSON = LocalJSON.array(
            columns.map {
                .object(["name": .string($0.name), "type": .string($0.type)])
            }
        ).encoded(style: .jsonb)
        var out = "{\"data\":{\"columns\":" + columnsJSON + ",\"commit_timestamp\":"
        LocalJSON.writeString(change.commitTimestamp.commitTimestampText, to: &out)
        out += ",\"errors\":" + errors
        // Only `record` for INSERT, both for UPDATE, only `old_record` for DELETE (§5.2).
        if change.kind != .insert {
            out += ",\"old_record\":" + LocalJSON.object(oldRecord ?? [:]).encoded(style: .jsonb)
        }
        if change.kind != .delete {
            out += ",\"record\":" + LocalJSON.object(record ?? [:]).encoded(style: .jsonb)
        }
        out += ",\"schema\":"
        LocalJSON.writeString(change.schema, to: &out)
        out += ",\"table\":"
        LocalJSON.writeString(change.table, to: &out)
        out += ",\"type\":\"" + change.kind.rawValue + "\"},\"ids\":["
        out += ids.map(String.init).joined(separator: ",") + "]}"
        return out
    }

    /// Values whose text form is at most 64 bytes (strings by their own bytes, other values by their JSON text).
    static func keepShortValues(_ row: TableRow) -> TableRow {
        row.filter { _, value in
            let text = value.stringValue ?? value.encoded(style: .jsonb)
            return text.utf8.count <= 64
        }
    }
}
