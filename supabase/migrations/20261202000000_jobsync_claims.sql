-- JobSync fleet claims: which replica of a durable consumer handles which job outcome.
--
-- Contract (for JobSync and for any other tool that wants to take part):
--
--   Several replicas of one backend share a consumer name. Before handling the terminal outcome of a job, a replica
--   calls jobsync_claim(consumer, job_id, holder, lease_seconds) with its own holder id; only the replica that gets
--   {"claimed": true} handles the outcome, then calls jobsync_ack(consumer, job_id, holder). Through PostgREST:
--
--     POST /rest/v1/rpc/jobsync_claim
--       {"p_consumer": "router", "p_job_id": "<uuid>", "p_holder": "replica-1", "p_lease_seconds": 60}
--       -> {"acked": false, "holder": "replica-1", "claimed": true, "lease_until": "2026-12-02T10:01:00+00:00"}
--     POST /rest/v1/rpc/jobsync_ack
--       {"p_consumer": "router", "p_job_id": "<uuid>", "p_holder": "replica-1"}
--       -> true
--
--   jobsync_claim takes the claim when there is none, or when the existing one is unacknowledged and its lease has
--   run out; the holder that holds it renews its lease by claiming again (lease_until = now() + lease). Its answer
--   describes the row after the call: claimed is false when another holder's lease is live, or when the claim is
--   acknowledged (whoever acknowledged it, the caller included); holder, lease_until and acked then say who has it
--   and whether it is done. Leases are measured on the database's clock (now(), the transaction's start), never on
--   a client's.
--
--   jobsync_ack answers true when the caller holds the claim, whether or not its lease has run out (as long as no
--   one took it over), and the claim is now acknowledged; acknowledging again is true again. It answers false when
--   there is no claim or another holder has it. An acknowledged claim is never taken again: the outcome is done for
--   that consumer.
--
--   Invalid arguments (null or empty consumer or holder, null job id, a lease outside 1...86400 seconds) raise
--   SQLSTATE 22023 (invalid_parameter_value); PostgREST answers them with 400 and the message.
--
-- Privileges: the functions are SECURITY DEFINER (they run as the migration's owner) with an empty search_path, so
-- every name in them is schema-qualified and nothing a caller puts in a schema can change what they do. The table
-- has row level security enabled and no policies, and no privileges for anon and authenticated: clients can touch
-- it only through the functions. jobsync_claim and jobsync_ack are executable by authenticated and service_role,
-- jobsync_prune_claims by service_role only, their helper jobsync_check_claim_arguments by no API role. On a plain
-- PostgreSQL without Supabase's roles, the grants to roles that do not exist are skipped and the functions are
-- executable only by their owner (and superusers).
--
-- The migration is idempotent: it can be applied again (SupabaseLocal applies it at every start of its PostgreSQL
-- backend). It contains no transaction control, so a migration runner can wrap it in its own transaction.

create table if not exists public.jobsync_claims (
    consumer text not null,
    job_id uuid not null,
    holder text not null,
    lease_until timestamptz not null,
    acked_at timestamptz,
    primary key (consumer, job_id)
);

comment on table public.jobsync_claims is
    'JobSync fleet claims: one row per (consumer, job) outcome, written only by jobsync_claim and jobsync_ack.';

-- Row level security without policies: anon and authenticated can read or write nothing directly, even if some
-- grant slips through. The functions run as the table's owner, which RLS does not restrict (not FORCEd).
alter table public.jobsync_claims enable row level security;

-- The argument checks jobsync_claim and jobsync_ack share (not callable by API roles).
create or replace function public.jobsync_check_claim_arguments(p_consumer text, p_job_id uuid, p_holder text)
returns void
language plpgsql
set search_path = ''
as $function$
begin
    if p_consumer is null or p_consumer = '' then
        raise exception 'p_consumer must be a non-empty text' using errcode = '22023';
    end if;
    if p_job_id is null then
        raise exception 'p_job_id must not be null' using errcode = '22023';
    end if;
    if p_holder is null or p_holder = '' then
        raise exception 'p_holder must be a non-empty text' using errcode = '22023';
    end if;
end
$function$;

create or replace function public.jobsync_claim(
    p_consumer text, p_job_id uuid, p_holder text, p_lease_seconds integer
) returns jsonb
language plpgsql
volatile
security definer
set search_path = ''
as $function$
declare
    claim public.jobsync_claims;
begin
    perform public.jobsync_check_claim_arguments(p_consumer, p_job_id, p_holder);
    if p_lease_seconds is null or p_lease_seconds < 1 or p_lease_seconds > 86400 then
        raise exception 'p_lease_seconds must be between 1 and 86400' using errcode = '22023';
    end if;

    -- One statement decides, so concurrent callers cannot both win. Without a row, the insert takes the claim; a
    -- concurrent insert of the same key makes this one wait for it to commit and then take the conflict path. On
    -- conflict, PostgreSQL locks the row's newest committed version and evaluates the WHERE on that version (not on
    -- this statement's snapshot): the claim moves only if it is unacknowledged and either ours (a renewal) or
    -- expired. Every other caller blocked on the same row sees the winner's version (its holder, a live lease) and
    -- updates nothing. The row stays locked until this transaction ends, even when the WHERE was false.
    insert into public.jobsync_claims as c (consumer, job_id, holder, lease_until)
    values (p_consumer, p_job_id, p_holder, now() + p_lease_seconds * interval '1 second')
    on conflict (consumer, job_id) do update
        set holder = excluded.holder, lease_until = excluded.lease_until
        where c.acked_at is null and (c.holder = excluded.holder or c.lease_until <= now())
    returning c.* into claim;

    if found then
        return jsonb_build_object(
            'claimed', true, 'holder', claim.holder, 'lease_until', claim.lease_until, 'acked', false);
    end if;

    -- Not claimed: the conflicting row is locked by the statement above, so this read (a new snapshot, taken after
    -- the lock was granted) sees exactly the version that refused us, and nobody can change it before we return.
    select * into strict claim from public.jobsync_claims c where c.consumer = p_consumer and c.job_id = p_job_id;
    return jsonb_build_object(
        'claimed', false, 'holder', claim.holder, 'lease_until', claim.lease_until,
        'acked', claim.acked_at is not null);
end
$function$;

comment on function public.jobsync_claim(text, uuid, text, integer) is
    'Takes, renews or reports the claim of (p_consumer, p_job_id): {"claimed", "holder", "lease_until", "acked"}.';

create or replace function public.jobsync_ack(p_consumer text, p_job_id uuid, p_holder text) returns boolean
language plpgsql
volatile
security definer
set search_path = ''
as $function$
declare
    acknowledged boolean;
begin
    perform public.jobsync_check_claim_arguments(p_consumer, p_job_id, p_holder);

    -- One statement: if a takeover of this row is in flight, the update waits for it and re-checks the holder on
    -- the row's newest version, so an ack and a takeover never both succeed. An expired lease does not matter as
    -- long as the holder is still ours. The first acknowledgement's time is kept.
    update public.jobsync_claims c
        set acked_at = coalesce(c.acked_at, now())
        where c.consumer = p_consumer and c.job_id = p_job_id and c.holder = p_holder
        returning true into acknowledged;
    return coalesce(acknowledged, false);
end
$function$;

comment on function public.jobsync_ack(text, uuid, text) is
    'Acknowledges the claim of (p_consumer, p_job_id) held by p_holder; true when it is (now) acknowledged.';

-- Housekeeping: deletes acknowledged claims acknowledged more than p_older_than ago and returns how many. Only prune
-- past the time in which an outcome could still be offered to the consumer again (its retention window): a job
-- whose claim is gone can be claimed, and so handled, again. Never touches unacknowledged claims.
create or replace function public.jobsync_prune_claims(p_older_than interval) returns bigint
language plpgsql
volatile
security definer
set search_path = ''
as $function$
declare
    deleted bigint;
begin
    if p_older_than is null or p_older_than < interval '0' then
        raise exception 'p_older_than must be a non-negative interval' using errcode = '22023';
    end if;
    delete from public.jobsync_claims c where c.acked_at is not null and c.acked_at < now() - p_older_than;
    get diagnostics deleted = row_count;
    return deleted;
end
$function$;

comment on function public.jobsync_prune_claims(interval) is
    'Deletes claims acknowledged more than p_older_than ago; returns the number deleted.';

-- Functions are executable by PUBLIC by default, and Supabase also grants new objects in public to its API roles
-- directly: take all of that back, then grant what the contract needs, to the roles that exist here.
revoke all on function public.jobsync_check_claim_arguments(text, uuid, text) from public;
revoke all on function public.jobsync_claim(text, uuid, text, integer) from public;
revoke all on function public.jobsync_ack(text, uuid, text) from public;
revoke all on function public.jobsync_prune_claims(interval) from public;

do $roles$
declare
    role_name text;
begin
    foreach role_name in array array['anon', 'authenticated'] loop
        if exists (select from pg_catalog.pg_roles where rolname = role_name) then
            execute format('revoke all on table public.jobsync_claims from %I', role_name);
            execute format('revoke all on function public.jobsync_prune_claims(interval) from %I', role_name);
        end if;
    end loop;
    foreach role_name in array array['anon', 'authenticated', 'service_role'] loop
        if exists (select from pg_catalog.pg_roles where rolname = role_name) then
            execute format(
                'revoke all on function public.jobsync_check_claim_arguments(text, uuid, text) from %I', role_name);
        end if;
    end loop;
    if exists (select from pg_catalog.pg_roles where rolname = 'anon') then
        execute 'revoke all on function public.jobsync_claim(text, uuid, text, integer) from anon';
        execute 'revoke all on function public.jobsync_ack(text, uuid, text) from anon';
    end if;
    foreach role_name in array array['authenticated', 'service_role'] loop
        if exists (select from pg_catalog.pg_roles where rolname = role_name) then
            execute format(
                'grant execute on function public.jobsync_claim(text, uuid, text, integer) to %I', role_name);
            execute format('grant execute on function public.jobsync_ack(text, uuid, text) to %I', role_name);
        end if;
    end loop;
    if exists (select from pg_catalog.pg_roles where rolname = 'service_role') then
        execute 'grant execute on function public.jobsync_prune_claims(interval) to service_role';
    end if;
end
$roles$;
