"""`make bench-profile`: where the time of a request and of a task goes, measured in situ.

    .venv/bin/python bench/breakdown.py [--quick] [--databases sqlite,postgresql] [--save]

Per database, on its own stack (bench/stack.py) with the instrumented gunicorn app and worker of
bench/instrument.py:

1. per request (sync echo, health list, one health record, job detail, trivial views): client
   latency, time inside Django, its phases, SQL statements (count, time, text); per echo task in
   the worker child: its phases and statements; the cross-process timeline of a sync echo;
2. cProfile of the same requests (one sync gunicorn worker) and tasks: own time by library and
   the top functions;
3. gunicorn worker class and counts (wrk on the trivial view and the health list, sync echo on 4
   client threads), the access log, the worker's log level, containment mode (ToolRun cost);
4. in process: what each middleware, DRF and the token lookup cost per request.

`--save` writes the report to docs/bench/breakdown.txt.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import Http, load_average, percentile, timed_parallel, wrk

ROOT = Path(__file__).resolve().parent.parent
INSTRUMENTED_APP = "bench.instrument:application"
ECHO = {"plugin": "echo", "args": {"n": 1}}
LINES: list[str] = []


def say(text: str = "") -> None:
    print(text)
    sys.stdout.flush()
    LINES.append(text)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def short_sql(sql: str) -> str:
    """A statement reduced to what identifies it: verb, tables, conditions."""
    sql = re.sub(r"^SELECT .*? FROM", "SELECT … FROM", sql, flags=re.S)
    sql = re.sub(r"^UPDATE (\S+) SET .*? WHERE", r"UPDATE \1 SET … WHERE", sql, flags=re.S)
    sql = re.sub(r"^INSERT INTO (\S+) .*", r"INSERT INTO \1 …", sql, flags=re.S)
    sql = re.sub(r"\(SELECT .*? FROM", "(SELECT … FROM", sql, flags=re.S)
    return sql.replace('"', "")[:230]


# --- 1. per request / per task breakdowns ---------------------------------------------------


def _collect(
    trace: dict[str, Any],
    phases: dict[str, list[float]],
    statements: dict[str, list[float]],
    sql_n: list[int],
    sql_ms: list[float],
) -> None:
    """Add one request's or task's trace (bench/instrument.py) to the running lists: each
    phase's total time, and its SQL statements."""
    sums: dict[str, float] = defaultdict(float)
    for label, _, duration in trace["phases"]:
        sums[label] += duration
    for label, total in sums.items():
        phases[label].append(total)
    sql_n.append(len(trace["sql"]))
    sql_ms.append(sum(d for _, d in trace["sql"]))
    for text, duration in trace["sql"]:
        statements[text].append(duration)


def request_breakdown(
    http: Http, name: str, method: str, path: str, body: Any, n: int, auth: bool
) -> dict:
    """Send `n` requests serially; return client latency, in-Django time, phases and SQL."""
    client, app, sql_n, sql_ms = [], [], [], []
    phases: dict[str, list[float]] = defaultdict(list)
    statements: dict[str, list[float]] = defaultdict(list)
    traces = []
    for _ in range(5):
        http.request(method, path, body, auth=auth)
    for _ in range(n):
        started = time.perf_counter()
        status, headers, payload = http.request(method, path, body, auth=auth)
        elapsed = (time.perf_counter() - started) * 1000
        assert status < 400, (status, payload[:300])
        trace = json.loads(headers["X-Bench"])
        trace["client_ms"] = elapsed
        trace["client_end"] = time.time()
        if path.startswith("/v1/analyze"):
            trace["job_id"] = json.loads(payload)["job_id"]
        traces.append(trace)
        client.append(elapsed)
        app.append(trace["total_ms"])
        _collect(trace, phases, statements, sql_n, sql_ms)
    result = {
        "name": name,
        "client_p50": med(client),
        "client_p99": percentile(client, 99),
        "app_p50": med(app),
        "outside_app_p50": med([c - a for c, a in zip(client, app, strict=True)]),
        "sql_n": med(sql_n),
        "sql_ms": med(sql_ms),
        "phases": {k: med(v) for k, v in phases.items()},
        "statements": {k: (len(v) / n, med(v)) for k, v in statements.items()},
        "traces": traces,
    }
    say(
        f"\n## {name}: {method} {path} ({n} serial requests)\n"
        f"client p50 {result['client_p50']:.2f} ms (p99 {result['client_p99']:.1f}); inside "
        f"Django (WSGI app) p50 {result['app_p50']:.2f} ms; outside it (gunicorn, HTTP, client) "
        f"{result['outside_app_p50']:.2f} ms; SQL: {result['sql_n']:.0f} statements, "
        f"{result['sql_ms']:.2f} ms"
    )
    for label, value in sorted(result["phases"].items(), key=lambda kv: -kv[1]):
        say(f"  {value:8.3f} ms  {label}")
    for text, (per, duration) in result["statements"].items():
        say(f"  SQL x{per:.0f} {duration:6.3f} ms  {short_sql(text)}")
    return result


