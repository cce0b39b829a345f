#!/usr/bin/env bash
# Benchmarks: JobSync vs the official Python Realtime client (realtime==2.34.1) vs plain polling, against
# SupabaseLocal on loopback (in-memory backend). Builds the harness in release mode, prepares a venv with the
# Python peers, runs the harness and prints markdown tables (date, machine, every figure from this run).
#
# Usage: scripts/bench.sh [--quick] [--jobs N] [--no-python]
#          [--only outcomes,cost,specific,memory,throughput,persistence,longrun,cli]
#          [--scenario healthy,disconnect,stall,dropped]   (outcome scenarios; default all)
#          [--persistence-jobs N] [--longrun-jobs N] [--longrun-delete-fraction F] [--longrun-no-cache]
#          [--retention SECONDS]
#   SCRATCH_PATH=/path/to/.build   reuse a build folder (default: .build in the repository)
# `persistence` (SQLite merges/s, 1/4/16 mergers) counts fsyncs with strace when it is installed (apt-get install
# strace); `longrun` (all-jobs mode, 200,000 jobs, client memory at checkpoints) runs the store with its default
# retention (finished jobs leave memory after 10 minutes) or the period given by --retention.
# A full run takes about 25 minutes; --quick about 10.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build}"
VENV="$ROOT/.venv-bench"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "realtime==2.34.1" "postgrest==2.34.1" "websockets<16"

(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product JobSyncBenchmarks >&2)
(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product jobwatch >&2)
BIN="$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/JobSyncBenchmarks"

echo "- Commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD -- Sources Benchmarks Package.swift || echo ' with uncommitted changes')"
echo "- Toolchain: $(swift --version 2>/dev/null | head -1)"
echo "- Python: $("$VENV/bin/python" --version), realtime $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("realtime"))'), websockets $("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("websockets"))')"
echo "- strace (fsync counts of the persistence section): $(strace -V 2>/dev/null | head -1 || echo 'not installed')"
echo "- Command: scripts/bench.sh $*"
echo
cd "$ROOT"
BENCH_PYTHON="$VENV/bin/python" BENCH_PY_DIR="$ROOT/Benchmarks/python" "$BIN" "$@"
