#!/usr/bin/env bash
# Body of `make run`: prepare the database and static files, then run Warden in the foreground:
# gunicorn (API + admin), a Celery worker (queues cpu,gpu) and Celery beat, plus Redis when none
# is running. Ctrl-C stops everything this script started; if any of the three processes dies,
# the others are stopped and the script exits non-zero. Safe to run again (idempotent setup).
#
# Environment (all optional): PORT (8000), WARDEN_REDIS_URL / WARDEN_REDIS_PORT (6391),
# WARDEN_WORKER_CONCURRENCY (2), WARDEN_WEB_WORKERS (2), WARDEN_WEB_THREADS (16),
# WARDEN_PLUGIN_DIRS, WARDEN_VAR_DIR, DATABASE_URL, DJANGO_SECRET_KEY,
# WARDEN_ADMIN_USER / WARDEN_ADMIN_PASSWORD, WARDEN_STOP_TIMEOUT (30 s before SIGKILL).
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"
export PYTHONUNBUFFERED=1
# gunicorn does not serve static files; project/urls.py serves STATIC_ROOT when this is set.
export WARDEN_SERVE_STATIC="${WARDEN_SERVE_STATIC:-1}"

PORT="${PORT:-8000}"
export PORT
VAR_DIR="${WARDEN_VAR_DIR:-$ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$ROOT/$VAR_DIR" ;; esac
mkdir -p "$VAR_DIR"
STOP_TIMEOUT="${WARDEN_STOP_TIMEOUT:-30}"

# A secret key, generated once into var/secret-key (owner-only) unless one is configured:
# with DEBUG off, Warden's processes refuse to start without one (project/deploy.py).
if [[ -z "${DJANGO_SECRET_KEY:-}" && -z "${DJANGO_SECRET_KEY_FILE:-}" && ! -s "$VAR_DIR/secret-key" ]]; then
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' >"$VAR_DIR/secret-key")
    echo "run.sh: generated a secret key into $VAR_DIR/secret-key" >&2
fi