def task_breakdown(out_dir: Path, job_ids: set[str]) -> dict[str, Any]:
    """Summarise the worker's per-task records of the given jobs."""
    records = []
    for path in out_dir.glob("tasks-*.jsonl"):
        for line in path.read_text().splitlines():
            record = json.loads(line)
            if record["task_id"] in job_ids:
                records.append(record)
    phases: dict[str, list[float]] = defaultdict(list)
    statements: dict[str, list[float]] = defaultdict(list)
    totals, sql_n, sql_ms = [], [], []
    for record in records:
        totals.append(record["total_ms"])
        _collect(record, phases, statements, sql_n, sql_ms)
    n = len(records)
    say(
        f"\n## run_job(echo) in the worker child ({n} tasks): task_prerun -> task_postrun "
        f"p50 {med(totals):.2f} ms; SQL {med(sql_n):.0f} statements, {med(sql_ms):.2f} ms"
    )
    for label, values in sorted(phases.items(), key=lambda kv: -med(kv[1])):
        say(f"  {med(values):8.3f} ms  {label}")
    for text, values in statements.items():
        say(f"  SQL x{len(values) / max(n, 1):.0f} {med(values):6.3f} ms  {short_sql(text)}")
    enter = phases.get("scope: ToolRun enter", [])
    leave = phases.get("scope: ToolRun exit", [])
    scope = [a + b for a, b in zip(enter, leave, strict=False)]
    return {
        "n": n,
        "total_p50": med(totals),
        "phases": {k: med(v) for k, v in phases.items()},
        "sql_n": med(sql_n),
        "sql_ms": med(sql_ms),
        "scope_p50": med(scope),
        "scope_p90": percentile(scope, 90) if scope else 0.0,
        "records": {r["task_id"]: r for r in records},
    }


def timeline(echo: dict[str, Any], tasks: dict[str, Any]) -> None:
    """The cross-process timeline of a sync echo (wall clocks of one machine), p50 per step."""
    steps: dict[str, list[float]] = defaultdict(list)
    for trace in echo["traces"]:
        record = tasks["records"].get(trace["job_id"])
        marks = trace["marks"]
        if record is None or "published" not in marks or "result_received" not in marks:
            continue
        client_start = trace["client_end"] - trace["client_ms"] / 1000
        web_start = trace["wall"]
        finish = [p for p in record["phases"] if p[0].startswith("task: job_finish")]
        task_end = record["wall"] + (finish[-1][1] + finish[-1][2]) / 1000 if finish else None
        web_end = web_start + trace["total_ms"] / 1000
        published, received = marks["published"], marks["result_received"]
        points = [
            ("client -> Django (gunicorn, HTTP parsing)", client_start, web_start),
            ("Django: middleware, auth, validation, INSERT, publish", web_start, published),
            (
                "published -> task_prerun in the child (broker, worker main)",
                published,
                record["wall"],
            ),
            ("worker child: claim, run, finish", record["wall"], task_end),
            ("job_finish end -> result received by the web (store, pubsub)", task_end, received),
            ("Django: row re-read, serialise, render, middleware", received, web_end),
            ("Django -> client (gunicorn, HTTP)", web_end, trace["client_end"]),
        ]
        for label, start, end in points:
            if start is not None and end is not None:
                steps[label].append((end - start) * 1000)
    say("\n## sync echo timeline (p50 of each step; wall clocks, one machine)")
    for label, values in steps.items():
        say(f"  {med(values):8.3f} ms  {label}")


