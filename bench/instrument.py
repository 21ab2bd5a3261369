"""BENCHMARK ONLY: timing and SQL instrumentation of a real gunicorn or Celery worker, by wrapping
functions from the outside (no product code changes). Used by bench/breakdown.py.

- Web: run gunicorn with `bench.instrument:application` instead of `project.wsgi:application`.
  Every response carries an `X-Bench` header (JSON): the request's time inside Django, its phases
  (auth, view, serializer, render, the services a view calls) as offsets from the request's start,
  and its SQL statements with their times. With WARDEN_BENCH_CPROFILE=1 (use one sync worker)
  each request is also profiled; `GET /__bench/dump` writes the stats per view under
  $WARDEN_BENCH_OUT.
- Worker: start `python bench/instrument.py <celery worker arguments>`. Each task appends one
  JSON line (phases, SQL, wall-clock start and end) to $WARDEN_BENCH_OUT/tasks-<pid>.jsonl;
  with WARDEN_BENCH_CPROFILE=1 each child also writes its cumulative profile every 10 tasks.
"""

from __future__ import annotations

import cProfile
import functools
import json
import os
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

OUT = Path(os.environ.get("WARDEN_BENCH_OUT", "/tmp/warden-bench-profile"))
CPROFILE = os.environ.get("WARDEN_BENCH_CPROFILE") == "1"

_local = threading.local()


class Trace:
    """What one request or task did: phases (start offset, duration) and SQL statements."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.wall = time.time()
        self.phases: list[tuple[str, float, float]] = []
        self.sql: list[tuple[str, float]] = []
        self.marks: dict[str, float] = {}

    def as_dict(self) -> dict[str, Any]:
        return {
            "wall": self.wall,
            "total_ms": (time.perf_counter() - self.started) * 1000,
            "phases": [[n, s * 1000, d * 1000] for n, s, d in self.phases],
            "sql": [[text, d * 1000] for text, d in self.sql],
            "marks": self.marks,
        }


def current() -> Trace | None:
    return getattr(_local, "trace", None)


def mark(name: str) -> None:
    """Record the wall-clock time of `name` in the current trace (cross-process timelines)."""
    trace = current()
    if trace is not None:
        trace.marks[name] = time.time()


def _timed(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        trace = current()
        if trace is None:
            return function(*args, **kwargs)
        started = time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            end = time.perf_counter()
            trace.phases.append((label, started - trace.started, end - started))

    wrapper.__bench_wrapped__ = True  # type: ignore[attr-defined]
    return wrapper


def patch(owner: Any, name: str, label: str | None = None) -> None:
    """Time `owner.name` (a function, method or property getter) under `label`."""
    label = label or f"{getattr(owner, '__name__', owner)}.{name}"
    value = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name)
    if value is None:
        value = getattr(owner, name)
    if getattr(getattr(value, "fget", value), "__bench_wrapped__", False):
        return
    if isinstance(value, property):
        assert value.fget is not None
        setattr(owner, name, property(_timed(label, value.fget), value.fset, value.fdel))
    elif isinstance(value, staticmethod):
        setattr(owner, name, staticmethod(_timed(label, value.__func__)))
    else:
        setattr(owner, name, _timed(label, value))


_NUMBERS = re.compile(r"\b\d+(\.\d+)?\b|'[^']*'|\"[0-9a-f-]{32,36}\"")


def _sql_wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
    trace = current()
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        if trace is not None:
            trace.sql.append((_NUMBERS.sub("?", sql), time.perf_counter() - started))


class SqlCapture:
    """Install the SQL timing wrapper on this thread's default connection."""

    def __enter__(self) -> SqlCapture:
        from django.db import connections

        self.connection = connections["default"]
        self.connection.execute_wrappers.append(_sql_wrapper)
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self.connection.execute_wrappers.remove(_sql_wrapper)
        except ValueError:
            pass


# --- web ------------------------------------------------------------------------------------


def _view_kind(path: str) -> str:
    if path.startswith("/v1/jobs/"):
        return "job-detail"
    return path.strip("/").replace("/", "_") or "root"


def patch_web() -> None:
    """Wrap DRF's request cycle and the services the views call."""
    from rest_framework import authentication, serializers, views
    from rest_framework.response import Response

    import execution_app.apis as execution_apis
    import execution_app.selectors as execution_selectors
    import execution_app.services as execution_services
    import plugins_app.apis as plugin_apis
    import plugins_app.selectors as plugin_selectors

    patch(views.APIView, "dispatch", "view: APIView.dispatch")
    patch(views.APIView, "initial", "view: initial (auth, permissions, negotiation)")
    patch(authentication.TokenAuthentication, "authenticate", "auth: token lookup")
    patch(views.APIView, "finalize_response", "view: finalize_response")
    patch(Response, "rendered_content", "render: JSON")
    patch(serializers.Serializer, "data", "serializer: .data")
    patch(serializers.ListSerializer, "data", "serializer: .data")
    patch(execution_apis, "job_submit", "analyze: job_submit")
    patch(execution_apis, "job_wait", "analyze: job_wait")
    patch(execution_apis, "job_get", "jobs: job_get")
    patch(execution_apis.AnalyzeRequestSerializer, "is_valid", "analyze: request serializer")
    patch(execution_services, "analysis_validate", "analyze: analysis_validate (plugin read)")
    patch(execution_services, "job_create", "analyze: job_create (INSERT)")
    patch(execution_services, "job_dispatch", "analyze: job_dispatch (Redis)")
    patch(execution_services, "queue_has_live_worker", "analyze: live-worker check")
    patch(plugin_apis, "health_body", "health: health_body (cached per registry version)")
    patch(plugin_selectors, "registry_version", "health: registry_version (every request)")
    patch(plugin_selectors, "plugin_list", "health: plugin_list (cache miss)")
    patch(plugin_selectors, "plugin_health", "health: plugin_health (per record, cache miss)")
    patch(plugin_apis, "_render", "health: serializer (cache miss)")

    class TimedAsyncResult(execution_selectors.AsyncResult):  # type: ignore[misc,name-defined]
        def get(self, *args: Any, **kwargs: Any) -> Any:
            try:
                return _timed("analyze: wait for the Celery result", super().get)(*args, **kwargs)
            finally:
                mark("result_received")

    execution_selectors.AsyncResult = TimedAsyncResult
    original_refresh = execution_selectors.Job.refresh_from_db
    execution_selectors.Job.refresh_from_db = _timed(  # type: ignore[method-assign]
        "analyze: job row re-read", original_refresh
    )
    from project.celery import app as celery_app

    original_send_task = celery_app.send_task

    def send_task_marked(*args: Any, **kwargs: Any) -> Any:
        try:
            return _timed("analyze: send_task (subscribe + publish)", original_send_task)(
                *args, **kwargs
            )
        finally:
            mark("published")

    celery_app.send_task = send_task_marked  # type: ignore[method-assign]
    original_dispatch = execution_services.job_dispatch

    def dispatch_marked(job: Any, **options: Any) -> None:
        original_dispatch(job, **options)
        mark("dispatched")

    execution_services.job_dispatch = dispatch_marked


