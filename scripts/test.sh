#!/usr/bin/env bash
# Runs every test tier of JobSync on a fresh Debian machine: installs what the tests need, starts the services
# they use (a throwaway PostgreSQL with wal2json), and fails loudly if any tier cannot run.
#
#   scripts/test.sh            all tiers
#   JOBSYNC_SKIP_TSAN=1 ...    skip the ThreadSanitizer tier (local iteration only; CI never sets it)
#   JOBSYNC_SKIP_ASAN=1 ...    skip the AddressSanitizer tier (local iteration only; CI never sets it)
#   JOBSYNC_FUZZ_SECONDS=N     seconds per fuzz target (default 60)
#
# Measured times, `CI=true bash .ci/run` on a fresh clone on the 2-core Debian machine (2026-12-02, commit 2e2a184,
# 31 min in all, its first 14 min sharing the cores with another ASan test process): unit/integration/end-to-end tests 195 s; ThreadSanitizer
# build 253 s, tests 263 s; AddressSanitizer build 268 s, tests 237 s. Two runs at once on the same cores took about
# 55 min each and passed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
fuzz_seconds=${JOBSYNC_FUZZ_SECONDS:-60}

step() { printf '\n==> %s\n' "$*" >&2; }

# run_tests LOG COMMAND…: runs a test command into LOG; prints failures and the closing summary lines.
run_tests() {
    local log=$1
    shift
    local status=0
    "$@" >"$log" 2>&1 || status=$?
    if [ "$status" -eq 0 ]; then
        grep -E '(✘|error:|Test run with|Executed [0-9]+ test)' "$log" | tail -20
        # swift-testing counts a skipped test in "Test run with N tests … passed": name each one, so none reads as run.
        grep -E '^➜ Test .* skipped' "$log" | sed 's/^➜ /skipped, did not run: /' || true
    else
        grep -E '(✘|error:|failed|Fatal|SUMMARY|WARNING: ThreadSanitizer|ERROR: AddressSanitizer)' "$log" | head -60 || true
        tail -5 "$log"
        if [ "$status" -eq 124 ]; then
            echo "test.sh: '$*' HUNG and was killed by its watchdog. Tests started but not finished:" >&2
            unfinished_tests "$log" >&2
            sed -n '/^=== watchdog: threads of/,$p' "$log" | head -400 >&2
        fi
        echo "test.sh: '$*' failed with status $status (full log: $log)" >&2
        exit 1
    fi
}

# unfinished_tests LOG: the swift-testing tests of LOG that started and neither passed nor failed.
unfinished_tests() {
    local started ended
    started=$(sed -n 's/^◇ Test \(".*"\) started\.$/\1/p' "$1" | sort)
    ended=$(sed -n 's/^[✔✘] Test \(".*"\) .*\(passed\|failed\) after .*/\1/p' "$1" | sort -u)
    comm -23 <(printf '%s\n' "$started") <(printf '%s\n' "$ended") | sed 's/^/    /'
}

# dump_threads PID: prints the threads' backtraces of PID and of its descendants (gdb), to read a hang.
dump_threads() {
    local child
    echo "=== watchdog: threads of $1 ($(tr '\0' ' ' </proc/"$1"/cmdline 2>/dev/null | cut -c1-200))"
    timeout 120 gdb -p "$1" -batch -nx -ex "set pagination off" -ex "thread apply all bt 25" 2>&1 \
        | grep -E '^(Thread|#)' || true
    for child in $(pgrep -P "$1" || true); do
        dump_threads "$child"
    done
}

# kill_tree PID: ends a process and all its descendants (children first), by pid.
kill_tree() {
    local child
    for child in $(pgrep -P "$1" || true); do
        kill_tree "$child"
    done
    kill -TERM "$1" 2>/dev/null || true
}

