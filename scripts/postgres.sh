#!/usr/bin/env bash
# A throw-away PostgreSQL cluster for the test suite's PostgreSQL pass (the DATABASE_URL path).
#
#   scripts/postgres.sh start   initdb + start a cluster in a temp dir on a free port, run as the
#                               `postgres` system user; prints its DATABASE_URL on stdout
#   scripts/postgres.sh stop    stop it and delete its directory
#
# The cluster lives in a fresh directory under /tmp (or $WARDEN_PG_TMPDIR), not under the
# checkout: the `postgres` user must reach it, and a checkout may sit in a private directory
# (root's home, a `mktemp -d` folder). Only a note of where it is stays under var/.
#
# Exits 3 (and prints why) when this machine has no PostgreSQL server binaries or no `postgres`
# user: the caller then skips the PostgreSQL pass instead of failing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VAR_DIR="${WARDEN_VAR_DIR:-$ROOT/var}"
case "$VAR_DIR" in /*) ;; *) VAR_DIR="$ROOT/$VAR_DIR" ;; esac
NOTE="$VAR_DIR/postgres-test.dir"  # holds the cluster's directory

log() { printf 'postgres.sh: %s\n' "$*" >&2; }

bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" && -x "$dir/pg_ctl" ]] && { printf '%s\n' "$dir"; return 0; }
    done
    return 1
}

# Run a command as the `postgres` user, from / (it may not enter the current directory).
as_postgres() {
    if [[ "$(id -un)" == postgres ]]; then
        (cd / && "$@")
    else
        su postgres -s /bin/bash -c "cd / && $(printf '%q ' "$@")"
    fi
}

start() {
    local bin port STATE
    bin="$(bindir)" || { log "no PostgreSQL server binaries (apt-get install postgresql)"; exit 3; }
    id postgres >/dev/null 2>&1 || { log "no 'postgres' system user"; exit 3; }
    stop >/dev/null 2>&1 || true
    mkdir -p "$VAR_DIR"
    STATE="$(mktemp -d "${WARDEN_PG_TMPDIR:-/tmp}/warden-pg.XXXXXX")"
    printf '%s\n' "$STATE" >"$NOTE"
    chown postgres "$STATE"
    port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_postgres "$bin/initdb" -D "$STATE/data" -A trust -U postgres >/dev/null
    as_postgres "$bin/pg_ctl" -D "$STATE/data" -l "$STATE/log" -w -t 30 \
        -o "-p $port -k $STATE -c listen_addresses=127.0.0.1 -c fsync=off" start >/dev/null
    log "PostgreSQL $("$bin/pg_ctl" --version | awk '{print $3}') on 127.0.0.1:$port"
    printf 'postgres://postgres@127.0.0.1:%s/warden\n' "$port"
}

stop() {
    local bin state
    [[ -f "$NOTE" ]] || return 0
    state="$(cat "$NOTE")"
    if bin="$(bindir)" && [[ -d "$state/data" ]]; then
        as_postgres "$bin/pg_ctl" -D "$state/data" -m immediate stop >/dev/null 2>&1 || true
    fi
    case "$state" in */warden-pg.*) rm -rf "$state" ;; esac  # only what start created
    rm -f "$NOTE"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
