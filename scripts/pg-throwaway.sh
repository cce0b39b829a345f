#!/usr/bin/env bash
# pg-throwaway.sh: a throwaway PostgreSQL 15 cluster with wal2json, for JobSync's end-to-end tests.
#
# Usage: scripts/pg-throwaway.sh start|stop|url|destroy [DIR]
#
#   start    create the cluster in DIR if needed, start it, print its connection URL on stdout
#            (postgres://postgres@127.0.0.1:PORT/postgres). Safe to re-run: an already running
#            cluster just prints its URL again.
#   stop     stop the cluster (fast shutdown). Data stays in DIR.
#   url      print the URL of the running cluster; exit 1 if it is not running.
#   destroy  stop the cluster and delete DIR.
#
# DIR defaults to ./.pgdata (git-ignored). The server listens on 127.0.0.1 only, on a free port
# chosen at first start (kept while free), with its unix socket in DIR/sock. It runs with
# wal_level=logical, fsync=off, synchronous_commit=on (logical decoding right after a commit sees
# only flushed WAL), trust authentication, and room for replication slots.
#
# initdb refuses to run as root: as root, the cluster runs as the `postgres` user (runuser) and DIR
# is chowned to it; as any other user, it runs as that user.
#
# Environment: PG_BIN (default /usr/lib/postgresql/15/bin).
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"

usage() {
    echo "usage: $0 start|stop|url|destroy [DIR]" >&2
    exit 2
}

[[ $# -ge 1 && $# -le 2 ]] || usage
cmd="$1"
dir="${2:-.pgdata}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
data="$dir/data"
sock="$dir/sock"
portfile="$dir/port"
log="$dir/server.log"

log() { echo "pg-throwaway: $*" >&2; }

# Run a command as the cluster owner.
as_owner() {
    if [[ "$(id -u)" -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

is_running() {
    [[ -f "$data/PG_VERSION" ]] && as_owner "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1
}

print_url() {
    echo "postgres://postgres@127.0.0.1:$(cat "$portfile")/postgres"
}

port_is_free() {
    python3 - "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

check_binaries() {
    if [[ ! -x "$PG_BIN/initdb" ]]; then
        log "no PostgreSQL binaries in $PG_BIN (apt-get install postgresql-15, or set PG_BIN)"
        exit 1
    fi
    local libdir
    libdir="$("$PG_BIN/pg_config" --pkglibdir 2>/dev/null || echo "$PG_BIN/../lib")"
    if [[ ! -f "$libdir/wal2json.so" ]]; then
        log "wal2json is not installed in $libdir (apt-get install postgresql-15-wal2json)"
        exit 1
    fi
}

init_cluster() {
    log "initdb in $data"
    if [[ "$(id -u)" -eq 0 ]]; then
        chown postgres: "$dir"
    fi
    as_owner "$PG_BIN/initdb" -D "$data" -U postgres -A trust --no-sync -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >>"$data/postgresql.conf" <<EOF

# --- pg-throwaway.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$sock'
wal_level = logical
max_replication_slots = 32
max_wal_senders = 8
fsync = off
full_page_writes = off
synchronous_commit = on
max_connections = 64
shared_buffers = 32MB
timezone = 'UTC'
log_min_messages = warning
EOF
}

start() {
    check_binaries
    exec 9>"$dir/.lock"
    flock 9
    if is_running; then
        print_url
        return 0
    fi
    if [[ ! -f "$data/PG_VERSION" ]]; then
        rm -rf "$data"
        init_cluster
    fi
    as_owner mkdir -p "$sock"
    local port=""
    if [[ -f "$portfile" ]] && port_is_free "$(cat "$portfile")"; then
        port="$(cat "$portfile")"
    fi
    local attempt
    for attempt in 1 2 3 4 5; do
        [[ -n "$port" ]] || port="$(free_port)"
        echo "$port" >"$portfile"
        if as_owner "$PG_BIN/pg_ctl" -D "$data" -l "$log" -o "-p $port" -w -t 30 start >/dev/null 2>&1 9>&-; then
            print_url
            return 0
        fi
        log "start on port $port failed (attempt $attempt), see $log"
        port=""
    done
    tail -n 20 "$log" >&2 || true
    exit 1
}

stop() {
    if is_running; then
        as_owner "$PG_BIN/pg_ctl" -D "$data" -m fast -w stop >/dev/null
        log "stopped"
    else
        log "not running"
    fi
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    url)
        if is_running; then print_url; else log "not running"; exit 1; fi
        ;;
    destroy)
        stop
        rm -rf "$dir"
        ;;
    *) usage ;;
esac