# watchdog SECONDS COMMAND…: runs COMMAND; if it is still running after SECONDS, ends it and every process it
# started (`swift test` runs the test binary in a process group of its own, which `timeout` would not reach) and
# returns 124; before that it prints the backtraces of every thread of those processes.
watchdog() {
    local limit=$1 marker
    shift
    marker=$(mktemp)
    "$@" &
    local pid=$!
    (
        sleep "$limit"
        # Ended meanwhile (or this watchdog is being stopped, which ends its sleep first): not a hang.
        kill -0 "$pid" 2>/dev/null || exit 0
        echo hung >"$marker"
        dump_threads "$pid" >&2
        kill_tree "$pid"
    ) &
    local dog=$!
    local status=0
    wait "$pid" || status=$?
    kill_tree "$dog"
    wait "$dog" 2>/dev/null || true
    if [ -s "$marker" ]; then status=124; fi
    rm -f "$marker"
    return "$status"
}

# sanitizer_tier NAME FLAG SCRATCH REPORTS: builds the package and its tests with `--sanitize=FLAG` into SCRATCH,
# then runs every test target's tests (Tests/*/*.swift, so a new target is never left out) in its own `swift test`
# process. One target at a time: the whole suite in one instrumented process on 2 cores starves the loopback
# servers and fails timing-bound tests for no fault of the code. Sanitizer reports of the test process and of the
# instrumented binaries it starts (jobwatch, the samples: they inherit the options) go to files REPORTS/report.PID
# and fail the tier even if every test passed. Output is line-buffered and each target has a hang watchdog, so a
# hang names the tests that were running and shows every thread's backtrace.
sanitizer_tier() {
    local name=$1 flag=$2 scratch=$3 reports=$4
    local started=$SECONDS target
    rm -rf "$reports"
    mkdir -p "$reports"
    swift build --build-tests --sanitize="$flag" --scratch-path "$scratch" >".build/$flag-build.log" 2>&1 \
        || { tail -50 ".build/$flag-build.log"; echo "test.sh: $name build failed" >&2; exit 1; }
    local built=$SECONDS
    for target in $(find Tests -mindepth 2 -name '*.swift' | cut -d/ -f2 | sort -u); do
        echo "$name: $target" >&2
        # The jobwatch tests run processes (up to four jobwatch and a producer at once, 1,000 jobs): instrumented,
        # two of them side by side starve each other's timers, so they run one at a time.
        local parallel=--parallel
        [ "$target" = JobwatchTests ] && parallel=--no-parallel
        run_tests ".build/$flag-$target.log" watchdog "$sanitizer_hang_limit" \
            stdbuf -oL -eL swift test --skip-build "$parallel" --sanitize="$flag" --scratch-path "$scratch" \
            --filter "^$target\."
    done
    if compgen -G "$reports/report.*" >/dev/null; then
        head -80 "$reports"/report.*
        echo "test.sh: $name reported a problem (reports in $reports, logs in .build/$flag-*.log)" >&2
        exit 1
    fi
    echo "$name tier: build $((built - started)) s, tests $((SECONDS - built)) s" >&2
}

