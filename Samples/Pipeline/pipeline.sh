#!/usr/bin/env bash
# An event-driven pipeline in a shell script: reads `jobwatch follow --consumer NAME --json` (one JSON Lines record
# per job outcome, docs/jobwatch-json.md) and routes each document by its classification.
#
#   SUPABASE_URL=… SUPABASE_ANON_KEY=… Samples/Pipeline/pipeline.sh [more follow options, e.g. --since beginning]
#
# Environment: JOBWATCH (the jobwatch binary; default: jobwatch on PATH), PIPELINE_CONSUMER (the consumer name;
# default pipeline), PIPELINE_SEEN (the file of handled outcomes; default ./pipeline.seen). Needs jq.
#
# At least once. jobwatch delivers each outcome at least once: the durable consumer remembers what it wrote, but
# after a crash of jobwatch (SIGKILL, OOM) the outcomes whose acknowledgement had not reached its state file are
# written again, and with --fleet an outcome a dead replica wrote may be written again by another one. So the
# handler below is idempotent: it records each outcome it finished (job id and updated_at, the outcome's version)
# and skips one it already handled. The record is written after the work, so a crash of this script between the
# two repeats the work at most once, never loses it.
#
# One limit of any pipe: jobwatch acknowledges an outcome once its line is written to the pipe, not once this loop
# handled it. If this script is killed (not jobwatch), the lines still in the pipe are lost to it. When the handling
# must be acknowledged, let jobwatch run the handler per outcome instead, and acknowledge on its exit status 0:
#   jobwatch follow --consumer NAME --exec 'Samples/Pipeline/pipeline.sh --handle'
#
# SIGINT/SIGTERM: jobwatch is asked to stop, writes its acknowledgements and closes the pipe; the loop handles
# every line already written, then the script exits with jobwatch's status (0).
set -uo pipefail

jobwatch=${JOBWATCH:-jobwatch}
consumer=${PIPELINE_CONSUMER:-pipeline}
seen=${PIPELINE_SEEN:-./pipeline.seen}
touch "$seen"

# Handles one outcome record (idempotently).
handle() {
    local record=$1 id version outcome
    id=$(jq -r '.job_id' <<<"$record") || return 1
    version=$(jq -r '.updated_at // "unknown"' <<<"$record")
    outcome=$(jq -r '.outcome' <<<"$record")
    if grep -qxF "$id $version" "$seen"; then
        echo "skip $id (already handled)"
        return 0
    fi
    case $outcome in
    completed)
        # Your work here: move the document, notify, bill…
        echo "route $id archive/$(jq -r '.result.classification // "unclassified" | ascii_downcase' <<<"$record")"
        ;;
    failed) echo "reject $id $(jq -r '.error // "no error text"' <<<"$record")" ;;
    deleted) echo "forget $id" ;;
    esac
    echo "$id $version" >>"$seen"
}

# `--exec` mode: one record on stdin; exit status 0 acknowledges it.
if [[ ${1:-} == --handle ]]; then
    handle "$(cat)"
    exit
fi

# Read jobwatch's output through a descriptor, so the signal handler can stop jobwatch and the loop can still read
# what it wrote before it stopped.
exec 3< <(exec "$jobwatch" follow --consumer "$consumer" --json "$@")
follow=$!
trap 'kill -TERM "$follow" 2>/dev/null' TERM INT
while true; do
    if IFS= read -r record <&3; then
        handle "$record"
    elif (($? > 128)); then
        continue # interrupted by a signal: read on until jobwatch closes the pipe
    else
        break # end of output: jobwatch ended
    fi
done
wait "$follow"
