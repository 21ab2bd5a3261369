# Sourced by scripts/run.sh and scripts/test.sh: cd to the repo root and put the venv first on
# PATH. Fails with a pointer to `make` when the venv is missing. Sets ROOT, VENV and PY.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

VENV="${WARDEN_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
if [[ ! -x "$PY" ]]; then
    echo "$(basename "$0"): $PY not found; run 'make venv' first (or 'make run' / 'make test')" >&2
    exit 1
fi
export PATH="$VENV/bin:$PATH"