# tsan_canary: runs the deliberate race of Tests/JobSyncTests/SanitizerCanaryTests.swift under ThreadSanitizer with
# the tier's suppressions, and fails unless TSan reports it: the suppressions must hide no race in our code.
tsan_canary() {
    local reports=$root/.build/tsan-canary log=.build/tsan-canary.log
    rm -rf "$reports"
    mkdir -p "$reports"
    JOBSYNC_TSAN_CANARY=1 TSAN_OPTIONS="log_path=$reports/report suppressions=$root/scripts/tsan-suppressions.txt" \
        swift test --skip-build --sanitize=thread --scratch-path .build-tsan --filter 'SanitizerCanaryTests' \
        >"$log" 2>&1 || true  # the report makes the process exit non-zero: that is the expected outcome
    if ! grep -q 'Test "a deliberate race in our code is reported despite the suppressions" passed' "$log"; then
        tail -20 "$log"
        echo "test.sh: the ThreadSanitizer canary did not run (log: $log)" >&2
        exit 1
    fi
    if ! grep -qs 'SanitizerCanaryBox' "$reports"/report.*; then
        echo "test.sh: the ThreadSanitizer canary's deliberate race was NOT reported: the suppressions hide our code" >&2
        exit 1
    fi
    echo "ThreadSanitizer canary: the deliberate race was reported with the suppressions in force" >&2
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

# A skip variable inherited from a developer's shell must not turn tiers into silent passes in CI.
if [ "${CI:-}" = "true" ]; then
    for variable in JOBSYNC_SKIP_POSTGRES_TESTS JOBSYNC_SKIP_TSAN JOBSYNC_SKIP_ASAN; do
        if [ -n "${!variable:-}" ]; then
            echo "test.sh: $variable is set; CI runs every tier and every test (unset it)" >&2
            exit 2
        fi
    done
fi

step "system packages"
scripts/bootstrap.sh

step "build (debug, with tests); our code must have zero warnings"
mkdir -p .build
swift build --build-tests 2>&1 | tee .build/build.log >/dev/null || { tail -50 .build/build.log; exit 1; }
if grep -E "^$root/(Sources|Tests|Samples|Benchmarks)/.*: warning:" .build/build.log; then
    echo "test.sh: compiler warnings in our code (above)" >&2
    exit 1
fi

step "public API: the library modules' public declarations match docs/api (scripts/api-listing.sh)"
scripts/api-listing.sh --check

step "throwaway PostgreSQL with wal2json"
pgdir=$(mktemp -d /tmp/jobsync-pg.XXXXXX)
JOBSYNC_TEST_POSTGRES_URL=$(scripts/pg-throwaway.sh start "$pgdir")
export JOBSYNC_TEST_POSTGRES_URL
trap 'scripts/pg-throwaway.sh stop "$pgdir" >/dev/null 2>&1 || true' EXIT

step "unit, integration and end-to-end tests"
# The jobwatch tests (processes against their own SupabaseLocal) run after the others, not beside the in-process
# integration tests: each side is timing-bound, and together they starve each other on 2 cores.
run_tests .build/test.log swift test --skip-build --skip '^JobwatchTests\.'
run_tests .build/test-jobwatch.log swift test --skip-build --filter '^JobwatchTests\.'

step "conformance: the official Python realtime and postgrest clients against SupabaseLocal"
scripts/conformance.sh

step "fuzzing: frame decoders (vsn 1.0.0/2.0.0 text, binary) and REST response decoders, ${fuzz_seconds} s each"
# After the debug build: the rest target compiles swift-log from the package checkout in .build/checkouts.
for target in frames rest; do
    run_fuzz "$target"
done

# The sanitizer tiers run the FULL suite: every test target, the PostgreSQL tier, the jobwatch binary tests (with the
# instrumented jobwatch) and the soak at its default size (60 s of faults, 1,000 jobs: about 80 s under TSan).
sanitizer_hang_limit=${JOBSYNC_SANITIZER_HANG_LIMIT:-900}
if [ "${JOBSYNC_SKIP_TSAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "test.sh: ThreadSanitizer tier skipped by JOBSYNC_SKIP_TSAN=1 (never in CI)" >&2
else
    step "ThreadSanitizer: the full suite"
    TSAN_OPTIONS="log_path=$root/.build/tsan-reports/report suppressions=$root/scripts/tsan-suppressions.txt ${TSAN_OPTIONS:-}" \
        sanitizer_tier ThreadSanitizer thread .build-tsan .build/tsan-reports
    tsan_canary
fi

if [ "${JOBSYNC_SKIP_ASAN:-0}" = "1" ] && [ "${CI:-}" != "true" ]; then
    echo "test.sh: AddressSanitizer tier skipped by JOBSYNC_SKIP_ASAN=1 (never in CI)" >&2
else
    step "AddressSanitizer: the full suite"
    # detect_leaks=0: LeakSanitizer reports objects that swift-corelibs-foundation's URLSession, libcurl and XCTest
    # keep until exit (a URLSession is never deallocated), none of them ours; memory errors (overflows, use after
    # free) still fail the tier.
    ASAN_OPTIONS="log_path=$root/.build/asan-reports/report detect_leaks=0 ${ASAN_OPTIONS:-}" \
        sanitizer_tier AddressSanitizer address .build-asan .build/asan-reports
fi

step "all tiers passed"
