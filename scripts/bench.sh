#!/usr/bin/env bash
# Benchmarks: JobSync vs the official Python Realtime client (realtime==2.34.1) vs plain polling, against
# SupabaseLocal on loopback (in-memory backend). Builds the harness in release mode, prepares a venv with the
# Python peers, runs the harness and prints markdown tables (date, machine, every figure from this run).
#
# Usage: scripts/bench.sh [--quick] [--jobs N] [--no-python]
#          [--only outcomes,cost,specific,memory,throughput,persistence,consumers,longrun,cli,micro]
#          [--scenario healthy,disconnect,stall,dropped]   (outcome scenarios; default all)
#          [--persistence-jobs N] [--longrun-jobs N] [--longrun-delete-fraction F] [--longrun-no-cache]
#          [--retention SECONDS]
#   SCRATCH_PATH=/path/to/.build   reuse a build folder (default: .build in the repository)
#   BENCH_CLIENT_DEBUG=1           the JobSync clients under test log at debug level to their stderr
# `persistence` (SQLite merges/s, 1/4/16 mergers) counts fsyncs with strace when it is installed (apt-get install
# strace); `longrun` (all-jobs mode, 200,000 jobs, client memory at checkpoints) runs the store with its default
# retention (finished jobs leave memory after 10 minutes) or the period given by --retention.
# A full run takes about 25 minutes; --quick about 10. The outcome and cost sections also write their raw data to
# Benchmarks/JobSyncBenchmarks/results/{outcomes,cost}.json, and scripts/bench-charts.py draws docs/bench/*.svg.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build}"
VENV="$ROOT/.venv-bench"

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/pip" install --quiet "realtime==2.34.1" "postgrest==2.34.1" "websockets<16" "matplotlib==3.9.*"

(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product JobSyncBenchmarks >&2)
(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product jobwatch >&2)
# ordo-one's malloc interposer, preloaded into the throughput section's JobSync client to count its allocations.
(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --product MallocInterposerSwift >&2)
BIN="$(cd "$ROOT" && swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/JobSyncBenchmarks"

cd "$ROOT"
# The harness prints the run's provenance (commit, machine, toolchain, Python and library versions, OS, command)
# as one block at the top and stores it with the raw data (Benchmarks/JobSyncBenchmarks/results/*.json).
RESULTS="$ROOT/Benchmarks/JobSyncBenchmarks/results"
BENCH_COMMAND="scripts/bench.sh $*" BENCH_RESULTS_DIR="$RESULTS" \
    BENCH_PYTHON="$VENV/bin/python" BENCH_PY_DIR="$ROOT/Benchmarks/python" "$BIN" "$@"
# Charts (docs/bench/*.svg) from the raw data this run wrote.
if [ -f "$RESULTS/outcomes.json" ] || [ -f "$RESULTS/cost.json" ]; then
    echo
    "$VENV/bin/python" "$ROOT/scripts/bench-charts.py" --results "$RESULTS" --out "$ROOT/docs/bench"
fi
# Micro-benchmarks of the pipeline's stages (decode, merge, fan-out) with allocation counts: ordo-one/benchmark.
only=""
previous=""
for argument in "$@"; do
    [ "$previous" = "--only" ] && only="$argument"
    previous="$argument"
done
if [ -z "$only" ] || [[ ",$only," == *",micro,"* ]]; then
    echo
    echo "### Pipeline stages (ordo-one/benchmark, release build; per 1,000 events)"
    echo
    swift package --scratch-path "$SCRATCH" benchmark --target PipelineBenchmarks --no-progress --format markdown \
        2>&1 | grep -v '^Build\|^Building\|^\[' || echo "micro-benchmarks: not run (see the output above)"
fi