# --- 2. cProfile ----------------------------------------------------------------------------

BUCKETS = [
    ("django.db / ORM", ("django/db/",)),
    ("DB driver (sqlite3, psycopg)", ("sqlite3", "psycopg")),
    ("rest_framework", ("rest_framework/",)),
    (
        "django handlers, middleware, urls",
        ("django/core/handlers", "django/middleware", "django/contrib/", "django/urls"),
    ),
    ("django other", ("django/",)),
    ("celery / kombu / redis", ("celery/", "kombu/", "redis/", "billiard/", "vine/")),
    ("jsonschema", ("jsonschema", "referencing", "rpds")),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("warden (project, apps)", ("project/", "plugins_app/", "execution_app/", "plugin_packages/")),
    ("psutil", ("psutil",)),
    ("socket / select / ssl (I/O waits)", ("socket", "select", "selectors", "ssl")),
]


# Frames every request or task passes through: left out of the cumulative listing.
PLUMBING = (
    "bench/instrument.py",
    "django/core/handlers/",
    "django/utils/deprecation.py",
    "django/views/decorators/csrf.py",
    "django/views/generic/base.py",
    "rest_framework/views.py",
    "celery/app/trace.py",
    "execution_app/tasks.py",
)


def bucket(filename: str, function: str) -> str:
    key = f"{filename}:{function}"
    for label, needles in BUCKETS:
        if any(n in key for n in needles):
            return label
    if filename == "~":
        if any(w in function for w in ("poll", "select", "recv", "send", "read", "write", "sleep")):
            return "socket / select / ssl (I/O waits)"
        return "builtins"
    return "other python"


def profile_summary(files: list[Path], title: str, per: int, top: int = 12) -> None:
    """Own time by library and the top functions by cumulative and own time, per call."""
    if not files:
        say(f"\n## cProfile {title}: no profile written")
        return
    stats = pstats.Stats(*[str(f) for f in files])
    raw: dict[Any, Any] = stats.stats  # type: ignore[attr-defined]
    buckets: dict[str, float] = defaultdict(float)
    total = 0.0
    for (filename, _, function), (_, _, tottime, _, _) in raw.items():
        buckets[bucket(filename, function)] += tottime
        total += tottime
    say(f"\n## cProfile {title}: {1000 * total / per:.2f} ms of profiled time per call")
    say("  own time by library, ms per call:")
    for label, seconds in sorted(buckets.items(), key=lambda kv: -kv[1]):
        if 1000 * seconds / per >= 0.005:
            say(f"    {1000 * seconds / per:7.3f}  {label}")

    def where(filename: str, line: int, function: str) -> str:
        name = re.sub(r".*site-packages/", "", filename).replace(str(ROOT) + "/", "")
        return f"{name}:{line}({function})"

    say("  top functions by own time, ms per call (calls per call):")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][2])
    for (filename, line, function), (_, ncalls, tottime, _, _) in rows[:top]:
        place = where(filename, line, function)
        say(f"    {1000 * tottime / per:7.3f}  x{ncalls / per:<6.1f} {place}")
    say("  top functions by cumulative time below the request/task plumbing, ms per call:")
    rows = sorted(raw.items(), key=lambda kv: -kv[1][3])
    shown = 0
    for (filename, line, function), (_, ncalls, _, cumtime, _) in rows:
        if any(p in filename for p in PLUMBING) or function.startswith("<"):
            continue
        place = where(filename, line, function)
        say(f"    {1000 * cumtime / per:7.3f}  x{ncalls / per:<6.1f} {place}")
        shown += 1
        if shown >= top:
            break


# --- 3. configurations ----------------------------------------------------------------------


