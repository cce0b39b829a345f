#!/usr/bin/env bash
# Conformance: the official Python clients (realtime 2.34.1, postgrest 2.34.1) against SupabaseLocal.
# Usage: scripts/conformance.sh   (SCRATCH_PATH=/path/to/.build to reuse a build folder)
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build}"
VENV="$ROOT/.venv-conformance"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "realtime==2.34.1" "postgrest==2.34.1" "websockets<16"

(cd "$ROOT" && swift build --scratch-path "$SCRATCH" --product supabase-local >/dev/null)
BIN="$(cd "$ROOT" && swift build --scratch-path "$SCRATCH" --show-bin-path)/supabase-local"

WORK="$(mktemp -d)"
"$BIN" --keys-file "$WORK/keys.json" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
cleanup() {
    kill "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 300); do
    [ -s "$WORK/keys.json" ] && break
    kill -0 "$SERVER_PID" 2>/dev/null || { echo "supabase-local exited:"; cat "$WORK/server.log"; exit 1; }
    sleep 0.1
done
[ -s "$WORK/keys.json" ] || { echo "supabase-local did not start"; exit 1; }

"$VENV/bin/python" "$ROOT/Tests/Conformance/conformance.py" --keys "$WORK/keys.json"
