/// SQL text for ``PostgresJobsBackend``: DDL for the served table and the statements behind its REST operations.
///
/// Identifiers are always double-quoted. Values never appear in SQL text: they are bound as one JSON parameter
/// and spread into columns with `jsonb_populate_record`, so PostgreSQL does the type conversion exactly as PostgREST
/// does for a JSON body.
struct PostgresJobsSQL: Sendable {
    let table: TableDescriptor

    /// `"name"` with embedded quotes doubled.
    static func quoted(_ identifier: String) -> String {
        "\"" + identifier.replacing("\"", with: "\"\"") + "\""
    }

    /// `"schema"."table"`.
    var qualifiedTable: String { Self.quoted(self.table.schema) + "." + Self.quoted(self.table.name) }

    private var clockTable: String {
        Self.quoted(self.table.schema) + "." + Self.quoted(self.table.name + "_updated_at_clock")
    }
    private var touchFunction: String {
        Self.quoted(self.table.schema) + "." + Self.quoted(self.table.name + "_touch_updated_at")
    }
    private var hasUpdatedAt: Bool { self.table.column(named: "updated_at")?.type == "timestamptz" }

    /// A type name usable in DDL for a `pg_type.typname` (`_text` → `text[]`).
    static func ddlType(_ typeName: String) -> String {
        typeName.hasPrefix("_") ? String(typeName.dropFirst()) + "[]" : typeName
    }

    /// Key for `pg_advisory_xact_lock`, serializing setup of the same database by several backends.
    static let setupLockKey = "jobsync.supabase-local.setup"

    /// Statements that create (or keep) the table, its `updated_at` trigger and its replica identity. Run them in one
    /// transaction after taking the advisory lock.
    func setupStatements(dropExisting: Bool) -> [String] {
        var statements: [String] = []
        if self.table.schema != "public" {
            statements.append("create schema if not exists \(Self.quoted(self.table.schema))")
        }
        if dropExisting {
            statements.append("drop table if exists \(self.qualifiedTable) cascade")
            statements.append("drop table if exists \(self.clockTable)")
        }
        var definitions = self.table.columns.map { column -> String in
            var definition = Self.quoted(column.name) + " " + Self.ddlType(column.type)
            switch (column.name, column.type) {
            case ("id", "uuid"): definition += " default gen_random_uuid()"
            case ("status", "text"): definition += " not null default 'queued'"
            case ("created_at", "timestamptz"): definition += " default now()"
            default: break
            }
            return definition
        }
        let key = self.table.primaryKey.map { Self.quoted($0.name) }
        if !key.isEmpty {
            definitions.append("primary key (" + key.joined(separator: ", ") + ")")
        }
        statements.append(
            "create table if not exists \(self.qualifiedTable) (" + definitions.joined(separator: ", ") + ")"
        )
        if self.hasUpdatedAt {
            // A one-row unlogged clock makes `updated_at` strictly increasing across every write ever made to the
            // table (deleted rows included) and ordered like the commits: the upsert holds the clock row's lock until
            // the writing transaction ends. Unlogged tables are not WAL-logged, so the clock never shows up in the
            // change stream; after a crash the table is empty and the clock restarts from `clock_timestamp()`.
            statements.append(
                "create unlogged table if not exists \(self.clockTable) "
                    + "(k boolean primary key default true check (k), last timestamptz not null)"
            )
            let column = Self.quoted("updated_at")
            statements.append(
                """
                create or replace function \(self.touchFunction)() returns trigger language plpgsql as $jobsync$
                begin
                    insert into \(self.clockTable) as c (k, last) values (true, clock_timestamp())
                    on conflict (k) do update set last = greatest(clock_timestamp(), c.last + interval '1 microsecond')
                    returning c.last into new.\(column);
                    return new;
                end
                $jobsync$
                """
            )
            statements.append(
                "create or replace trigger \(Self.quoted(self.table.name + "_touch_updated_at")) "
                    + "before insert or update on \(self.qualifiedTable) "
                    + "for each row execute function \(self.touchFunction)()"
            )
        }
        let identity = self.table.replicaIdentity == .full ? "full" : "default"
        statements.append("alter table \(self.qualifiedTable) replica identity \(identity)")
        return statements
    }

