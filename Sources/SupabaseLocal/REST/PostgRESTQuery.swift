/// A PostgREST error response (realtime-protocol.md §11.2): HTTP status plus the JSON body text.
struct RESTError: Error, Equatable {
    var status: Int
    var body: String
    var headers: [(String, String)] = []

    static func == (lhs: RESTError, rhs: RESTError) -> Bool {
        lhs.status == rhs.status && lhs.body == rhs.body
    }

    /// `{"code":…,"details":…,"hint":…,"message":…}`.
    static func postgrest(
        _ status: Int, code: String, message: String, details: String? = nil, hint: String? = nil
    )
        -> RESTError
    {
        let body = LocalJSON.object([
            "code": .string(code),
            "details": details.map(LocalJSON.string) ?? .null,
            "hint": hint.map(LocalJSON.string) ?? .null,
            "message": .string(message),
        ]).encoded()
        return RESTError(status: status, body: body)
    }

    static func unknownColumn(_ column: String, table: String) -> RESTError {
        .postgrest(400, code: "42703", message: "column \(table).\(column) does not exist")
    }

    static func invalidInput(type: String, value: String) -> RESTError {
        let typeName = type == "timestamptz" ? "timestamp with time zone" : type
        return .postgrest(400, code: "22P02", message: "invalid input syntax for type \(typeName): \"\(value)\"")
    }

    static func parseFilter(_ text: String) -> RESTError {
        .postgrest(
            400, code: "PGRST100", message: "\"failed to parse filter (\(text))\" (line 1, column 1)",
            details: "unexpected \"\(text.prefix(1))\" expecting \"not\" or operator (eq, gt, ...)"
        )
    }
}

/// One PostgREST condition: `col=[not.]op.value`.
struct RESTCondition: Equatable {
    enum Test: Equatable {
        case compare(ColumnFilter)
        case isNull
        case isBool(Bool)
    }

    var negated: Bool
    var test: Test
    var column: String

    func matches(_ row: TableRow) -> Bool {
        let result: Bool
        switch self.test {
        case .compare(let filter): result = filter.matches(row)
        case .isNull: result = row[self.column]?.isNull ?? true
        case .isBool(let value): result = row[self.column] == .bool(value)
        }
        return self.negated ? !result : result
    }
}

/// An `order` term.
struct RESTOrder: Equatable {
    var column: TableColumn
    var ascending: Bool
    var nullsFirst: Bool
}

/// A parsed PostgREST read/write query (the subset in §11.1).
struct PostgRESTQuery: Equatable {
    var columns: [TableColumn]
    var conditions: [RESTCondition] = []
    var order: [RESTOrder] = []
    var limit: Int?
    var offset = 0

    /// Parses the raw query string (`a=b&c=d`, percent-encoded) against a table.
    static func parse(_ rawQuery: String?, table: TableDescriptor) throws(RESTError) -> PostgRESTQuery {
        var query = PostgRESTQuery(columns: table.columns)
        let pairs = (rawQuery ?? "").split(separator: "&").map { pair -> (String, String) in
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            return (percentDecode(String(parts[0])), parts.count > 1 ? percentDecode(String(parts[1])) : "")
        }
        for (key, value) in pairs {
            switch key {
            case "select":
                query.columns = try self.parseSelect(value, table: table)
            case "order":
                query.order = try self.parseOrder(value, table: table)
            case "limit":
                guard let limit = Int(value), limit >= 0 else {
                    throw .postgrest(
                        400, code: "PGRST100", message: "\"failed to parse limit (\(value))\" (line 1, column 1)")
                }
                query.limit = limit
            case "offset":
                guard let offset = Int(value), offset >= 0 else {
                    throw .postgrest(
                        400, code: "PGRST100", message: "\"failed to parse offset (\(value))\" (line 1, column 1)")
                }
                query.offset = offset
            case "apikey", "columns", "on_conflict":
                continue
            default:
                query.conditions.append(try self.parseCondition(column: key, value, table: table))
            }
        }
        return query
    }

    static func parseSelect(_ text: String, table: TableDescriptor) throws(RESTError) -> [TableColumn] {
        var columns: [TableColumn] = []
        for item in text.split(separator: ",").map({ String($0).trimmingSpaces }) {
            if item == "*" {
                columns += table.columns
            } else if let column = table.column(named: item) {
                columns.append(column)
            } else {
                throw .unknownColumn(item, table: table.name)
            }
        }
        return columns.isEmpty ? table.columns : columns
    }

    static func parseOrder(_ text: String, table: TableDescriptor) throws(RESTError) -> [RESTOrder] {
        var order: [RESTOrder] = []
        for term in text.split(separator: ",") {
            let parts = term.split(separator: ".").map(String.init)
            guard let name = parts.first, let column = table.column(named: name) else {
                throw .unknownColumn(parts.first ?? "", table: table.name)
            }
            var ascending = true
            var nullsFirst: Bool?
            for modifier in parts.dropFirst() {
                switch modifier {
                case "asc": ascending = true
                case "desc": ascending = false
                case "nullsfirst": nullsFirst = true
                case "nullslast": nullsFirst = false
                default:
                    throw .postgrest(
                        400, code: "PGRST100", message: "\"failed to parse order (\(text))\" (line 1, column 1)")
                }
            }
            order.append(RESTOrder(column: column, ascending: ascending, nullsFirst: nullsFirst ?? !ascending))
        }
        return order
    }

