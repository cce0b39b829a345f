#!/usr/bin/env bash
# Fuzz a decoder with libFuzzer for SECONDS (default 180).
# Usage: Fuzz/run.sh [TARGET] [SECONDS]      TARGET: frames (default) | rest
#        Fuzz/run.sh SECONDS                 (frames, as before)
#   frames: the RealtimeProtocol frame decoders — Sources/RealtimeProtocol/*.swift + Fuzz/FuzzFrames.swift.
#   rest:   SupabaseREST response decoding (decodeRows, RESTError bodies, Retry-After) —
#           Sources/SupabaseREST/*.swift + Fuzz/FuzzREST.swift, with swift-log's Logging and swift-nio's
#           NIOConcurrencyHelpers (+ CNIOAtomics) compiled as separate modules from the package checkouts in
#           .build/checkouts (run `swift build` or `swift package resolve` first).
#   Both link our JobSyncCore (the JSON parser and serializer, Redaction), compiled as a module of its own with the
#   same fuzzer and address instrumentation, so the JSON parser is fuzzed by both targets.
# Builds Fuzz/.build/fuzz-TARGET with -sanitize=fuzzer,address, runs it on a scratch copy of Fuzz/corpus/TARGET
# (the committed seeds stay small), and leaves crash inputs in Fuzz/artifacts/ (prefixed with the target name).
# Exit status is non-zero if libFuzzer found a crash; then the crash input's path is printed ("CRASH INPUT").
# The full libFuzzer output is also kept in Fuzz/.build/fuzz-TARGET.log.
set -euo pipefail
# A crash is reported by libFuzzer and ASan; Swift's own backtracer, attaching to the crashed fuzzer, can hang.
export SWIFT_BACKTRACE=enable=no
target="frames"
if [[ $# -gt 0 && ! "$1" =~ ^[0-9]+$ ]]; then
    target="$1"
    shift
fi
seconds="${1:-180}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(dirname "$here")"
mkdir -p "$here/.build" "$here/artifacts"
mods="$here/.build/modules"
mkdir -p "$mods"
# The upcoming features our targets enable in Package.swift (access-level imports need InternalImportsByDefault).
ours=(-enable-upcoming-feature ExistentialAny -enable-upcoming-feature InternalImportsByDefault
    -enable-upcoming-feature MemberImportVisibility)
build_core() {
    # JobSyncCore, our own leaf module, in the same package as the fuzzed sources (-package-name: our sources use
    # `package` access, as in the SwiftPM build), instrumented like them.
    (cd "$mods" && swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 "${ours[@]}" -module-name JobSyncCore \
        -package-name JobSync -emit-module -emit-module-path "$mods/JobSyncCore.swiftmodule" -emit-object -wmo \
        "$root"/Sources/JobSyncCore/*.swift -o "$mods/JobSyncCore.o")
}
case "$target" in
frames)
    build_core
    swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 "${ours[@]}" -module-name RealtimeProtocolFuzz \
        -package-name JobSync -I "$mods" \
        "$root"/Sources/RealtimeProtocol/*.swift "$here/FuzzFrames.swift" "$mods/JobSyncCore.o" \
        -o "$here/.build/fuzz-frames"
    ;;
rest)
    checkouts="$root/.build/checkouts"
    logsrc="${SWIFT_LOG_SOURCES:-$checkouts/swift-log/Sources/Logging}"
    niosrc="${SWIFT_NIO_SOURCES:-$checkouts/swift-nio/Sources}"
    if [ ! -d "$logsrc" ] || [ ! -d "$niosrc/NIOConcurrencyHelpers" ]; then
        echo "swift-log / swift-nio sources not found under $checkouts (run 'swift package resolve' or" \
            "'swift build' first, or set SWIFT_LOG_SOURCES and SWIFT_NIO_SOURCES)" >&2
        exit 2
    fi
    mkdir -p "$mods/CNIOAtomics"
    (cd "$mods" && swiftc -parse-as-library -O -swift-version 6 -enable-upcoming-feature ExistentialAny \
        -module-name Logging -package-name swift_log -emit-module -emit-module-path "$mods/Logging.swiftmodule" -emit-object -wmo \
        $(find "$logsrc" -name '*.swift' | sort) -o "$mods/Logging.o")
    # NIOConcurrencyHelpers (NIOLockedValueBox in HTTPTransport.swift) and its C module CNIOAtomics.
    printf 'module CNIOAtomics {\n    umbrella header "%s"\n    export *\n}\n' \
        "$niosrc/CNIOAtomics/include/CNIOAtomics.h" >"$mods/CNIOAtomics/module.modulemap"
    for c in "$niosrc"/CNIOAtomics/src/*.c; do
        clang -O2 -D_GNU_SOURCE -I "$niosrc/CNIOAtomics/include" -c "$c" -o "$mods/CNIOAtomics-$(basename "$c" .c).o"
    done
    (cd "$mods" && swiftc -parse-as-library -O -swift-version 6 -enable-experimental-feature Lifetimes \
        -Xcc -fmodule-map-file="$mods/CNIOAtomics/module.modulemap" \
        -module-name NIOConcurrencyHelpers -package-name swift_nio -emit-module \
        -emit-module-path "$mods/NIOConcurrencyHelpers.swiftmodule" -emit-object -wmo \
        $(find "$niosrc/NIOConcurrencyHelpers" -name '*.swift' | sort) -o "$mods/NIOConcurrencyHelpers.o")
    build_core
    swiftc -parse-as-library -sanitize=fuzzer,address -O -swift-version 6 "${ours[@]}" -module-name SupabaseRESTFuzz \
        -package-name JobSync \
        -I "$mods" -Xcc -fmodule-map-file="$mods/CNIOAtomics/module.modulemap" \
        "$root"/Sources/SupabaseREST/*.swift "$here/FuzzREST.swift" \
        "$mods/Logging.o" "$mods/NIOConcurrencyHelpers.o" "$mods/JobSyncCore.o" "$mods"/CNIOAtomics-*.o \
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