_profiles: dict[str, cProfile.Profile] = {}
_django_app: Any = None
_init_lock = threading.Lock()


def application(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """The instrumented WSGI application (see the module docstring)."""
    global _django_app
    with _init_lock:  # the first requests arrive on several threads at once
        if _django_app is None:
            from project.wsgi import application as django_app

            patch_web()
            _django_app = django_app
    path = environ.get("PATH_INFO", "")
    if path == "/__bench/dump":
        return _dump(start_response)
    trace = _local.trace = Trace()
    captured: dict[str, Any] = {}

    def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        captured.update(status=status, headers=headers)
        return lambda data: None

    profile = None
    if CPROFILE:
        profile = _profiles.setdefault(_view_kind(path), cProfile.Profile())
        profile.enable()
    try:
        with SqlCapture():
            result = _django_app(environ, capture)
            body = b"".join(result)
            if hasattr(result, "close"):
                result.close()
    finally:
        if profile is not None:
            profile.disable()
        _local.trace = None
    header = json.dumps(trace.as_dict(), separators=(",", ":"))
    start_response(captured["status"], [*captured["headers"], ("X-Bench", header)])
    return [body]


def _dump(start_response: Callable[..., Any]) -> Iterable[bytes]:
    OUT.mkdir(parents=True, exist_ok=True)
    written = []
    for kind, profile in _profiles.items():
        target = OUT / f"web-{kind}-{os.getpid()}.prof"
        profile.dump_stats(str(target))
        written.append(str(target))
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(written).encode()]


# --- worker ---------------------------------------------------------------------------------


def patch_worker() -> None:
    """Wrap the task's steps; record one JSON line per task (see the module docstring)."""
    from celery.signals import task_postrun, task_prerun

    import execution_app.runner as runner
    import execution_app.tasks as tasks
    import plugins_app.services as plugin_services

    patch(tasks, "job_claim", "task: job_claim (UPDATE + SELECT)")
    patch(runner, "plugin_admit_here", "task: plugin_admit_here")
    patch(runner, "tool_resolve", "task: tool_resolve")
    patch(runner, "args_validate", "task: args_validate (JSON Schema)")
    patch(runner.ToolRunner, "_instance", "task: plugin instance (cached)")
    patch(runner.ToolRunner, "_call_args", "task: call args")
    patch(runner.ToolRun, "__enter__", "scope: ToolRun enter")
    patch(runner.ToolRun, "__exit__", "scope: ToolRun exit")
    patch(runner.ToolRunner, "_check_run", "task: check run")
    patch(runner, "output_validate", "task: output_validate (JSON Schema, size)")
    patch(runner, "job_finish", "task: job_finish (UPDATE job + plugin metrics)")
    patch(plugin_services, "plugin_record_outcome", "task: plugin_record_outcome")

    state: dict[str, Any] = {"count": 0, "profile": None, "sql": None}

    @task_prerun.connect(weak=False)
    def prerun(task_id: str = "", task: Any = None, **_: Any) -> None:
        _local.trace = Trace()
        state["sql"] = SqlCapture().__enter__()
        if CPROFILE:
            if state["profile"] is None:
                state["profile"] = cProfile.Profile()
            state["profile"].enable()

    @task_postrun.connect(weak=False)
    def postrun(task_id: str = "", task: Any = None, retval: Any = None, **_: Any) -> None:
        if state["profile"] is not None:
            state["profile"].disable()
        if state["sql"] is not None:
            state["sql"].__exit__()
        trace = current()
        _local.trace = None
        if trace is None:
            return
        record = {"task_id": task_id, "task": getattr(task, "name", ""), "retval": str(retval)}
        record.update(trace.as_dict())
        record["wall_end"] = time.time()
        OUT.mkdir(parents=True, exist_ok=True)
        with open(OUT / f"tasks-{os.getpid()}.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
        state["count"] += 1
        if state["profile"] is not None and state["count"] % 10 == 0:
            state["profile"].dump_stats(str(OUT / f"worker-{os.getpid()}.prof"))


def worker_main() -> None:
    """`python bench/instrument.py <celery arguments>`: an instrumented `celery` command."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")
    import django

    django.setup()
    patch_worker()
    from celery.bin.celery import main

    sys.argv = ["celery", *sys.argv[1:]]
    sys.exit(main())


if __name__ == "__main__":
    worker_main()