def gunicorn_sweep(stack: Any, quick: bool) -> None:
    from execution_app.tasks import ping  # noqa: F401  (the app is configured)

    seconds = 2 if quick else 5
    configs = [
        ("gthread", 2, 16, True),  # make run
        ("gthread", 2, 16, False),
        ("gthread", 2, 4, False),
        ("gthread", 4, 4, False),
        ("gthread", 1, 16, False),
        ("sync", 2, 1, False),
        ("sync", 4, 1, False),
    ]
    say(
        f"\n## gunicorn worker class and counts (2 cores; worker -c 2 idle; wrk -c 16 "
        f"{seconds} s; sync echo on 4 client threads)"
    )
    say(
        f"  {'class':<8}{'workers':>8}{'threads':>8}{'access log':>11}  "
        f"{'trivial req/s':>14}{'p99':>7}  {'health req/s':>13}{'p99':>7}  {'echo jobs/s':>12}"
    )
    for worker_class, workers, threads, access in configs:
        port = stack.start_web(
            worker_class=worker_class, workers=workers, threads=threads, access_log=access
        )
        http = Http(port, stack.token)
        base = f"http://127.0.0.1:{port}"
        wrk(base + "/bench/trivial", seconds=1)
        trivial = wrk(base + "/bench/trivial", seconds=seconds)
        health = wrk(base + "/v1/plugins", seconds=seconds)

        def echo(http: Http = http) -> None:
            http.ok("POST", "/v1/analyze-execution", ECHO)

        for _ in range(4):
            echo()
        jobs = timed_parallel(echo, 40 if quick else 200, 4)
        say(
            f"  {worker_class:<8}{workers:>8}{threads if worker_class == 'gthread' else '-':>8}"
            f"{'on' if access else 'off':>11}  {trivial['rps']:>14,.0f}{trivial['p99_ms']:>7.1f}"
            f"  {health['rps']:>13,.0f}{health['p99_ms']:>7.1f}  {jobs['rate']:>12.1f}"
        )
    stack.start_web()


def load_sweep(stack: Any, quick: bool) -> None:
    """Figure (e)'s levers: the health list idle and while 4 sleeping + 2 CPU-bound jobs run, with
    gunicorn gthread or sync, and the worker at the web's priority or below it. The worker runs in
    a session of its own; with autogroup scheduling (/proc/sys/kernel/sched_autogroup_enabled) a
    process's nice value counts only inside its session, so its session's autogroup nice is what
    lowers it against the web (`nice -n 10` is measured too, to show that)."""
    from bench.figures import under_load
    from bench.stack import PYTHON

    seconds = 3 if quick else 8
    say(
        f"\n## health list idle vs under load (4 sleeping + 2 CPU-bound jobs, worker -c 6), "
        f"wrk -c 16 {seconds} s; autogroup scheduling "
        f"{Path('/proc/sys/kernel/sched_autogroup_enabled').read_text().strip()}"
    )
    head = f"{'idle req/s':>11}{'p99':>8}{'loaded req/s':>14}{'p99':>8}"
    say(f"  {'gunicorn':<16}{'worker':<26}{head}")
    gthread = {"worker_class": "gthread", "workers": 2, "threads": 16}
    sync = {"worker_class": "sync", "workers": 2}
    for label, web, how in (
        ("gthread 2x16", gthread, "same priority"),
        ("gthread 2x16", gthread, "nice -n 10"),
        ("gthread 2x16", gthread, "autogroup nice 10"),
        ("sync 2", sync, "same priority"),
        ("sync 2", sync, "autogroup nice 10"),
    ):
        launcher = ["nice", "-n", "10", PYTHON, "-m", "celery"] if how == "nice -n 10" else None
        worker = stack.start_worker(concurrency=6, name="load", launcher=launcher)
        if how == "autogroup nice 10":
            Path(f"/proc/{worker.pid}/autogroup").write_text("10")
        port = stack.start_web(**web)
        url = f"http://127.0.0.1:{port}/v1/plugins"
        wrk(url, seconds=1)
        idle, loaded = under_load(url, seconds)
        say(
            f"  {label:<16}{how:<26}{idle['rps']:>11,.0f}{idle['p99_ms']:>8.1f}"
            f"{loaded['rps']:>14,.0f}{loaded['p99_ms']:>8.1f}"
        )
    stack.start_worker(concurrency=2)
    stack.start_web()


