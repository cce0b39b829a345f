/// One `postgres_changes` binding of a joined channel (realtime-protocol.md §4.2, §4.3, §6).
struct Binding: Sendable, Equatable {
    /// The map as the client sent it (echoed back, and hashed for the id).
    var raw: [String: LocalJSON]
    /// A stable hash of `raw`, in `[1, 2^27)`.
    var id: Int

    init(raw: [String: LocalJSON]) {
        self.raw = raw
        self.id = Binding.stableID(of: raw)
    }

    /// FNV-1a over the canonical (sorted-key, compact) JSON text, folded below 2^27. Never 0, because supabase-py
    /// skips bindings whose id is falsy (§5.5).
    static func stableID(of raw: [String: LocalJSON]) -> Int {
        var hash: UInt64 = 0xcbf2_9ce4_8422_2325
        for byte in LocalJSON.object(raw).encoded().utf8 {
            hash ^= UInt64(byte)
            hash = hash &* 0x0000_0100_0000_01B3
        }
        let folded = Int((hash ^ (hash >> 27) ^ (hash >> 54)) & ((1 << 27) - 1))
        return folded == 0 ? 1 : folded
    }

    /// The echo in a join reply: `"id"` first, then the other keys sorted (§15.4).
    var echoJSON: String {
        var out = "{\"id\":\(self.id)"
        for key in LocalJSON.sortedKeys(self.raw.keys, style: .compact) where key != "id" {
            out += ","
            LocalJSON.writeString(key, to: &out)
            out += ":"
            self.raw[key]!.write(to: &out, style: .compact)
        }
        return out + "}"
    }

    /// `INSERT`, `UPDATE`, `DELETE`, or nil for `*` (anything else counts as `*`, §4.2).
    var event: TableChange.Kind? {
        guard let text = self.raw["event"]?.stringValue?.uppercased() else { return nil }
        return TableChange.Kind(rawValue: text)
    }
}

/// A binding checked against the table when the subscription is created.
struct ResolvedBinding: Sendable, Equatable {
    var id: Int
    var event: TableChange.Kind?
    /// Nil means every schema (`*`).
    var schema: String?
    /// Nil means every table (`*`).
    var table: String?
    var filter: ColumnFilter?

    /// Whether a change is delivered to this binding (§5.5, §6.1: DELETE filtered on the old identity).
    func matches(_ change: TableChange) -> Bool {
        if let event = self.event, event != change.kind { return false }
        if let schema = self.schema, schema != change.schema { return false }
        if let table = self.table, table != change.table { return false }
        guard let filter = self.filter else { return true }
        switch change.kind {
        case .insert, .update: return filter.matches(change.record ?? [:])
        case .delete: return filter.matches(change.oldRecord ?? [:])
        }
    }
}

/// Turns raw bindings into subscriptions, or the `system` error text the server would send (§4.5, §6.1, §15.6).
enum BindingResolver {
    static func resolve(_ binding: Binding, table descriptor: TableDescriptor) -> Result<ResolvedBinding, BindingError>
    {
        let raw = binding.raw
        let schemaText = raw["schema"]?.stringValue
        let tableText = raw["table"]?.stringValue
        let eventText = binding.event?.rawValue ?? "*"
        guard schemaText != nil || tableText != nil else {
            return .failure(
                BindingError(
                    message:
                        "No subscription params provided. Please provide at least a `schema` or `table` to subscribe "
                        + "to: " + ElixirInspect.map(raw)
                ))
        }
        let schema = schemaText ?? "public"
        let table = tableText ?? "*"
        var filter: ColumnFilter?
        var filterTuple = "[]"
        if let filterValue = raw["filter"] {
            switch filterValue {
            case .null:
                return .failure(BindingError(message: "Error parsing `filter` params: nil"))
            case .string(let text) where text.trimmingSpaces.isEmpty:
                break
            case .string(let text):
                switch self.parseFilter(text) {
                case .failure(let error): return .failure(error)
                case .success(let (column, op, values)):
                    let valueText = op == .in ? "{" + values.joined(separator: ",") + "}" : values[0]
                    filterTuple =
                        "[{" + [column, op.rawValue, valueText].map(ElixirInspect.string).joined(separator: ", ")
                        + ", false}]"
                    let params =
                        "[event: \(eventText), schema: \(schema), table: \(table), filters: \(filterTuple), "
                        + "select: nil]"
                    let prefix =
                        "Unable to subscribe to changes with given parameters. An exception happened so please "
                        + "check your connect parameters: " + params + ". Exception: "
                    guard table == descriptor.name || table == "*",
                        let columnInfo = descriptor.column(named: column)
                    else {
                        return .failure(
                            BindingError(
                                message: prefix + "ERROR P0001 (raise_exception) invalid column for filter \(column)"
                            ))
                    }
                    if op == .in, values.count > 100 {
                        return .failure(
                            BindingError(
                                message: prefix
                                    + "ERROR P0001 (raise_exception) too many values for `in` filter. Maximum 100"
                            ))
                    }
                    do {
                        filter = try ColumnFilter(column: columnInfo, op: op, values: values)
                    } catch {
                        guard case .invalidInput(let type, let value) = error else { break }
                        return .failure(
                            BindingError(
                                message: prefix + "ERROR 22P02 (invalid_text_representation) invalid input syntax for "
                                    + "type \(type): \"\(value)\""
                            ))
                    }
                }
            default:
                return .failure(
                    BindingError(
                        message: "Error parsing `filter` params: " + ElixirInspect.value(filterValue)
                    ))
            }
        }
        let schemaMatches = schema == "*" || schema == descriptor.schema
        let tableMatches = table == "*" || table == descriptor.name
        guard schemaMatches, tableMatches else {
            return .failure(
                BindingError(
                    message:
                        "Unable to subscribe to changes with given parameters. Please check Realtime is enabled for "
                        + "the given connect parameters: [event: \(eventText), schema: \(schema), table: \(table), "
                        + "filters: \(filterTuple), select: nil]"
                ))
        }
        return .success(
            ResolvedBinding(
                id: binding.id,
                event: binding.event,
                schema: schema == "*" ? nil : schema,
                table: table == "*" ? nil : table,
                filter: filter
            ))
    }