    /// Statements that remove the table, its `updated_at` clock and trigger function (for tests and cleanup).
    var dropStatements: [String] {
        [
            "drop table if exists \(self.qualifiedTable) cascade",
            "drop table if exists \(self.clockTable)",
            "drop function if exists \(self.touchFunction)()",
        ]
    }

    /// Columns of the table in `attnum` order with `typname` and type OID; bind the qualified table name as text.
    static let catalogColumnsQuery = """
        select a.attname::text, t.typname::text, a.atttypid::int8 from pg_attribute a \
        join pg_type t on t.oid = a.atttypid \
        where a.attrelid = $1::text::regclass and a.attnum > 0 and not a.attisdropped order by a.attnum
        """

    /// Every row as `to_jsonb` text.
    var selectAll: String { "select to_jsonb(t)::text from \(self.qualifiedTable) as t" }

    /// Insert of the given columns from JSON parameter `$1`, returning the stored row as `to_jsonb` text.
    func insert(columns: [String]) -> String {
        guard !columns.isEmpty else {
            return "insert into \(self.qualifiedTable) as t default values returning to_jsonb(t)::text"
        }
        let list = columns.map(Self.quoted).joined(separator: ", ")
        return "insert into \(self.qualifiedTable) as t (\(list)) select \(list) "
            + "from jsonb_populate_record(null::\(self.qualifiedTable), $1::jsonb) returning to_jsonb(t)::text"
    }

    /// `where` clause matching the primary key given as JSON object parameter `$<parameter>`.
    private func keyCondition(parameter: Int) -> String {
        let key = self.table.primaryKey.map { Self.quoted($0.name) }
        let list = key.joined(separator: ", ")
        return "(\(key.map { "t." + $0 }.joined(separator: ", "))) = "
            + "(select \(list) from jsonb_populate_record(null::\(self.qualifiedTable), $\(parameter)::jsonb))"
    }

    /// Update of the given columns from JSON parameter `$1` for the key in JSON parameter `$2`.
    func update(columns: [String]) -> String {
        let assignment: String
        if columns.isEmpty {
            // Still a write: the trigger bumps `updated_at` and a change is logged.
            let first = Self.quoted(self.table.primaryKey.first?.name ?? self.table.columns[0].name)
            assignment = "\(first) = t.\(first)"
        } else {
            let list = columns.map(Self.quoted).joined(separator: ", ")
            assignment = "(\(list)) = "
                + "(select \(list) from jsonb_populate_record(null::\(self.qualifiedTable), $1::jsonb))"
        }
        return "update \(self.qualifiedTable) as t set \(assignment) where \(self.keyCondition(parameter: 2)) "
            + "returning to_jsonb(t)::text"
    }

    /// Delete of the row whose key is in JSON parameter `$1`.
    var delete: String {
        "delete from \(self.qualifiedTable) as t where \(self.keyCondition(parameter: 1)) returning to_jsonb(t)::text"
    }

    /// Reads and consumes up to `maxChanges` changes from the slot bound as `$1`, exactly with Realtime's options
    /// (realtime-protocol.md §5.3, §5.6). Whole transactions are returned, so a batch can exceed `maxChanges`.
    static func getChanges(maxChanges: Int) -> String {
        "select data from pg_logical_slot_get_changes($1::text::name, null, \(maxChanges), "
            + "'include-pk', 'true', 'include-transaction', 'false', 'include-timestamp', 'true', "
            + "'include-type-oids', 'true', 'format-version', '2', 'actions', 'insert,update,delete')"
    }

    /// Creates a temporary wal2json slot (dropped when the session ends) named by `$1`.
    static let createTemporarySlot =
        "select 1 from pg_create_logical_replication_slot($1::text::name, 'wal2json', true)"
}