def sched_ms(pid: int) -> tuple[float, float]:
    """(ms on a CPU, ms runnable but waiting for one) of all threads of `pid` so far."""
    run = wait = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            on_cpu, waiting, _ = Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()
        except (OSError, ValueError):
            continue
        run += int(on_cpu)
        wait += int(waiting)
    return run / 1e6, wait / 1e6


def priority_probe(stack: Any, quick: bool) -> None:
    """Serial health-list requests to one gunicorn worker while 4 sleeping + 2 CPU-bound jobs run:
    the time it spends on a CPU and waiting for one (schedstat), with the worker at the web's
    priority, `nice -n 10`, or its session's autogroup at nice 10; two rounds."""
    import tempfile

    import psutil

    from bench.stack import PYTHON
    from execution_app.models import Job
    from execution_app.services import job_submit

    n = 10 if quick else 40
    port = stack.start_web(workers=1)
    http = Http(port)
    web_pid = psutil.Process(stack.web.pid).children()[0].pid
    say(
        f"\n## one gunicorn worker's scheduling while 4 sleeping + 2 CPU-bound jobs run "
        f"({n} serial health-list requests per row, p50)"
    )
    for _ in range(2):
        for how in ("same priority", "nice -n 10", "autogroup nice 10"):
            launcher = ["nice", "-n", "10", PYTHON, "-m", "celery"] if how == "nice -n 10" else None
            worker = stack.start_worker(concurrency=6, name="prio", launcher=launcher)
            if how == "autogroup nice 10":
                Path(f"/proc/{worker.pid}/autogroup").write_text("10")
            stop = Path(tempfile.mkdtemp(prefix="warden-bench-load-")) / "stop"
            args = {"seconds": 280, "stop_file": str(stop)}
            ids = [
                job_submit(plugin_name="bench_load", tool=tool, args=args).pk
                for tool in ("sleep",) * 4 + ("burn",) * 2
            ]
            try:
                while Job.objects.filter(pk__in=ids, status="RUNNING").count() < 6:
                    time.sleep(0.05)
                latency, on_cpu, waiting = [], [], []
                for _ in range(n):
                    cpu0, wait0 = sched_ms(web_pid)
                    started = time.perf_counter()
                    http.ok("GET", "/v1/plugins")
                    latency.append((time.perf_counter() - started) * 1000)
                    cpu1, wait1 = sched_ms(web_pid)
                    on_cpu.append(cpu1 - cpu0)
                    waiting.append(wait1 - wait0)
            finally:
                stop.touch()
                while Job.objects.filter(pk__in=ids, status__in=["PENDING", "RUNNING"]).exists():
                    time.sleep(0.05)
                shutil.rmtree(stop.parent, ignore_errors=True)
            say(
                f"  worker {how:<18} latency {med(latency):6.1f} ms (p90 "
                f"{percentile(latency, 90):6.1f}); on a CPU {med(on_cpu):5.1f} ms, waiting for one "
                f"{med(waiting):6.1f} ms; load {load_average()}"
            )
    stack.start_worker(concurrency=2)
    stack.start_web()


def worker_sweep(stack: Any, quick: bool) -> None:
    from execution_app.tasks import ping

    n = 40 if quick else 200
    port = stack.start_web()
    http = Http(port, stack.token)

    def echo() -> None:
        http.ok("POST", "/v1/analyze-execution", ECHO)

    def bare() -> None:
        assert ping.delay().get(timeout=30) == "pong"

    say(f"\n## worker log level and containment ({n} serial calls each, worker -c 2)")
    configs = [("INFO", "auto"), ("WARNING", "auto"), ("INFO", "tree"), ("WARNING", "tree")]
    for loglevel, containment in [*configs, configs[0]]:  # the first again: drift
        stack.start_worker(
            concurrency=2, loglevel=loglevel, env={"WARDEN_CONTAINMENT": containment}
        )
        for _ in range(10):
            echo()
            bare()
        bare_r = timed_parallel(bare, n, 1)
        echo_r = timed_parallel(echo, n, 1)
        say(
            f"  -l {loglevel:<8} containment {containment:<5}: bare ping p50 "
            f"{bare_r['p50_ms']:.2f} ms, sync echo p50 {echo_r['p50_ms']:.2f} ms"
        )


