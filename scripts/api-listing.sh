#!/usr/bin/env bash
# The public API of every library module, one declaration per line, checked in under docs/api/ so that a change to
# it shows in review and cannot happen by accident.
#
# Usage: scripts/api-listing.sh           rewrite docs/api/*.txt from the current debug build
#        scripts/api-listing.sh --check   fail (and print the difference) if the build's API differs from docs/api/
# Needs a debug build of the package (`swift build`; SCRATCH_PATH=/path/to/.build to use another build folder).
# Reads the compiled modules with `swift symbolgraph-extract` (public symbols, synthesized members skipped).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
SCRATCH="${SCRATCH_PATH:-$ROOT/.build}"
MODULES=(JobSyncCore RealtimeProtocol WebSocketTransport SupabaseRealtime SupabaseREST JobSync SupabaseLocal)
CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

triple="$(swift -print-target-info | python3 -c 'import json,sys; print(json.load(sys.stdin)["target"]["triple"])')"
debug="$SCRATCH/$triple/debug"
[ -d "$debug/Modules" ] || { echo "api-listing: no debug build in $debug (run swift build first)" >&2; exit 2; }

# The C modules the Swift modules import: SwiftPM's generated module maps, our system library, and the include/
# folders of the dependencies.
flags=(-I "$debug/Modules" -target "$triple" -minimum-access-level public -skip-synthesized-members)
while IFS= read -r map; do flags+=(-Xcc "-fmodule-map-file=$map"); done < <(
    # (`*-tool.build`: the same C modules built again for a package plugin's host; defining them twice fails)
    find -L "$debug" -maxdepth 2 -name module.modulemap -not -path '*-tool.build/*'
    find Sources -name module.modulemap
    find "$SCRATCH/checkouts" -name module.modulemap -not -path '*/Benchmarks/*' -not -path '*/Tests/*'
)
while IFS= read -r include; do flags+=(-Xcc "-I$include"); done < <(
    find Sources "$SCRATCH/checkouts" -type d -name include -not -path '*/Benchmarks/*' -not -path '*/Tests/*'
)

graphs="$(mktemp -d)"
listing="$(mktemp -d)"
trap 'rm -rf "$graphs" "$listing"' EXIT
for module in "${MODULES[@]}"; do
    mkdir -p "$graphs/$module"
    swift symbolgraph-extract -module-name "$module" -output-dir "$graphs/$module" "${flags[@]}" >&2
    python3 - "$graphs/$module" >"$listing/$module.txt" <<'PY'
import glob, json, sys

lines = set()
for path in glob.glob(sys.argv[1] + "/*.symbols.json"):
    graph = json.load(open(path))
    for symbol in graph["symbols"]:
        declaration = "".join(fragment["spelling"] for fragment in symbol.get("declarationFragments", []))
        where = ".".join(symbol["pathComponents"][:-1])
        lines.add((where + ": " if where else "") + " ".join(declaration.split()))
print("\n".join(sorted(lines)))
PY
done

if [ "$CHECK" = 1 ]; then
    if ! diff -ru docs/api "$listing" >&2; then
        echo "api-listing: the public API differs from docs/api (above: - listed, + built)." >&2
        echo "If the change is intended, run scripts/api-listing.sh and commit docs/api." >&2
        exit 1
    fi
    echo "api-listing: public API matches docs/api ($(cat "$listing"/*.txt | wc -l) declarations)"
else
    mkdir -p docs/api
    rm -f docs/api/*.txt
    cp "$listing"/*.txt docs/api/
    wc -l docs/api/*.txt
fi
