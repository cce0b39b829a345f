-- JobSync: Broadcast from Database for public.jobs (private channels, replayable).
--
-- What it does: every committed INSERT, UPDATE or DELETE on public.jobs writes two messages into
-- realtime.messages, one on the row's topic `jobs:<id>` and one on the table-wide topic `jobs`, each with the
-- event INSERT/UPDATE/DELETE and the payload realtime.broadcast_changes builds:
--
--     {"id": "<message uuid>", "operation": "UPDATE", "schema": "public", "table": "jobs",
--      "record": {...new row...}, "old_record": {...old row...}}
--
-- (`record` is null on DELETE, `old_record` null on INSERT.) Supabase Realtime streams the rows to private
-- channels after the commit and keeps them about three days for replay (at most 25 per join). Clients join
-- `realtime:jobs:<id>` or `realtime:jobs` with `private: true` and a user JWT.
--
-- Who may read: the policy below lets every `authenticated` user read the broadcasts of every jobs topic.
-- Realtime checks it per topic when a client joins (and when it sends a new access token), never per message:
-- the policy sees realtime.topic() and extension, not the payload. To restrict users to their own jobs, replace
-- its USING clause, for example with
--     extension = 'broadcast' and exists (select 1 from public.jobs j
--         where 'jobs:' || j.id = (select realtime.topic()) and j.owner_id = (select auth.uid()))
-- `anon` gets no policy, so anonymous clients are refused; `service_role` bypasses row level security.
--
-- The trigger function is SECURITY DEFINER with an empty search_path: it runs as the migration's owner (so its
-- inserts into realtime.messages do not depend on the writer's privileges there) and every name in it is
-- schema-qualified. It uses tg_table_name for the topics, so it can be attached to other tables too.
--
-- The migration is idempotent and contains no transaction control. It can run before public.jobs exists: the
-- trigger is then not created (run the migration again after creating the table). SupabaseLocal applies this
-- SQL to its PostgreSQL backend when broadcast is enabled, after installing the realtime schema Supabase
-- provides.

create or replace function public.jobs_broadcast()
returns trigger
language plpgsql
security definer
set search_path = ''
as $function$
declare
    -- NEW is null on DELETE and OLD on INSERT: the row's key comes from whichever is there.
    row_key text := coalesce(new.id, old.id)::text;
begin
    -- The row's own topic, e.g. `jobs:6f1e1a52-…`.
    perform realtime.broadcast_changes(
        tg_table_name || ':' || row_key, tg_op, tg_op, tg_table_name, tg_table_schema, new, old, tg_level
    );
    -- The table-wide topic, e.g. `jobs`.
    perform realtime.broadcast_changes(
        tg_table_name, tg_op, tg_op, tg_table_name, tg_table_schema, new, old, tg_level
    );
    return null;  -- an AFTER trigger's result is ignored
end
$function$;

comment on function public.jobs_broadcast() is
    'JobSync: broadcasts each row change of its table to the private topics <table>:<id> and <table>.';

-- The trigger, only when the table is there (the file may run before the migration that creates it).
do $block$
begin
    if to_regclass('public.jobs') is not null then
        create or replace trigger jobs_broadcast
            after insert or update or delete on public.jobs
            for each row execute function public.jobs_broadcast();
    end if;
end
$block$;

-- Read access to the jobs topics for signed-in users (see the header). Dropped and created again so that
-- applying the migration twice leaves exactly this policy.
drop policy if exists jobs_broadcast_read on realtime.messages;
create policy jobs_broadcast_read on realtime.messages
    for select
    to authenticated
    using ((select realtime.topic()) like 'jobs%' and extension = 'broadcast');