def probe_ladder(quick: bool) -> None:
    """Figure (f): what one probe costs over a bare interpreter, step by step (serial)."""
    import subprocess

    from bench.stack import PYTHON
    from plugins_app.probe import ProbeSpec, probe_one

    n = 5 if quick else 30
    echo = ProbeSpec("echo", str(ROOT / "plugin_packages" / "echo"), "plugin:Plugin", "directory")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    from plugins_app.probe import PROBE_CHILD, probe_args

    steps: list[tuple[str, Any]] = [
        ("python -c pass", [PYTHON, "-c", "pass"]),
        ("python -I -S -c pass (no site-packages)", [PYTHON, "-I", "-S", "-c", "pass"]),
        (
            "python -c 'import plugins_app.probe_child'",
            [PYTHON, "-c", "import plugins_app.probe_child"],
        ),
        (
            "python -c '<probe child>' <echo>",
            [PYTHON, "-P", "-c", PROBE_CHILD, *probe_args(echo)],
        ),
    ]
    say(f"\n## one probe, step by step ({n} serial runs each, ms p50)")
    for label, command in steps:
        times = []
        for _ in range(n):
            started = time.perf_counter()
            subprocess.run(command, env=env, cwd=ROOT, capture_output=True, check=True)
            times.append((time.perf_counter() - started) * 1000)
        say(f"  {med(times):8.1f}  {label}")
    times = [probe_one(echo, timeout_s=30, memory_mb=2048).duration_ms for _ in range(n)]
    say(f"  {med(times):8.1f}  probe_one(echo): the above + temp files, psutil, 10 ms polling")


# --- 4. in process --------------------------------------------------------------------------


def in_process(token: str, quick: bool) -> None:
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test import RequestFactory, override_settings

    n = 300 if quick else 2000
    base_environ = RequestFactory()._base_environ

    def per_request_us(path: str, middleware: list[str], auth: bool = False, n: int = n) -> float:
        with override_settings(MIDDLEWARE=middleware):
            handler = WSGIHandler()
            extra = {"HTTP_AUTHORIZATION": f"Token {token}"} if auth else {}

            def call() -> None:
                environ = base_environ(PATH_INFO=path, REQUEST_METHOD="GET", **extra)
                result = handler(environ, lambda status, headers, exc=None: None)
                b"".join(result)
                result.close()

            for _ in range(50):
                call()
            best = float("inf")
            for _ in range(3):  # the least disturbed of three runs
                started = time.perf_counter()
                for _ in range(n):
                    call()
                best = min(best, (time.perf_counter() - started) / n * 1e6)
            return best

    full = list(settings.MIDDLEWARE)
    say(f"\n## in process (WSGIHandler called directly, {n} requests each, µs per request)")
    base = per_request_us("/bench/trivial", full)
    say(f"  trivial DRF view, all {len(full)} middleware: {base:8.0f} µs")
    say(f"  trivial DRF view, no middleware:      {per_request_us('/bench/trivial', []):8.0f} µs")
    # Authentication and messages need the session: those three go together.
    session = {m for m in full if m.rsplit(".", 1)[1].startswith(("Session", "Auth", "Message"))}
    groups = [[m] for m in full if m not in session] + [sorted(session)]
    for group in groups:
        without = per_request_us("/bench/trivial", [m for m in full if m not in group])
        names = " + ".join(m.rsplit(".", 1)[1] for m in group)
        say(f"    without {names:<60} {without:8.0f} µs ({base - without:+.0f})")
    for label, path, auth in (
        ("plain Django JsonResponse view", "/bench/trivial-django", False),
        ("trivial DRF view + token auth", "/bench/trivial-auth", True),
        ("GET /v1/plugins (50 plugins)", "/v1/plugins", False),
        ("GET /v1/plugins/echo/health", "/v1/plugins/echo/health", False),
    ):
        count = n // 10 if path.startswith("/v1/") else n  # those take 3-15 ms each
        say(f"  {label:<37} {per_request_us(path, full, auth, count):8.0f} µs")


