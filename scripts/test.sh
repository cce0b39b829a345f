#!/usr/bin/env bash
# Runs every test tier of JobSync on a fresh Debian machine: installs what the tests need, starts the services
# they use (a throwaway PostgreSQL with wal2json), and fails loudly if any tier cannot run.
#
#   scripts/test.sh            all tiers
#   JOBSYNC_SKIP_TSAN=1 ...    skip the ThreadSanitizer tier (local iteration only; CI never sets it)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

step() { printf '\n==> %s\n' "$*" >&2; }

# run_tests LOG COMMAND…: runs a test command into LOG; prints failures and the closing summary lines.
run_tests() {
    local log=$1
    shift
    if "$@" >"$log" 2>&1; then
        grep -E '(✘|error:|Test run with|Executed [0-9]+ test)' "$log" | tail -20
    else
        grep -E '(✘|error:|failed|Fatal|SUMMARY)' "$log" | head -60
        tail -5 "$log"
        echo "test.sh: '$*' failed (full log: $log)" >&2
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

if [ "${JOBSYNC_SKIP_TSAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "test.sh: ThreadSanitizer tier skipped by JOBSYNC_SKIP_TSAN=1 (never in CI)" >&2
else
    step "ThreadSanitizer: transport and client tests"
    run_tests .build/tsan.log swift test --sanitize=thread --scratch-path .build-tsan \
        --filter 'WebSocketTransportTests|SupabaseRealtimeTests'
fi

step "all tiers passed"
