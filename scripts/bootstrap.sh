#!/usr/bin/env bash
# Installs the Debian packages JobSync needs to build and test. Safe to re-run; does nothing when all are present.
set -euo pipefail

packages=(
    libwebsockets-dev       # the WebSocket transport
    libcurl4-openssl-dev    # URLSession (FoundationNetworking) for REST
    libsqlite3-dev          # GRDB persistence
    postgresql-15           # end-to-end tests on real PostgreSQL
    postgresql-15-wal2json  # logical decoding, as Supabase Realtime does it
    python3-venv            # the official Python client as a conformance peer
    openssl                 # test certificates
    gdb                     # backtraces of a hung test process (test.sh watchdog)
)

missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "bootstrap: installing ${missing[*]}" >&2
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
