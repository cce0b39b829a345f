"""Conformance check: the official Python clients against SupabaseLocal.

realtime==2.34.1 subscribes to postgres_changes on `jobs` with a filter and must receive INSERT, UPDATE and
DELETE with the right payloads (and nothing for rows outside the filter); postgrest==2.34.1 reads jobs with `eq`
and `in` filters. Broadcast from Database (broadcast-from-database.md §B1–§B5): realtime==2.34.1 joins a private
channel with a user token, `replication_ready` and `replay`, gets the replayed rows, readiness and live rows written
by the emulated trigger, and is refused with an anon token or after the read rule is changed through the admin route.
Exits non-zero if anything is missing. Run through scripts/conformance.sh.
"""

import argparse
import asyncio
import json
import re
import sys
import time
import uuid

import httpx

from postgrest import AsyncPostgrestClient
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates
from realtime.types import RealtimeAcknowledgementStatus

FAILURES: list[str] = []
PASSES: list[str] = []
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def check(condition: bool, what: str) -> None:
    (PASSES if condition else FAILURES).append(what)
    print(("PASS " if condition else "FAIL ") + what, flush=True)


async def next_event(queue: asyncio.Queue, what: str):
    try:
        return await asyncio.wait_for(queue.get(), timeout=10)
    except asyncio.TimeoutError:
        check(False, f"received {what} within 10 s")
        return None


async def realtime_checks(base: str, anon: str, rest: AsyncPostgrestClient) -> None:
    client = AsyncRealtimeClient(f"{base}/realtime/v1", anon, auto_reconnect=False)
    await client.connect()
    job_id = str(uuid.uuid4())
    other_id = str(uuid.uuid4())
    events: asyncio.Queue = asyncio.Queue()
    system_ok = asyncio.Event()
    states: list = []

    channel = client.channel("jobs-conformance")
    channel.on_postgres_changes("*", schema="public", table="jobs", filter=f"id=eq.{job_id}",
                                callback=lambda payload: events.put_nowait(payload))

    def on_system(payload) -> None:
        # realtime 2.34.1 hands a pydantic SuccessSystemPayload to system callbacks.
        if getattr(payload, "status", None) == "ok" and getattr(payload, "extension", None) == "postgres_changes":
            system_ok.set()

    channel.on_system(on_system)
    await channel.subscribe(lambda state, error: states.append((state, error)))
    check(any(state == RealtimeSubscribeStates.SUBSCRIBED for state, _ in states), "realtime: channel SUBSCRIBED")
    try:
        await asyncio.wait_for(system_ok.wait(), timeout=10)
        check(True, "realtime: system 'Subscribed to PostgreSQL' ok received")
    except asyncio.TimeoutError:
        check(False, "realtime: system 'Subscribed to PostgreSQL' ok received")

    await rest.from_("jobs").insert({"id": other_id, "status": "queued"}).execute()
    await rest.from_("jobs").insert({"id": job_id, "status": "queued", "progress": "Queued"}).execute()
    await rest.from_("jobs").update({"status": "processing", "progress": "Processing page 1 of 2"}) \
        .eq("id", job_id).execute()
    await rest.from_("jobs").update({"status": "completed", "result": {"classification": "invoice",
                                     "confidence": 0.93, "page_results": []}}).eq("id", job_id).execute()
    await rest.from_("jobs").delete().eq("id", job_id).execute()

    expected = [("INSERT", "queued"), ("UPDATE", "processing"), ("UPDATE", "completed"), ("DELETE", None)]
    for kind, status in expected:
        payload = await next_event(events, kind)
        if payload is None:
            continue
        data = payload["data"] if isinstance(payload, dict) else payload.data
        data = data if isinstance(data, dict) else data.model_dump(by_alias=True)
        check(data.get("type") == kind, f"realtime: event type {kind}")
        check(data.get("schema") == "public" and data.get("table") == "jobs", f"realtime: {kind} schema/table")
        check(bool(TIMESTAMP.match(data.get("commit_timestamp") or "")), f"realtime: {kind} commit_timestamp format")
        check(data.get("errors") is None, f"realtime: {kind} errors null")
        names = [column.get("name") for column in data.get("columns", [])]
        check(names == ["id", "status", "progress", "error", "result", "created_at", "updated_at"],
              f"realtime: {kind} columns in attnum order")
        if kind == "DELETE":
            check("record" not in data, "realtime: DELETE has no record")
            check(data.get("old_record") == {"id": job_id}, "realtime: DELETE old_record is the primary key only")
        else:
            record = data.get("record", {})
            check(record.get("id") == job_id and record.get("status") == status, f"realtime: {kind} record ({status})")
            if kind == "UPDATE":
                check(data.get("old_record") == {"id": job_id}, "realtime: UPDATE old_record is the primary key only")
            else:
                check("old_record" not in data, "realtime: INSERT has no old_record")
            if status == "completed":
                check(record.get("result", {}).get("classification") == "invoice", "realtime: jsonb result nested")
    check(events.empty(), "realtime: no event for a row outside the filter")
    await client.close()


