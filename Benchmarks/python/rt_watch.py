"""Benchmark peer: the official Supabase Python Realtime client (realtime==2.34.1) watching the `jobs` table.

Driven by Benchmarks/JobSyncBenchmarks (scripts/bench.sh). It subscribes to `postgres_changes` UPDATEs on
public.jobs (one table-wide channel, filtered locally by the watched ids, as a typical app does), writes READY_FILE
once the channel is SUBSCRIBED and the server's `system` ok arrived, and records receive instants with
time.monotonic() (CLOCK_MONOTONIC, the clock the Swift harness uses too).

Modes:
  outcomes    record the first receive instant of a terminal status (completed/failed) per watched id; stop when
              STOP_FILE appears; write {"received": {id: seconds}, "process_cpu": s} to OUT_FILE.
  throughput  count every UPDATE; after COUNT of them (or STOP_FILE) write {"events", "first", "last", "cpu"} to
              OUT_FILE (cpu: from ready to the last event).

Feeds (--feed):
  postgres-changes   the default above.
  broadcast          Broadcast from Database (broadcast-from-database.md): the private table-wide topic `jobs`
                     with `replication_ready` (ready once "Replication connection established" arrived), the user
                     JWT of --access-token as the channel's token, every `UPDATE` broadcast's `record`.

The client has no REST fallback and no reconciliation: whatever the socket does not deliver is never seen.
"""

import argparse
import asyncio
import json
import os
import resource
import sys
import time

from realtime import AsyncRealtimeClient, RealtimeSubscribeStates

TERMINAL = {"completed", "failed"}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--mode", choices=["outcomes", "throughput"], required=True)
    parser.add_argument("--ids", help="file with one watched id per line (outcomes)")
    parser.add_argument("--count", type=int, default=0)
    parser.add_argument("--ready", required=True)
    parser.add_argument("--stop", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--feed", choices=["postgres-changes", "broadcast"], default="postgres-changes")
    parser.add_argument("--access-token", help="the user JWT a private broadcast channel joins with")
    parser.add_argument("--heartbeat", type=int, help="heartbeat interval in seconds (default: the client's, 25 s)")
    args = parser.parse_args()

    watched: set[str] = set()
    if args.ids:
        with open(args.ids) as handle:
            watched = {line.strip() for line in handle if line.strip()}
    received: dict[str, float] = {}
    counter = {"events": 0, "first": None, "last": None}
    done = asyncio.Event()
    system_ok = asyncio.Event()

    def on_change(payload) -> None:
        now = time.monotonic()
        if args.feed == "broadcast":
            # {event, payload: {operation, record, old_record, ...}, meta} (§B1.3, §B4)
            data = payload.get("payload") or {}
        else:
            data = payload["data"] if isinstance(payload, dict) else payload.data
        record = (data.get("record") if isinstance(data, dict) else getattr(data, "record", None)) or {}
        status = str(record.get("status", "")).lower()
        if args.mode == "throughput":
            counter["events"] += 1
            if counter["first"] is None:
                counter["first"] = now
            counter["last"] = now
            if counter["events"] >= args.count:
                counter["cpu_at_last"] = cpu_seconds()
                done.set()
            return
        job_id = record.get("id")
        if status in TERMINAL and job_id in watched and job_id not in received:
            received[job_id] = now

    def on_system(payload) -> None:
        ready = "system" if args.feed == "broadcast" else "postgres_changes"  # §B3: the replication_ready ok
        if getattr(payload, "status", None) == "ok" and getattr(payload, "extension", None) == ready:
            system_ok.set()

    options = {"hb_interval": args.heartbeat} if args.heartbeat else {}
    client = AsyncRealtimeClient(f"{args.url}/realtime/v1", args.key, auto_reconnect=True, **options)
    await client.connect()
    if args.feed == "broadcast":
        if args.access_token:
            await client.set_auth(args.access_token)
        channel = client.channel("jobs", {"config": {
            "private": True, "broadcast": {"ack": False, "self": False, "replication_ready": True},
            "presence": {"key": "", "enabled": False}}})
        channel.on_broadcast("UPDATE", on_change)
    else:
        channel = client.channel("bench-jobs")
        channel.on_postgres_changes("UPDATE", schema="public", table="jobs", callback=on_change)
    channel.on_system(on_system)
    states: list = []
    await channel.subscribe(lambda state, error: states.append(state))
    await asyncio.wait_for(system_ok.wait(), timeout=30)
    if not any(state == RealtimeSubscribeStates.SUBSCRIBED for state in states):
        print("channel not SUBSCRIBED", file=sys.stderr)
    cpu_at_ready = cpu_seconds()
    with open(args.ready, "w") as handle:
        handle.write("ready\n")

    while not done.is_set() and not os.path.exists(args.stop):
        try:
            await asyncio.wait_for(done.wait(), timeout=0.1)
        except asyncio.TimeoutError:
            pass

    cpu = counter.get("cpu_at_last", cpu_seconds()) - cpu_at_ready
    if args.mode == "throughput":
        result = {"events": counter["events"], "first": counter["first"], "last": counter["last"], "cpu": cpu}
    else:
        result = {"received": received, "process_cpu": cpu}
    with open(args.out + ".tmp", "w") as handle:
        json.dump(result, handle)
    os.replace(args.out + ".tmp", args.out)
    try:
        await asyncio.wait_for(client.close(), timeout=2)
    except Exception:  # noqa: BLE001 - shutting down; the results are already written
        pass
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
