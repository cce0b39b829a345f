/// A parsed `postgres://` connection URL.
///
/// Accepted form: `postgres[ql]://[user[:password]@]host[:port][/database][?param=value&…]`. User, password and
/// database are percent-decoded. Parameters: `host=/dir` (a unix socket directory, as libpq accepts it) and
/// `sslmode=disable|allow|prefer` (TLS is not supported by this local stand-in; `require` and stricter are refused).
///
/// ``description`` never shows the password.
public struct PostgresConnectionURL: Sendable, Hashable, CustomStringConvertible {
    /// Host name or IP address (ignored when ``unixSocketDirectory`` is set).
    public var host: String
    /// TCP port (also names the unix socket file).
    public var port: Int
    /// Role name; defaults to `postgres`.
    public var username: String
    /// Password, if any.
    public var password: String?
    /// Database name; defaults to the user name.
    public var database: String
    /// Directory of the server's unix socket, if the URL asks for one.
    public var unixSocketDirectory: String?

    /// Parses a connection URL.
    ///
    /// - Throws: ``SupabaseLocalError`` `invalidConfiguration` with a message that never contains the URL itself.
    public init(parsing text: String) throws {
        func invalid(_ why: String) -> SupabaseLocalError {
            SupabaseLocalError(.invalidConfiguration, "invalid PostgreSQL connection URL: \(why)")
        }
        var rest = Substring(text)
        if rest.hasPrefix("postgres://") {
            rest = rest.dropFirst("postgres://".count)
        } else if rest.hasPrefix("postgresql://") {
            rest = rest.dropFirst("postgresql://".count)
        } else {
            throw invalid("the scheme must be postgres:// or postgresql://")
        }
        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        var path: Substring = ""
        if let slash = rest.firstIndex(of: "/") {
            path = rest[rest.index(after: slash)...]
            rest = rest[..<slash]
        }
        var userInfo: Substring?
        if let at = rest.lastIndex(of: "@") {
            userInfo = rest[..<at]
            rest = rest[rest.index(after: at)...]
        }
        var host = rest
        var port = 5432
        if let colon = rest.lastIndex(of: ":"), !rest.hasSuffix("]") {
            host = rest[..<colon]
            guard let value = Int(rest[rest.index(after: colon)...]), (1...65_535).contains(value) else {
                throw invalid("the port is not a number between 1 and 65535")
            }
            port = value
        }
        if host.hasPrefix("["), host.hasSuffix("]") {
            host = host.dropFirst().dropLast()
        }
        var username = "postgres"
        var password: String?
        if let userInfo {
            if let colon = userInfo.firstIndex(of: ":") {
                username = try Self.percentDecoded(userInfo[..<colon], invalid: invalid)
                password = try Self.percentDecoded(userInfo[userInfo.index(after: colon)...], invalid: invalid)
            } else {
                username = try Self.percentDecoded(userInfo, invalid: invalid)
            }
        }
        var socketDirectory: String?
        for pair in query.split(separator: "&") where !pair.isEmpty {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let key = String(parts[0])
            let value = parts.count > 1 ? try Self.percentDecoded(parts[1], invalid: invalid) : ""
            switch key {
            case "host":
                if value.hasPrefix("/") { socketDirectory = value } else { host = Substring(value) }
            case "sslmode":
                guard ["disable", "allow", "prefer"].contains(value) else {
                    throw invalid("sslmode \(value) is not supported (TLS is not available in SupabaseLocal)")
                }
            default:
                // Other libpq parameters (application_name, connect_timeout, …) do not matter here.
                continue
            }
        }
        guard !host.isEmpty || socketDirectory != nil else { throw invalid("the host is missing") }
        self.host = String(host)
        self.port = port
        self.username = username
        self.password = password
        let database = try Self.percentDecoded(path, invalid: invalid)
        self.database = database.isEmpty ? username : database
        self.unixSocketDirectory = socketDirectory
    }

    /// The URL with the password replaced by `***`.
    public var description: String {
        let credentials = self.password == nil ? self.username : "\(self.username):***"
        let socket = self.unixSocketDirectory.map { "?host=\($0)" } ?? ""
        return "postgres://\(credentials)@\(self.host):\(self.port)/\(self.database)\(socket)"
    }

    private static func percentDecoded(
        _ text: Substring,
        invalid: (String) -> SupabaseLocalError
    ) throws -> String {
        var bytes: [UInt8] = []
        var iterator = Array(text.utf8).makeIterator()
        while let byte = iterator.next() {
            guard byte == UInt8(ascii: "%") else {
                bytes.append(byte)
                continue
            }
            guard let high = iterator.next().flatMap(Self.hexValue), let low = iterator.next().flatMap(Self.hexValue)
            else { throw invalid("bad percent escape") }
            bytes.append(high << 4 | low)
        }
        guard let decoded = String(validating: bytes, as: UTF8.self) else { throw invalid("not UTF-8") }
        return decoded
    }

    private static func hexValue(_ byte: UInt8) -> UInt8? {
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): return byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): return byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): return byte - UInt8(ascii: "A") + 10
        default: return nil
        }
    }
}
