#!/usr/bin/env bash
# Benchmarks: JobSync vs the official Python Realtime client (realtime==2.34.1) vs plain polling, against
# SupabaseLocal on loopback (in-memory backend). Builds the harness in release mode, prepares a venv with the
# Python peers, runs the harness and prints markdown tables (date, machine, every figure from this run).
#
# Usage: scripts/bench.sh [--quick] [--jobs N] [--only outcomes,cost,specific,memory,throughput,cli] [--no-python]
#   SCRATCH_PATH=/path/to/.build   reuse a build folder (default: .build in the repository)
# A full run takes about 15 minutes; --quick about 8.
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
echo "- Command: scripts/bench.sh $*"
echo
cd "$ROOT"
BENCH_PYTHON="$VENV/bin/python" BENCH_PY_DIR="$ROOT/Benchmarks/python" "$BIN" "$@"
