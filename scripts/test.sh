#!/usr/bin/env bash
# Runs every test tier of JobSync on a fresh Debian machine: installs what the tests need, starts the services
# they use (a throwaway PostgreSQL with wal2json), and fails loudly if any tier cannot run.
#
#   scripts/test.sh            all tiers
#   JOBSYNC_SKIP_TSAN=1 ...    skip the ThreadSanitizer tier (local iteration only; CI never sets it)
#   JOBSYNC_SKIP_ASAN=1 ...    skip the AddressSanitizer tier (local iteration only; CI never sets it)
#   JOBSYNC_FUZZ_SECONDS=N     seconds per fuzz target (default 60)
#
# Measured times of the tiers on the 2-core Debian machine (builds from scratch, shared with another build):
#   TIMES_PLACEHOLDER
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${JOBSYNC_FUZZ_SECONDS:-60}

step() { printf '\n==> %s\n' "$*" >&2; }

# run_tests LOG COMMAND…: runs a test command into LOG; prints failures and the closing summary lines.
run_tests() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        grep -E '(✘|error:|Test run with|Executed [0-9]+ test)' "$log" | tail -20
    else
        grep -E '(✘|error:|failed|Fatal|SUMMARY|WARNING: ThreadSanitizer|ERROR: AddressSanitizer)' "$log" | head -60
        tail -5 "$log"
        echo "test.sh: '$*' failed (full log: $log)" >&2
        exit 1
    fi
}

# sanitizer_tier NAME LOG REPORTS COMMAND…: runs a test command under a sanitizer whose reports (from the test
# process and from every process it starts, e.g. the jobwatch binary) go to files REPORTS/report.PID; any report
# fails the tier, even if every test passed.
sanitizer_tier() {
    local name=$1 log=$2 reports=$3
    shift 3
    rm -rf "$reports"
    mkdir -p "$reports"
    local started=$SECONDS
    run_tests "$log" "$@"
    if compgen -G "$reports/report.*" >/dev/null; then
        head -80 "$reports"/report.*
        echo "test.sh: $name reported a problem (reports in $reports, full log: $log)" >&2
        exit 1
    fi
    echo "$name tier: $((SECONDS - started)) s (build + run)" >&2
}

# run_fuzz TARGET: builds and runs one libFuzzer target for $fuzz_seconds; on a crash prints the input's path.
run_fuzz() {
    local target=$1 log=.build/fuzz-$target.log
    if Fuzz/run.sh "$target" "$fuzz_seconds" >"$log" 2>&1; then
        grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1
        grep -E 'stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$log"
    else
        grep -E -A40 '^==[0-9]+==ERROR|Fatal error|^ERROR: libFuzzer|error:' "$log" | head -60
        grep 'CRASH INPUT' "$log" || tail -30 "$log"
        echo "test.sh: fuzz target '$target' failed (full log: $log)" >&2
        exit 1
    fi
}

step "system packages"
scripts/bootstrap.sh

step "build (debug, with tests); our code must have zero warnings"
mkdir -p .build
swift build --build-tests 2>&1 | tee .build/build.log >/dev/null || { tail -50 .build/build.log; exit 1; }
if grep -E "^$root/(Sources|Tests|Samples|Benchmarks)/.*: warning:" .build/build.log; then
    echo "test.sh: compiler warnings in our code (above)" >&2
    exit 1
fi

step "throwaway PostgreSQL with wal2json"
pgdir=$(mktemp -d /tmp/jobsync-pg.XXXXXX)
JOBSYNC_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start "$pgdir")
export JOBSYNC_TEST_POSTGRES_URL
trap 'scripts/pg-throwaway.sh stop "$pgdir" >/dev/null 2>&1 || true' EXIT

step "unit, integration and end-to-end tests"
run_tests .build/test.log swift test --skip-build

step "conformance: the official Python realtime and postgrest clients against SupabaseLocal"
scripts/conformance.sh

step "fuzzing: frame decoders (vsn 1.0.0/2.0.0 text, binary) and REST response decoders, ${fuzz_seconds} s each"
# After the debug build: the rest target compiles swift-log from the package checkout in .build/checkouts.
for target in frames rest; do
    run_fuzz "$target"
done

# The sanitizer tiers run the FULL suite (PostgreSQL tier, jobwatch binary tests and the soak included). Under
# ThreadSanitizer the soak is bounded by its own knobs (a shorter fault phase, fewer jobs): instrumented, a
# 60 s / 1,000-job soak takes SOAK_TSAN_PLACEHOLDER. It still runs every fault kind and every invariant check.
if [ "${JOBSYNC_SKIP_TSAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "test.sh: ThreadSanitizer tier skipped by JOBSYNC_SKIP_TSAN=1 (never in CI)" >&2
else
    step "ThreadSanitizer: the full suite"
    JOBSYNC_SOAK_SECONDS=${JOBSYNC_TSAN_SOAK_SECONDS:-30} JOBSYNC_SOAK_JOBS=${JOBSYNC_TSAN_SOAK_JOBS:-500} \
        TSAN_OPTIONS="log_path=$root/.build/tsan-reports/report ${TSAN_OPTIONS:-}" \
        sanitizer_tier ThreadSanitizer .build/tsan.log .build/tsan-reports \
        swift test --sanitize=thread --scratch-path .build-tsan
fi

if [ "${JOBSYNC_SKIP_ASAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "test.sh: AddressSanitizer tier skipped by JOBSYNC_SKIP_ASAN=1 (never in CI)" >&2
else
    step "AddressSanitizer: the full suite"
    ASAN_OPTIONS="log_path=$root/.build/asan-reports/report ${ASAN_OPTIONS:-}" \
        sanitizer_tier AddressSanitizer .build/asan.log .build/asan-reports \
        swift test --sanitize=address --scratch-path .build-asan
fi

step "all tiers passed"
