/// A PostgREST filter on one column (reference/realtime-protocol.md §11.1).
public struct PostgRESTFilter: Sendable, Hashable {
    /// The filter operator and its operand(s).
    public enum Operator: Sendable, Hashable {
        /// `eq.v`
        case eq(String)
        /// `neq.v`
        case neq(String)
        /// `gt.v`
        case gt(String)
        /// `gte.v`
        case gte(String)
        /// `lt.v`
        case lt(String)
        /// `lte.v`
        case lte(String)
        /// `in.(a,b,c)`; at most ``PostgRESTFilter/maximumInValues`` values, quoted when they hold reserved characters.
        case `in`([String])
        /// `is.null`
        case isNull
    }

    /// The most values one `in.(…)` filter may hold.
    public static let maximumInValues = 100

    /// The column name.
    public var column: String
    /// The operator.
    public var op: Operator

    /// Creates a filter.
    public init(_ column: String, _ op: Operator) {
        self.column = column
        self.op = op
    }

    /// The filter's query value (before percent-encoding), e.g. `in.(a,"b,c")`.
    public var queryValue: String {
        switch self.op {
        case .eq(let value): return "eq." + value
        case .neq(let value): return "neq." + value
        case .gt(let value): return "gt." + value
        case .gte(let value): return "gte." + value
        case .lt(let value): return "lt." + value
        case .lte(let value): return "lte." + value
        case .in(let values): return "in.(" + values.map(Self.quoteListItem).joined(separator: ",") + ")"
        case .isNull: return "is.null"
        }
    }

    /// Quotes a list item when it contains a PostgREST reserved character (`,` `.` `:` `*` `(` `)`), a quote,
    /// a backslash or surrounding spaces, or is empty; escapes `"` and `\` inside the quotes.
    static func quoteListItem(_ value: String) -> String {
        let reserved: Set<Character> = [",", ".", ":", "*", "(", ")", "\"", "\\"]
        let needsQuotes =
            value.isEmpty || value.contains(where: { reserved.contains($0) }) || value.first == " "
            || value.last == " " || value.lowercased() == "null"
        guard needsQuotes else { return value }
        var out = "\""
        for character in value {
            if character == "\"" || character == "\\" { out.append("\\") }
            out.append(character)
        }
        return out + "\""
    }
}

/// A sort key for `order=`.
public struct PostgRESTOrder: Sendable, Hashable {
    /// The column.
    public var column: String
    /// Ascending (`.asc`) or descending (`.desc`).
    public var ascending: Bool

    /// Creates a sort key.
    public init(_ column: String, ascending: Bool = true) {
        self.column = column
        self.ascending = ascending
    }
}

/// A read query on one table: `select`, filters (ANDed), `order`, `limit`, `offset`.
public struct PostgRESTQuery: Sendable, Hashable {
    /// The table (or view) name.
    public var table: String
    /// The table's schema, sent as PostgREST's `Accept-Profile` header (its schema switching); nil (the
    /// default) sends no header and reads the server's default schema (`public` on Supabase). The schema must
    /// be exposed by the server, or the answer is `406` with `PGRST106`.
    public var schema: String?
    /// The `select` list (default `*`).
    public var select: String
    /// Filters, ANDed.
    public var filters: [PostgRESTFilter]
    /// Sort keys.
    public var order: [PostgRESTOrder]
    /// `limit`, when set.
    public var limit: Int?
    /// `offset`, when set.
    public var offset: Int?

    /// Creates a query.
    public init(
        table: String,
        select: String = "*",
        filters: [PostgRESTFilter] = [],
        order: [PostgRESTOrder] = [],
        limit: Int? = nil,
        offset: Int? = nil,
        schema: String? = nil
    ) {
        self.table = table
        self.schema = schema
        self.select = select
        self.filters = filters
        self.order = order
        self.limit = limit
        self.offset = offset
    }

    /// Checks the query against PostgREST and Supabase limits.
    ///
    /// - Throws: ``RESTError/Code/invalidRequest`` for an empty/unsafe table or schema name, an `in` list over
    ///   100 values or empty, or a negative limit/offset.
    public func validate() throws(RESTError) {
        let allowed = Set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")
        guard !self.table.isEmpty, self.table.allSatisfy({ allowed.contains($0) }) else {
            throw RESTError(code: .invalidRequest, message: "invalid table name")
        }
        if let schema = self.schema {
            guard !schema.isEmpty, schema.allSatisfy({ allowed.contains($0) }) else {
                throw RESTError(code: .invalidRequest, message: "invalid schema name")
            }
        }
        for filter in self.filters {
            guard !filter.column.isEmpty, filter.column.allSatisfy({ allowed.contains($0) }) else {
                throw RESTError(code: .invalidRequest, message: "invalid column name in filter")
            }
            if case .in(let values) = filter.op {
                guard !values.isEmpty, values.count <= PostgRESTFilter.maximumInValues else {
                    throw RESTError(
                        code: .invalidRequest,
                        message: "an in.(…) filter needs 1…\(PostgRESTFilter.maximumInValues) values, "
                            + "got \(values.count)"
                    )
                }
            }
        }
        if let limit = self.limit, limit < 0 { throw RESTError(code: .invalidRequest, message: "negative limit") }
        if let offset = self.offset, offset < 0 { throw RESTError(code: .invalidRequest, message: "negative offset") }
    }

    /// The percent-encoded query string (without `?`), parameters in a fixed order: select, filters, order,
    /// limit, offset.
    public var queryString: String {
        var items: [(String, String)] = [("select", self.select)]
        items += self.filters.map { ($0.column, $0.queryValue) }
        if !self.order.isEmpty {
            items.append(
                ("order", self.order.map { "\($0.column).\($0.ascending ? "asc" : "desc")" }.joined(separator: ",")))
        }
        if let limit = self.limit { items.append(("limit", String(limit))) }
        if let offset = self.offset { items.append(("offset", String(offset))) }
        return items.map { percentEncode($0.0) + "=" + percentEncode($0.1) }.joined(separator: "&")
    }
}

/// Percent-encodes a query component: everything except ASCII letters, digits and `-._~,():*` is encoded,
/// so `+` becomes `%2B`, `"` `%22`, space `%20`, `&` `%26`, `=` `%3D`.
public func percentEncode(_ text: String) -> String {
    var out = ""
    for byte in text.utf8 {
        switch byte {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "."), UInt8(ascii: "_"),
            UInt8(ascii: "~"), UInt8(ascii: ","), UInt8(ascii: "("), UInt8(ascii: ")"), UInt8(ascii: ":"),
            UInt8(ascii: "*"):
            out.unicodeScalars.append(Unicode.Scalar(byte))
        default:
            let hex = String(byte, radix: 16, uppercase: true)
            out += "%" + (hex.count == 1 ? "0" : "") + hex
        }
    }
    return out
}