    /// Splits `col=op.value` the way the server does (`String.split(filter, ["=", "."], parts: 3)`).
    static func parseFilter(_ text: String) -> Result<(String, FilterOperator, [String]), BindingError> {
        var parts: [String] = []
        var current = ""
        for char in text {
            if parts.count < 2, char == "=" || char == "." {
                parts.append(current)
                current = ""
            } else {
                current.append(char)
            }
        }
        parts.append(current)
        guard parts.count == 3 else {
            return .failure(
                BindingError(
                    message: "Error parsing `filter` params: ["
                        + parts.map(ElixirInspect.string).joined(separator: ", ") + "]"
                ))
        }
        let column = parts[0]
        let value = parts[2]
        guard let op = FilterOperator(rawValue: parts[1]) else {
            let params =
                "[event: *, schema: public, table: *, filters: [{"
                + [column, parts[1], value]
                .map(ElixirInspect.string).joined(separator: ", ") + ", false}], select: nil]"
            return .failure(
                BindingError(
                    message:
                        "Unable to subscribe to changes with given parameters. An exception happened so please check "
                        + "your connect parameters: " + params
                        + ". Exception: ERROR 22P02 (invalid_text_representation) "
                        + "invalid input value for enum realtime.equality_op: \"\(parts[1])\""
                ))
        }
        if op == .in {
            guard value.hasPrefix("("), value.hasSuffix(")"), value.count >= 2 else {
                return .failure(
                    BindingError(
                        message: "Error parsing `filter` params: `in` filter value must be wrapped by parentheses"
                    ))
            }
            let inner = value.dropFirst().dropLast()
            let values = inner.split(separator: ",", omittingEmptySubsequences: false).map {
                String($0).trimmingSpaces
            }
            return .success((column, op, values))
        }
        return .success((column, op, [value]))
    }
}

/// A `postgres_changes` subscription error, as the `system` message text.
struct BindingError: Error, Equatable {
    var message: String
}

/// Renders values the way Elixir's `inspect/1` does, for error texts that quote them.
enum ElixirInspect {
    static func string(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            case "#": out += "#"
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }

    static func value(_ json: LocalJSON) -> String {
        switch json {
        case .null: return "nil"
        case .bool(let value): return value ? "true" : "false"
        case .number(let text): return text
        case .string(let text): return self.string(text)
        case .array(let items): return "[" + items.map(self.value).joined(separator: ", ") + "]"
        case .object(let members): return self.map(members)
        }
    }

    static func map(_ members: [String: LocalJSON]) -> String {
        let body = LocalJSON.sortedKeys(members.keys, style: .compact).map { key in
            self.string(key) + " => " + self.value(members[key]!)
        }
        return "%{" + body.joined(separator: ", ") + "}"
    }
}

extension String {
    /// The string without leading and trailing spaces.
    var trimmingSpaces: String {
        var text = Substring(self)
        while text.first == " " { text = text.dropFirst() }
        while text.last == " " { text = text.dropLast() }
        return String(text)
    }
}
