"""Conformance check: the official Python clients against SupabaseLocal.

realtime==2.34.1 subscribes to postgres_changes on `jobs` with a filter and must receive INSERT, UPDATE and
DELETE with the right payloads (and nothing for rows outside the filter); postgrest==2.34.1 reads jobs with `eq`
and `in` filters. Exits non-zero if anything is missing. Run through scripts/conformance.sh.
"""

import argparse
import asyncio
import json
import re
import sys
import uuid

from postgrest import AsyncPostgrestClient
from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

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
    await postgrest_checks(base, keys["anon_key"], service)
    print(f"{len(PASSES)} passed, {len(FAILURES)} failed", flush=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
