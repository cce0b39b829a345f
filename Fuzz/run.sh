#!/usr/bin/env bash
# Fuzz the RealtimeProtocol frame decoders with libFuzzer for SECONDS (default 180).
# Usage: Fuzz/run.sh [SECONDS]
# Builds Fuzz/.build/fuzz-frames from Sources/RealtimeProtocol/*.swift + Fuzz/FuzzFrames.swift with
# -sanitize=fuzzer,address, runs it on a scratch copy of Fuzz/corpus/frames (the committed seeds stay small),
# and leaves crash inputs in Fuzz/artifacts/. Exit status is non-zero if libFuzzer found a crash.
set -euo pipefail
seconds="${1:-180}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mkdir -p "$here/.build" "$here/artifacts"
swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 -module-name RealtimeProtocolFuzz \
    "$root"/Sources/RealtimeProtocol/*.swift "$here/FuzzFrames.swift" -o "$here/.build/fuzz-frames"
work="$here/.build/corpus"
mkdir -p "$work"
cp -n "$here"/corpus/frames/* "$work"/ 2>/dev/null || true
"$here/.build/fuzz-frames" "$work" -max_total_time="$seconds" -max_len=4096 \
    -artifact_prefix="$here/artifacts/" -print_final_stats=1