def private_options(replay: dict | None = None) -> dict:
    broadcast: dict = {"ack": False, "self": False, "replication_ready": True}
    if replay is not None:
        broadcast["replay"] = replay
    return {"config": {"broadcast": broadcast, "presence": {"key": "", "enabled": False}, "private": True}}


async def refused_join(base: str, anon: str, token: str | None, topic: str, what: str) -> None:
    """§B2: a private join without a passing read policy is refused with the exact reason (sub-topic)."""
    client = AsyncRealtimeClient(f"{base}/realtime/v1", anon, auto_reconnect=False)
    await client.connect()
    if token:
        await client.set_auth(token)
    states: list = []
    reasons: list = []
    channel = client.channel(topic, private_options())
    channel.join_push.receive(RealtimeAcknowledgementStatus.Error, lambda response: reasons.append(response))
    await channel.subscribe(lambda state, error: states.append((state, error)))
    reason = f"Unauthorized: You do not have permissions to read from this Channel topic: {topic}"
    check(not any(state == RealtimeSubscribeStates.SUBSCRIBED for state, _ in states) and not channel.is_joined,
          f"broadcast §B2: {what}: join refused, never SUBSCRIBED")
    check(bool(reasons) and reasons[0] == {"reason": reason},
          f"broadcast §B2: {what}: error reply reason is exactly '{reason}'")
    await client.close()