# --- Redis ------------------------------------------------------------------------------------
# A local Redis is started unless WARDEN_REDIS_URL points at another host. The URL and the port
# scripts/redis.sh uses are kept in agreement.
REDIS_LOCAL=1
if [[ -n "${WARDEN_REDIS_URL:-}" ]]; then
    if [[ "$WARDEN_REDIS_URL" =~ ^rediss?://([^@/]*@)?(127\.0\.0\.1|localhost|\[::1\])(:([0-9]+))?(/.*)?$ ]]; then
        export WARDEN_REDIS_PORT="${BASH_REMATCH[4]:-6379}"
    else
        REDIS_LOCAL=0
    fi
else
    export WARDEN_REDIS_PORT="${WARDEN_REDIS_PORT:-6391}"
    export WARDEN_REDIS_URL="redis://127.0.0.1:$WARDEN_REDIS_PORT/0"
fi

REDIS_OWNED=0
declare -a PIDS=()
declare -A NAMES=()
CLEANED=0

stop_children() {
    local pid
    ((${#PIDS[@]})) || return 0
    for pid in "${PIDS[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    # Watchdog: whatever has not exited after STOP_TIMEOUT is killed with its whole process
    # group (each child runs in its own session, so the group holds its worker processes too).
    (
        for ((i = 0; i < STOP_TIMEOUT * 5; i++)); do sleep 0.2; done
        for pid in "${PIDS[@]}"; do
            if kill -0 "$pid" 2>/dev/null; then
                echo "run.sh: ${NAMES[$pid]} (pid $pid) still running after ${STOP_TIMEOUT}s; SIGKILL" >&2
                kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            fi
        done
    ) &
    local watchdog=$!
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
        # Leftovers of the group (e.g. a worker child whose parent was killed) go too.
        kill -KILL -- "-$pid" 2>/dev/null || true
    done
    kill -KILL "$watchdog" 2>/dev/null || true
    wait "$watchdog" 2>/dev/null || true
    PIDS=()
}

# A second Ctrl-C while stopping kills everything at once.
force_kill() {
    local pid
    echo "run.sh: second signal; killing everything now" >&2
    for pid in "${PIDS[@]}"; do
        kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}

cleanup() {
    ((CLEANED)) && return 0
    CLEANED=1
    trap force_kill INT TERM
    if ((${#PIDS[@]})); then
        local pid names=()
        for pid in "${PIDS[@]}"; do names+=("${NAMES[$pid]}"); done
        echo "run.sh: stopping ${names[*]} (up to ${STOP_TIMEOUT}s; Ctrl-C again to kill) ..." >&2
    fi
    stop_children
    if ((REDIS_OWNED)); then
        "$ROOT/scripts/redis.sh" stop || true
    fi
}

on_signal() {
    echo >&2
    echo "run.sh: got SIG$1, shutting down" >&2
    cleanup
    trap - EXIT
    if [[ "$1" == INT ]]; then exit 130; else exit 143; fi
}

trap cleanup EXIT
trap 'on_signal INT' INT
trap 'on_signal TERM' TERM

if ((REDIS_LOCAL)); then
    if ! "$ROOT/scripts/redis.sh" status 2>/dev/null; then
        "$ROOT/scripts/redis.sh" start
        REDIS_OWNED=1
    else
        echo "run.sh: reusing the Redis already running on port $WARDEN_REDIS_PORT" >&2
    fi
else
    echo "run.sh: using external Redis at $WARDEN_REDIS_URL (not started here)" >&2
fi

# --- One-off setup (all idempotent) -----------------------------------------------------------
"$PY" manage.py migrate --noinput
"$PY" manage.py collectstatic --noinput -v 0
BOOTSTRAP_OUT="$("$PY" manage.py warden_bootstrap --base-url "http://127.0.0.1:$PORT")"
printf '%s\n' "$BOOTSTRAP_OUT"
TOKEN="$(sed -n 's/^API token: *//p' <<<"$BOOTSTRAP_OUT" | head -n 1)"
if ! "$PY" manage.py plugins sync; then
    echo "run.sh: WARNING: 'manage.py plugins sync' failed; continuing (see the output above)" >&2
fi

# --- The three long-running processes -----------------------------------------------------------
# Each runs in its own session (setsid) so that Ctrl-C reaches only this script, which then stops
# them in order; its output is prefixed with its name. The prefixing `sed` ignores INT/TERM so the
# shutdown messages still get through.
start() {
    local name="$1"
    shift
    local prefix
    prefix="$(printf '%-7s| ' "$name")"
    local fd
    # The prefixing sed is opened here, in this shell, so that it is our child, not the server's.
    exec {fd}> >(trap '' INT TERM; exec sed -u "s/^/$prefix/")
    setsid "$@" >&"$fd" 2>&1 &
    local pid=$!
    exec {fd}>&-
    PIDS+=("$pid")
    NAMES[$pid]="$name"
}

# No --access-logfile: Warden's middleware writes the access log (with the request id; turn it
# off with WARDEN_ACCESS_LOG=false). gunicorn.conf.py (read from this directory) sets the worker
# model (WARDEN_WEB_WORKERS x WARDEN_WEB_THREADS) and resets the per-process HTTP metric files
# under PROMETHEUS_MULTIPROC_DIR.
start web gunicorn project.wsgi:application --bind "127.0.0.1:$PORT"
# The plugins were just synced above; the worker's own start-up sync would only repeat it.
WARDEN_SYNC_ON_WORKER_START="${WARDEN_SYNC_ON_WORKER_START:-false}" \
start worker celery -A project worker -P prefork \
    --concurrency "${WARDEN_WORKER_CONCURRENCY:-2}" -Q cpu,gpu -n 'warden@%h' --loglevel INFO
start beat celery -A project beat --loglevel INFO -s "$VAR_DIR/celerybeat-schedule"

# Wait (bounded) until gunicorn accepts connections and the worker announces its queue (the API
# answers 503 "No worker is consuming queue" until then) before printing where everything is.
"$PY" - "$PORT" <<'EOF' || echo "run.sh: gunicorn or the worker is not ready yet" >&2
import os
import socket
import sys
import time

import redis

deadline = time.monotonic() + 60
web_up = worker_up = False
client = redis.Redis.from_url(os.environ["WARDEN_REDIS_URL"], socket_connect_timeout=1)
while time.monotonic() < deadline and not (web_up and worker_up):
    try:
        socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()
        web_up = True
    except OSError:
        pass
    try:
        worker_up = bool(client.zrangebyscore("warden:workers:cpu", time.time() - 15, "+inf"))
    except redis.RedisError:
        pass
    time.sleep(0.2)
sys.exit(0 if web_up and worker_up else 1)
EOF

BASE="http://127.0.0.1:$PORT"
cat <<EOF

================================================================================
 Warden is running (Ctrl-C stops it)
   API      $BASE/v1/plugins
   Admin    $BASE/admin/
   API docs $BASE/api/docs/
   Redis    $WARDEN_REDIS_URL
$(sed 's/^/   /' <<<"$BOOTSTRAP_OUT")

 Try:
   curl -H 'Authorization: Token ${TOKEN:-<token>}' $BASE/v1/plugins
================================================================================

EOF

# --- Supervise ----------------------------------------------------------------------------------
set +e
wait -n -p EXITED "${PIDS[@]}"
STATUS=$?
set -e
NAME="${NAMES[${EXITED:-}]:-a process}"
echo "run.sh: $NAME (pid ${EXITED:-?}) exited with status $STATUS; stopping the rest" >&2
# Drop the one that exited from the list before stopping the others.
declare -a REST=()
for pid in "${PIDS[@]}"; do
    [[ "$pid" == "${EXITED:-}" ]] || REST+=("$pid")
done
PIDS=("${REST[@]}")
cleanup
trap - EXIT
if ((STATUS == 0)); then
    STATUS=1
fi
exit "$STATUS"