# --- driver ---------------------------------------------------------------------------------


def warm_up(http: Http) -> None:
    """Sync echo on 16 client threads: every gunicorn thread opens its database connection
    and its Celery result backend (per thread) before anything is measured."""

    def echo() -> None:
        http.ok("POST", "/v1/analyze-execution", ECHO)

    timed_parallel(echo, 96, 16)


def one_database(
    database_url: str | None, quick: bool, out: Path, *, breakdowns: bool, sweeps: bool
) -> None:
    """Per-request/per-task breakdowns and cProfile (`breakdowns`), configuration sweeps
    (`sweeps`), on one database; the report goes to `out`."""
    from bench.figures import make_plugins
    from bench.stack import PYTHON, Stack

    profile_dir = Path(tempfile.mkdtemp(prefix="warden-bench-prof-"))
    stack = Stack(
        database_url=database_url, env={"WARDEN_BENCH_OUT": str(profile_dir)}, bench_views=True
    )
    from django.db import connection

    from execution_app.models import Job

    n = 40 if quick else 200
    launcher = [PYTHON, str(ROOT / "bench" / "instrument.py")]
    say(f"# {connection.vendor}: load {load_average()}, {n} requests per kind")
    try:
        stack.prepare([make_plugins(stack.var / "plugins", 50)])
        if breakdowns:
            stack.start_worker(concurrency=2, launcher=launcher)
            port = stack.start_web(app=INSTRUMENTED_APP)
            http = Http(port, stack.token)
            warm_up(http)
            job_id = str(Job.objects.filter(status="SUCCESS").values_list("pk", flat=True)[0])
            # (name, method, path, body, token): public endpoints are called without a token, as
            # an operator's dashboard (and wrk in bench/figures.py) calls them.
            kinds = [
                ("sync echo", "POST", "/v1/analyze-execution", ECHO, True),
                ("health list", "GET", "/v1/plugins", None, False),
                ("one health record", "GET", "/v1/plugins/echo/health", None, False),
                ("job detail (token)", "GET", f"/v1/jobs/{job_id}", None, True),
                ("job list (token)", "GET", "/v1/jobs", None, True),
                ("trivial DRF view", "GET", "/bench/trivial", None, False),
                ("trivial DRF view + token", "GET", "/bench/trivial-auth", None, True),
                ("trivial Django view", "GET", "/bench/trivial-django", None, False),
            ]
            mode = re.findall(r"job containment: (\S+)", stack.worker.log_text())
            say(f"worker containment: {mode[-1] if mode else 'unknown'}")
            results = {}
            for name, method, path, body, auth in kinds:
                results[name] = request_breakdown(http, name, method, path, body, n, auth)
            echo_ids = {t["job_id"] for t in results["sync echo"]["traces"]}
            tasks = task_breakdown(profile_dir, echo_ids)
            timeline(results["sync echo"], tasks)
            say(
                "\n## containment scope in situ: ToolRun enter+exit p50 "
                f"{tasks['scope_p50']:.3f} ms (p90 {tasks['scope_p90']:.3f} ms), mode "
                f"{os.environ.get('WARDEN_CONTAINMENT', 'auto')}"
            )

            # cProfile: one sync gunicorn worker, one worker child.
            for f in profile_dir.glob("*"):
                f.unlink()
            cprofile = {"WARDEN_BENCH_CPROFILE": "1"}
            stack.start_worker(concurrency=1, launcher=launcher, env=cprofile)
            port = stack.start_web(
                app=INSTRUMENTED_APP, worker_class="sync", workers=1, access_log=False, env=cprofile
            )
            http = Http(port, stack.token)
            per = 50 if quick else 200
            for _, method, path, body, auth in kinds[:4] + kinds[5:6]:
                for _ in range(per):
                    http.request(method, path, body, auth=auth)
            http.request("GET", "/__bench/dump")
            for kind, label in (
                ("v1_analyze-execution", "sync echo (web)"),
                ("v1_plugins", "health list"),
                ("v1_plugins_echo_health", "one health record"),
                ("job-detail", "job detail"),
                ("bench_trivial", "trivial DRF view"),
            ):
                profile_summary(sorted(profile_dir.glob(f"web-{kind}-*.prof")), label, per)
            # The worker child writes its profile every 10 tasks: per calls were sent.
            files = sorted(profile_dir.glob("worker-*.prof"))
            profile_summary(
                files, "run_job(echo) in the worker child (first task loads the plugin)", per
            )

            scope_tree = tree_scope(stack, launcher, profile_dir, quick)
            say(f"  ToolRun enter+exit in situ, containment tree: p50 {scope_tree:.3f} ms")
        if sweeps:
            stack.start_worker(concurrency=2)
            gunicorn_sweep(stack, quick)
            load_sweep(stack, quick)
            priority_probe(stack, quick)
            worker_sweep(stack, quick)
            probe_ladder(quick)
            in_process(stack.token, quick)
    finally:
        stack.stop()
        shutil.rmtree(profile_dir, ignore_errors=True)
    out.write_text("\n".join(LINES))