    static func parseCondition(
        column name: String, _ text: String, table: TableDescriptor
    ) throws(RESTError)
        -> RESTCondition
    {
        guard let column = table.column(named: name) else { throw .unknownColumn(name, table: table.name) }
        var rest = Substring(text)
        var negated = false
        if rest.hasPrefix("not.") {
            negated = true
            rest = rest.dropFirst(4)
        }
        guard let dot = rest.firstIndex(of: ".") else { throw .parseFilter(text) }
        let opText = String(rest[..<dot])
        let value = String(rest[rest.index(after: dot)...])
        if opText == "is" {
            switch value.lowercased() {
            case "null": return RESTCondition(negated: negated, test: .isNull, column: name)
            case "true": return RESTCondition(negated: negated, test: .isBool(true), column: name)
            case "false": return RESTCondition(negated: negated, test: .isBool(false), column: name)
            default: throw .parseFilter(text)
            }
        }
        guard let op = FilterOperator(rawValue: opText) else { throw .parseFilter(text) }
        let values: [String]
        if op == .in {
            guard value.hasPrefix("("), value.hasSuffix(")") else { throw .parseFilter(text) }
            guard let list = self.splitList(String(value.dropFirst().dropLast())) else { throw .parseFilter(text) }
            values = list
        } else {
            values = [self.unquote(value)]
        }
        do {
            return RESTCondition(
                negated: negated, test: .compare(try ColumnFilter(column: column, op: op, values: values)),
                column: name)
        } catch {
            guard case .invalidInput(let type, let bad) = error else { throw .parseFilter(text) }
            throw .invalidInput(type: type, value: bad)
        }
    }

    /// `"a"` → `a` (with `\"` and `\\` escapes); anything else as is.
    static func unquote(_ text: String) -> String {
        guard text.count >= 2, text.hasPrefix("\""), text.hasSuffix("\"") else { return text }
        return self.splitList(text)?.first ?? text
    }

    /// Splits an `in` list on commas outside double quotes; quoted items lose their quotes and escapes.
    static func splitList(_ text: String) -> [String]? {
        var items: [String] = []
        var current = ""
        var quoted = false
        var wasQuoted = false
        var escaping = false
        for char in text {
            if escaping {
                current.append(char)
                escaping = false
            } else if quoted {
                if char == "\\" {
                    escaping = true
                } else if char == "\"" {
                    quoted = false
                } else {
                    current.append(char)
                }
            } else if char == "\"" {
                quoted = true
                wasQuoted = true
            } else if char == "," {
                items.append(wasQuoted ? current : current.trimmingSpaces)
                current = ""
                wasQuoted = false
            } else {
                current.append(char)
            }
        }
        if quoted { return nil }
        items.append(wasQuoted ? current : current.trimmingSpaces)
        return items
    }

    /// Filter and order rows (paging is applied by the caller).
    func apply(to rows: [TableRow]) -> [TableRow] {
        let kept = rows.filter { row in self.conditions.allSatisfy { $0.matches(row) } }
        guard !self.order.isEmpty else { return kept }
        return kept.sorted { lhs, rhs in
            for term in self.order {
                let left = lhs[term.column.name].flatMap { TypedValue.from(json: $0, type: term.column.type) }
                let right = rhs[term.column.name].flatMap { TypedValue.from(json: $0, type: term.column.type) }
                switch (left, right) {
                case (nil, nil): continue
                case (nil, _): return term.nullsFirst
                case (_, nil): return !term.nullsFirst
                case (let left?, let right?):
                    guard let comparison = left.compare(to: right), comparison != 0 else { continue }
                    return term.ascending ? comparison < 0 : comparison > 0
                }
            }
            return false
        }
    }
}

/// Renders rows as PostgREST does: keys in column order, compact, jsonb values in jsonb text form.
func renderRows(_ rows: [TableRow], columns: [TableColumn]) -> String {
    var out = "["
    for (index, row) in rows.enumerated() {
        if index > 0 { out += "," }
        out += renderRow(row, columns: columns)
    }
    return out + "]"
}

/// One row as a JSON object in column order.
func renderRow(_ row: TableRow, columns: [TableColumn]) -> String {
    var out = "{"
    for (index, column) in columns.enumerated() {
        if index > 0 { out += "," }
        LocalJSON.writeString(column.name, to: &out)
        out += ":"
        (row[column.name] ?? .null).write(to: &out, style: column.type == "jsonb" ? .jsonb : .compact)
    }
    return out + "}"
}
