#!/usr/bin/env bash
# Runs sync_app.py against a fresh `synclog serve`, for CI. Builds nothing.
#
#   examples/python-client/run_against_server.sh [path/to/synclog]
#
# The binary defaults to target/debug/synclog under the repository root. The server gets
# a temporary directory for its store, a random token (SYNCLOG_TOKEN) and a free loopback
# port (it binds port 0 and says which port it got). Exits with the app's status; also
# fails when the server does not start or does not stop cleanly on SIGTERM.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
bin="${1:-$repo/target/debug/synclog}"
if [[ ! -x "$bin" ]]; then
    echo "run_against_server: no executable synclog at $bin (build it first)" >&2
    exit 2
fi
bin="$(cd "$(dirname "$bin")" && pwd)/$(basename "$bin")"

workdir="$(mktemp -d "${TMPDIR:-/tmp}/synclog-python-client.XXXXXX")"
server_log="$workdir/server.log"
server_pid=""

# On any exit: stop the server if it still runs, show its log when things went wrong,
# remove the temporary directory.
cleanup() {
    local status=$?
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ $status -ne 0 && -s "$server_log" ]]; then
        echo "--- server log ---" >&2
        cat "$server_log" >&2
    fi
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

token="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

# The store and its backup live in the temporary directory; named explicitly so that a
# SYNCLOG_STORE or SYNCLOG_BACKUP in the environment cannot point elsewhere.
(
    cd "$workdir"
    export SYNCLOG_TOKEN="$token"
    unset SYNCLOG_READ_TOKEN
    exec "$bin" serve --listen 127.0.0.1:0 \
        --store "sqlite://$workdir/data/synclog.db" \
        --backup "json://$workdir/data/synclog.jsonl"
) >"$server_log" 2>&1 &
server_pid=$!

# Wait (at most ~20 s) for the server to say where it listens, then for GET /v1/health to
# answer 200.
health_ok() {
    SYNCLOG_TOKEN="$token" python3 - "$1" <<'EOF'
import os, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/v1/health",
                                 headers={"Authorization": "Bearer " + os.environ["SYNCLOG_TOKEN"]})
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
try:
    with opener.open(request, timeout=2) as response:
        sys.exit(0 if response.status == 200 else 1)
except Exception:
    sys.exit(1)
EOF
}

url=""
for ((i = 0; i < 200; i++)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "run_against_server: the server exited before it answered" >&2
        exit 1
    fi
    if [[ -z "$url" ]]; then
        url="$(grep -oE 'http://127\.0\.0\.1:[0-9]+' "$server_log" | head -n 1 || true)"
    fi
    if [[ -n "$url" ]] && health_ok "$url"; then
        break
    fi
    sleep 0.1
done
if [[ -z "$url" ]] || ! health_ok "$url"; then
    echo "run_against_server: the server did not answer GET /v1/health in time" >&2
    exit 1
fi
echo "run_against_server: synclog serve (pid $server_pid) answers on $url"

# The app; its status is this script's.
app_status=0
SYNCLOG_TOKEN="$token" python3 -u "$here/sync_app.py" --url "$url" || app_status=$?

# Stop the server: SIGTERM, then wait (at most ~30 s) for it to exit, which must be 0.
kill -TERM "$server_pid"
for ((i = 0; i < 300; i++)); do
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
done
if kill -0 "$server_pid" 2>/dev/null; then
    echo "run_against_server: the server did not stop within 30 s of SIGTERM" >&2
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=""
    exit 1
fi
server_status=0
wait "$server_pid" || server_status=$?
server_pid=""
echo "run_against_server: the server stopped with status $server_status: $(tail -n 1 "$server_log")"

if [[ $app_status -ne 0 ]]; then
    echo "run_against_server: sync_app.py failed with status $app_status" >&2
    exit "$app_status"
fi
if [[ $server_status -ne 0 ]]; then
    echo "run_against_server: the server exited with status $server_status, not 0" >&2
    exit 1
fi
echo "run_against_server: OK"