def tree_scope(stack: Any, launcher: list[str], profile_dir: Path, quick: bool) -> float:
    """ToolRun enter+exit p50 with WARDEN_CONTAINMENT=tree (instrumented worker)."""
    for f in profile_dir.glob("tasks-*.jsonl"):
        f.unlink()
    stack.start_worker(concurrency=2, launcher=launcher, env={"WARDEN_CONTAINMENT": "tree"})
    port = stack.start_web()
    http = Http(port, stack.token)
    warm_up(http)
    for f in profile_dir.glob("tasks-*.jsonl"):
        f.unlink()
    for _ in range(40 if quick else 200):
        http.ok("POST", "/v1/analyze-execution", ECHO)
    scopes = []
    for path in profile_dir.glob("tasks-*.jsonl"):
        for line in path.read_text().splitlines():
            phases = json.loads(line)["phases"]
            scopes.append(sum(d for label, _, d in phases if label.startswith("scope: ToolRun")))
    return med(scopes)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", default=os.environ.get("BENCH_QUICK") == "1"
    )
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--save", action="store_true", help="write docs/bench/breakdown.txt")
    parser.add_argument(
        "--no-sweeps", action="store_true", help="per-request/per-task breakdowns only"
    )
    parser.add_argument(
        "--only-sweeps", action="store_true", help="configuration sweeps only (first database)"
    )
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: one database
    parser.add_argument("--database-url", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--sweeps", action="store_true", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.one:
        one_database(
            options.database_url,
            options.quick,
            Path(options.one),
            breakdowns=not options.only_sweeps,
            sweeps=options.sweeps,
        )
        return

    from bench.stack import postgres_databases

    var = Path(tempfile.mkdtemp(prefix="warden-bench-prof-run-"))
    texts = []
    for database in options.databases.split(","):
        out = var / f"{database}.txt"
        command = [sys.executable, __file__, "--one", str(out)]
        if options.quick:
            command.append("--quick")
        if not texts and not options.no_sweeps:  # configuration sweeps: first database only
            command.append("--sweeps")
        if options.only_sweeps:
            if texts:
                break
            command.append("--only-sweeps")
        if database == "postgresql":
            with postgres_databases(var, ["warden"]) as urls:
                if urls is None:
                    print("breakdown: the PostgreSQL pass is skipped")
                    continue
                subprocess.run([*command, "--database-url", urls[0]], check=True)
        else:
            subprocess.run(command, check=True)
        texts.append(out.read_text())
    if options.save:
        target = ROOT / "docs" / "bench" / "breakdown.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"# make bench-profile, {time.strftime('%Y-%m-%d %H:%M')}, load {load_average()} "
            "(shared 2-core machine: re-measure on an idle one)\n\n"
        )
        target.write_text(header + "\n\n".join(texts) + "\n")
        print(f"\nbreakdown: wrote {target}")
    shutil.rmtree(var, ignore_errors=True)


if __name__ == "__main__":
    main()
