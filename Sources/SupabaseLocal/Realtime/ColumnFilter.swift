/// A comparison operator shared by Realtime filters (§6.1) and PostgREST filters (§11.1).
enum FilterOperator: String, Sendable, CaseIterable {
    case eq, neq, lt, lte, gt, gte, `in`
}

/// Why a filter value cannot be used with a column (rendered by the caller in the server's own words).
enum FilterValueError: Error, Equatable {
    /// Text that is not a valid literal of the column type (SQLSTATE 22P02).
    case invalidInput(type: String, value: String)
}

/// A parsed single-column condition with values already checked against the column type.
struct ColumnFilter: Sendable, Equatable {
    var column: TableColumn
    var op: FilterOperator
    /// One value, or several for `in`.
    var values: [String]
    /// `values` parsed once for the column type (matching runs per row and per change).
    private var typedValues: [TypedValue]
    /// For `in` over text-like columns (uuid, text): the values as a set, so that a 100-id filter costs one lookup
    /// per row instead of 100 comparisons.
    private var textValues: Set<String>?

    /// Builds a filter, checking every value against the column's type.
    init(column: TableColumn, op: FilterOperator, values: [String]) throws(FilterValueError) {
        var typedValues: [TypedValue] = []
        for value in values {
            guard let typed = TypedValue.parse(value, type: column.type) else {
                throw .invalidInput(type: column.type, value: value)
            }
            typedValues.append(typed)
        }
        self.column = column
        self.op = op
        self.values = values
        self.typedValues = typedValues
        let texts = typedValues.compactMap { value -> String? in
            if case .text(let text) = value { return text }
            return nil
        }
        self.textValues = op == .in && texts.count == typedValues.count ? Set(texts) : nil
    }

    /// Whether a row satisfies the condition. A missing or null column fails every comparison (§6.1).
    func matches(_ row: TableRow) -> Bool {
        guard let cell = row[self.column.name], !cell.isNull,
            let left = TypedValue.from(json: cell, type: self.column.type)
        else { return false }
        let rights = self.typedValues
        switch self.op {
        case .in:
            if let texts = self.textValues, case .text(let text) = left { return texts.contains(text) }
            return rights.contains { left.equals($0) == true }
        case .eq: return rights.first.map { left.equals($0) == true } ?? false
        case .neq: return rights.first.map { left.equals($0) == false } ?? false
        case .lt: return rights.first.flatMap { left.compare(to: $0) }.map { $0 < 0 } ?? false
        case .lte: return rights.first.flatMap { left.compare(to: $0) }.map { $0 <= 0 } ?? false
        case .gt: return rights.first.flatMap { left.compare(to: $0) }.map { $0 > 0 } ?? false
        case .gte: return rights.first.flatMap { left.compare(to: $0) }.map { $0 >= 0 } ?? false
        }
    }
}

/// A value interpreted by PostgreSQL type for comparisons.
enum TypedValue: Equatable {
    case text(String)
    case number(Double, exact: String)
    case bool(Bool)
    case timestamp(LocalTimestamp)

    static let integerTypes: Set<String> = ["int2", "int4", "int8"]
    static let numericTypes: Set<String> = ["int2", "int4", "int8", "float4", "float8", "numeric"]

    /// Parses a filter literal for the column type; nil when PostgreSQL would reject it.
    static func parse(_ text: String, type: String) -> TypedValue? {
        switch type {
        case "uuid":
            return isUUID(text) ? .text(text.lowercased()) : nil
        case "timestamptz", "timestamp":
            return LocalTimestamp(parsing: text).map { .timestamp($0) }
        case "bool":
            switch text.lowercased() {
            case "true", "t", "yes", "on", "1": return .bool(true)
            case "false", "f", "no", "off", "0": return .bool(false)
            default: return nil
            }
        case _ where integerTypes.contains(type):
            return Int64(text).map { .number(Double($0), exact: text) }
        case _ where numericTypes.contains(type):
            return Double(text).map { .number($0, exact: text) }
        default:
            return .text(text)
        }
    }

    /// Interprets a stored JSON cell for the column type.
    static func from(json: LocalJSON, type: String) -> TypedValue? {
        switch json {
        case .string(let text): return TypedValue.parse(text, type: type) ?? .text(text)
        case .number(let text): return Double(text).map { .number($0, exact: text) }
        case .bool(let value): return .bool(value)
        case .null: return nil
        case .array, .object: return .text(json.encoded(style: .jsonb))
        }
    }

    /// Whether the two are equal (cheaper than ``compare(to:)``); nil when they are not comparable.
    func equals(_ other: TypedValue) -> Bool? {
        switch (self, other) {
        case (.text(let a), .text(let b)): a == b
        case (.number(let a, let exactA), .number(let b, let exactB)): exactA == exactB || a == b
        case (.bool(let a), .bool(let b)): a == b
        case (.timestamp(let a), .timestamp(let b)): a == b
        default: nil
        }
    }

    /// -1, 0, 1, or nil when the two are not comparable.
    func compare(to other: TypedValue) -> Int? {
        switch (self, other) {
        case (.text(let a), .text(let b)):
            if a == b { return 0 }
            return a.utf8.lexicographicallyPrecedes(b.utf8) ? -1 : 1
        case (.number(let a, let exactA), .number(let b, let exactB)):
            if exactA == exactB || a == b { return 0 }
            return a < b ? -1 : 1
        case (.bool(let a), .bool(let b)):
            return a == b ? 0 : (!a ? -1 : 1)
        case (.timestamp(let a), .timestamp(let b)):
            return a == b ? 0 : (a < b ? -1 : 1)
        default:
            return nil
        }
    }
}