async def broadcast_checks(base: str, anon: str, user: str, service: str, rest: AsyncPostgrestClient) -> None:
    since = int(time.time() * 1000) - 1000  # §B3/§B8: an integer in ms, never a float
    job_id = str(uuid.uuid4())
    topic = f"jobs:{job_id}"
    # Written before the join: the trigger (§B1.4) stores INSERT and UPDATE rows for jobs:<id> and jobs.
    await rest.from_("jobs").insert({"id": job_id, "status": "queued"}).execute()
    await rest.from_("jobs").update({"status": "processing"}).eq("id", job_id).execute()

    client = AsyncRealtimeClient(f"{base}/realtime/v1", anon, auto_reconnect=False)
    await client.connect()
    await client.set_auth(user)  # §B7: set the user JWT before subscribing
    messages: asyncio.Queue = asyncio.Queue()
    sequence: list[str] = []
    ready = asyncio.Event()
    states: list = []

    def on_broadcast(payload) -> None:
        sequence.append("replayed" if payload.get("meta", {}).get("replayed") else "live")
        messages.put_nowait(payload)

    def on_system(payload) -> None:
        if getattr(payload, "message", None) == "Replication connection established" \
                and getattr(payload, "status", None) == "ok":
            sequence.append("ready")
            ready.set()

    channel = client.channel(topic, private_options({"since": since, "limit": 25}))
    channel.on_broadcast("*", on_broadcast)
    channel.on_system(on_system)
    await channel.subscribe(lambda state, error: states.append((state, error)))
    check(any(state == RealtimeSubscribeStates.SUBSCRIBED for state, _ in states),
          "broadcast §B2: private join with an authenticated token SUBSCRIBED")
    try:
        await asyncio.wait_for(ready.wait(), timeout=10)
        check(True, "broadcast §B3: system 'Replication connection established' ok received")
    except asyncio.TimeoutError:
        check(False, "broadcast §B3: system 'Replication connection established' ok received")

    for kind, status in [("INSERT", "queued"), ("UPDATE", "processing")]:
        payload = await next_event(messages, f"replayed {kind}")
        if payload is None:
            continue
        meta = payload.get("meta", {})
        body = payload.get("payload", {})
        check(payload.get("event") == kind, f"broadcast §B5: replayed {kind} in commit order, oldest first")
        check(meta.get("replayed") is True, f"broadcast §B4/§B5: replayed {kind} has meta.replayed true")
        check(bool(meta.get("id")) and meta.get("id") == body.get("id"),
              f"broadcast §B1.2: replayed {kind} meta.id equals payload.id")
        check(body.get("operation") == kind and body.get("schema") == "public" and body.get("table") == "jobs",
              f"broadcast §B1.3: replayed {kind} operation/schema/table")
        check((body.get("record") or {}).get("status") == status, f"broadcast §B1.3: replayed {kind} record")
    check(sequence[:3] == ["replayed", "replayed", "ready"],
          "broadcast §B3/§B5: replayed rows precede the readiness message")

    await rest.from_("jobs").update({"status": "completed"}).eq("id", job_id).execute()
    await rest.from_("jobs").delete().eq("id", job_id).execute()
    for kind in ["UPDATE", "DELETE"]:
        payload = await next_event(messages, f"live {kind}")
        if payload is None:
            continue
        body = payload.get("payload", {})
        check(payload.get("event") == kind and not payload.get("meta", {}).get("replayed"),
              f"broadcast §B4: live {kind} from a database change, not replayed")
        if kind == "UPDATE":
            check(body.get("record", {}).get("status") == "completed"
                  and body.get("old_record", {}).get("status") == "processing",
                  "broadcast §B1.3: live UPDATE record and old_record")
        else:
            check(body.get("record") is None and body.get("old_record", {}).get("id") == job_id,
                  "broadcast §B1.3: live DELETE record null, old_record the old row")
    check(messages.empty(), "broadcast §B2: nothing from other topics")
    await client.close()

    await refused_join(base, anon, None, "jobs", "anon token")
    admin = {"apikey": service, "Authorization": f"Bearer {service}"}
    async with httpx.AsyncClient() as http:
        changed = await http.post(f"{base}/admin/v1/broadcast-read-rule", headers=admin, json={"rule": "deny_all"})
        check(changed.status_code == 200, "broadcast §B2: read rule changed through the admin route")
        await refused_join(base, anon, user, "jobs", "authenticated token after the policy was dropped")
        await http.post(f"{base}/admin/v1/broadcast-read-rule", headers=admin, json={"rule": "backend"})


async def postgrest_checks(base: str, anon: str, service: str) -> None:
    writer = AsyncPostgrestClient(f"{base}/rest/v1", headers={"apikey": service, "Authorization": f"Bearer {service}"})
    reader = AsyncPostgrestClient(f"{base}/rest/v1", headers={"apikey": anon, "Authorization": f"Bearer {anon}"})
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for index, job_id in enumerate(ids):
        await writer.from_("jobs").insert({"id": job_id, "status": ["queued", "processing", "completed"][index]}) \
            .execute()
    single = await reader.from_("jobs").select("*").eq("id", ids[1]).execute()
    check(len(single.data) == 1 and single.data[0]["status"] == "processing", "postgrest: eq filter")
    several = await reader.from_("jobs").select("id,status").in_("id", ids[:2]).order("status").execute()
    check([row["id"] for row in several.data] == [ids[1], ids[0]], "postgrest: in filter with order")
    check(set(several.data[0].keys()) == {"id", "status"}, "postgrest: select columns")
    counted = await reader.from_("jobs").select("*", count="exact").in_("id", ids).limit(2).execute()
    check(counted.count == 3 and len(counted.data) == 2, "postgrest: count=exact with limit")
    done = await reader.from_("jobs").select("*").in_("status", ["completed"]).eq("id", ids[2]).execute()
    check(len(done.data) == 1, "postgrest: in filter on text column")


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--keys", required=True)
    args = parser.parse_args()
    with open(args.keys) as handle:
        keys = json.load(handle)
    base = f"http://127.0.0.1:{keys['port']}"
    service = keys["service_key"]
    writer = AsyncPostgrestClient(f"{base}/rest/v1", headers={"apikey": service, "Authorization": f"Bearer {service}"})
    await realtime_checks(base, keys["anon_key"], writer)
    await broadcast_checks(base, keys["anon_key"], keys["user_key"], service, writer)
    await postgrest_checks(base, keys["anon_key"], service)
    print(f"{len(PASSES)} passed, {len(FAILURES)} failed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
