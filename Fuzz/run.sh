#!/usr/bin/env bash
# Fuzz a decoder with libFuzzer for SECONDS (default 180).
# Usage: Fuzz/run.sh [TARGET] [SECONDS]      TARGET: frames (default) | rest
#        Fuzz/run.sh SECONDS                 (frames, as before)
#   frames: the RealtimeProtocol frame decoders — Sources/RealtimeProtocol/*.swift + Fuzz/FuzzFrames.swift.
#   rest:   SupabaseREST response decoding (decodeRows, RESTError bodies, Retry-After) —
#           Sources/SupabaseREST/*.swift + Fuzz/FuzzREST.swift, with swift-log compiled as a separate Logging
#           module from the package checkout (run `swift package resolve` first).
# Builds Fuzz/.build/fuzz-TARGET with -sanitize=fuzzer,address, runs it on a scratch copy of Fuzz/corpus/TARGET
# (the committed seeds stay small), and leaves crash inputs in Fuzz/artifacts/ (prefixed with the target name).
# Exit status is non-zero if libFuzzer found a crash; then the crash input's path is printed ("CRASH INPUT").
# The full libFuzzer output is also kept in Fuzz/.build/fuzz-TARGET.log.
set -euo pipefail
target="frames"
if [[ $# -gt 0 && ! "$1" =~ ^[0-9]+$ ]]; then
    target="$1"
    shift
fi
seconds="${1:-180}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mkdir -p "$here/.build" "$here/artifacts"
case "$target" in
frames)
    swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 -module-name RealtimeProtocolFuzz \
        "$root"/Sources/RealtimeProtocol/*.swift "$here/FuzzFrames.swift" -o "$here/.build/fuzz-frames"
    ;;
rest)
    logsrc="${SWIFT_LOG_SOURCES:-$root/.build/checkouts/swift-log/Sources/Logging}"
    if [ ! -d "$logsrc" ]; then
        echo "swift-log sources not found at $logsrc (run 'swift package resolve' or set SWIFT_LOG_SOURCES)" >&2
        exit 2
    fi
    mods="$here/.build/modules"
    mkdir -p "$mods"
    (cd "$mods" && swiftc -parse-as-library -O -swift-version 6 -enable-upcoming-feature ExistentialAny \
        -module-name Logging -package-name swift_log -emit-module -emit-module-path "$mods/Logging.swiftmodule" -emit-object -wmo \
        $(find "$logsrc" -name '*.swift' | sort) -o "$mods/Logging.o")
    swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 -module-name SupabaseRESTFuzz \
        -I "$mods" "$root"/Sources/SupabaseREST/*.swift "$here/FuzzREST.swift" "$mods/Logging.o" \
        -o "$here/.build/fuzz-rest"
    ;;
*)
    echo "unknown fuzz target: $target (frames | rest)" >&2
    exit 64
    ;;
esac
work="$here/.build/corpus-$target"
mkdir -p "$work"
cp -n "$here"/corpus/"$target"/* "$work"/ 2>/dev/null || true
log="$here/.build/fuzz-$target.log"
status=0
"$here/.build/fuzz-$target" "$work" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="$here/artifacts/$target-" -print_final_stats=1 2>&1 | tee "$log" || status=${PIPESTATUS[0]}
if [ "$status" -ne 0 ]; then
    {
        echo "fuzz $target: libFuzzer exited with status $status (log: $log)"
        # The input that crashed, as libFuzzer wrote it; run the binary on it to reproduce.
        sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | while read -r artifact; do
            echo "fuzz $target: CRASH INPUT $artifact (reproduce: $here/.build/fuzz-$target $artifact)"
        done
    } >&2
    exit "$status"
fi
