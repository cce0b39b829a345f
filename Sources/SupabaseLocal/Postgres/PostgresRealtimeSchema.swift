/// The SQL that makes a plain PostgreSQL look like a Supabase database to Broadcast from Database
/// (broadcast-from-database.md §B1–§B2): the API roles, and a `realtime` schema with `realtime.messages`,
/// `realtime.topic()`, `realtime.send`, `realtime.send_binary` and `realtime.broadcast_changes`.
///
/// Written from the reference's description of their behaviour, not from Supabase's SQL. Every statement is
/// idempotent; ``PostgresJobsBackend`` runs them in order in one transaction, under its setup advisory lock, when
/// ``PostgresJobsBackend/Configuration/broadcast`` is on.
enum PostgresRealtimeSchema {
    static let statements: [String] = [
        // §B2: the roles whose policies Realtime evaluates. service_role bypasses row level security. Roles are
        // cluster-wide, so a second database of the same cluster finds them already there.
        """
        do $jobsync$
        begin
            if not exists (select from pg_catalog.pg_roles where rolname = 'anon') then
                create role anon nologin noinherit;
            end if;
            if not exists (select from pg_catalog.pg_roles where rolname = 'authenticated') then
                create role authenticated nologin noinherit;
            end if;
            if not exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
                create role service_role nologin noinherit bypassrls;
            end if;
        end
        $jobsync$
        """,
        "create schema if not exists realtime",
        "grant usage on schema realtime to anon, authenticated, service_role",
        // §B1.1. Supabase partitions the table by day (`PARTITION BY RANGE (inserted_at)`) and drops partitions older
        // than about three days; this one is unpartitioned and keeps every row, so a send never fails for want of a
        // partition. `inserted_at` is `now()` in UTC whatever the writer's TimeZone setting (Supabase's `now()`
        // default gives the same value on its UTC databases).
        """
        create table if not exists realtime.messages (
            topic text not null,
            extension text not null,
            payload jsonb,
            event text,
            private boolean default false,
            updated_at timestamp without time zone not null default (now() at time zone 'utc'),
            inserted_at timestamp without time zone not null default (now() at time zone 'utc'),
            id uuid not null default gen_random_uuid(),
            binary_payload bytea,
            constraint messages_one_payload check (payload is null or binary_payload is null),
            primary key (id, inserted_at)
        )
        """,
        "create index if not exists messages_replay on realtime.messages (topic, inserted_at)",
        "alter table realtime.messages enable row level security",
        "grant select, insert, update, delete on realtime.messages to anon, authenticated, service_role",
        // §B2: the sub-topic being authorized (or written by send), NULL when unset.
        """
        create or replace function realtime.topic() returns text
        language sql stable
        as $jobsync$ select nullif(pg_catalog.current_setting('realtime.topic', true), '') $jobsync$
        """,
        // §B1.2: any failure (a NULL topic, RLS, …) is only a warning: the writer goes on, the message is lost. The
        // inner block is a subtransaction, so a failed insert leaves nothing behind, the topic setting included.
        """
        create or replace function realtime.send(
            payload jsonb, event text, topic text, private boolean default true
        ) returns void
        language plpgsql
        as $jobsync$
        declare
            generated_id uuid := pg_catalog.gen_random_uuid();
            stored jsonb := payload;
        begin
            begin
                if pg_catalog.jsonb_typeof(payload) = 'object' and not payload ? 'id' then
                    stored := payload || pg_catalog.jsonb_build_object('id', generated_id);
                end if;
                perform pg_catalog.set_config('realtime.topic', topic, true);
                insert into realtime.messages (id, topic, extension, payload, event, private)
                values (generated_id, topic, 'broadcast', stored, event, private);
            exception when others then
                raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
            end;
        end
        $jobsync$
        """,
        // §B1.2: the same for raw bytes (`binary_payload`); nothing is added to them.
        """
        create or replace function realtime.send_binary(
            payload bytea, event text, topic text, private boolean default true
        ) returns void
        language plpgsql
        as $jobsync$
        declare
            generated_id uuid := pg_catalog.gen_random_uuid();
        begin
            begin
                perform pg_catalog.set_config('realtime.topic', topic, true);
                insert into realtime.messages (id, topic, extension, binary_payload, event, private)
                values (generated_id, topic, 'broadcast', payload, event, private);
            exception when others then
                raise warning 'WarnSendingBroadcastMessage: %', sqlerrm;
            end;
        end
        $jobsync$
        """,
        // §B1.3: always private (send's default); unlike send, a wrong level or operation aborts the writer.
        """
        create or replace function realtime.broadcast_changes(
            topic_name text, event_name text, operation text, table_name text, table_schema text,
            new record, old record, level text default 'ROW'
        ) returns void
        language plpgsql
        as $jobsync$
        declare
            message jsonb;
        begin
            if level is distinct from 'ROW' then
                raise exception 'Failed to process the row: level % is not supported', level;
            end if;
            if operation is null or operation not in ('INSERT', 'UPDATE', 'DELETE') then
                raise exception 'Failed to process the row: unknown operation %', operation;
            end if;
            message := pg_catalog.jsonb_build_object(
                'operation', operation,
                'schema', table_schema,
                'table', table_name,
                'record', case when operation = 'DELETE' then null else pg_catalog.to_jsonb(new) end,
                'old_record', case when operation = 'INSERT' then null else pg_catalog.to_jsonb(old) end
            );
            perform realtime.send(message, event_name, topic_name);
        end
        $jobsync$
        """,
        "grant execute on function realtime.topic() to anon, authenticated, service_role",
        "grant execute on function realtime.send(jsonb, text, text, boolean) to authenticated, service_role",
        "grant execute on function realtime.send_binary(bytea, text, text, boolean) to authenticated, service_role",
    ]
}
