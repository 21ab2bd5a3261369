"""Every figure of issue 9's target table, each with its baseline, on one database and one stack.

Started by bench/run.py (`make bench`) once per database; writes its figures as JSON.

    .venv/bin/python bench/figures.py --json out.json [--database-url URL]
        [--probe-database-url URL] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import Http, load_average, summary, timed_parallel, wrk
from bench.stack import BENCH_PLUGINS, PYTHON, ROOT, Stack

PLUGINS = 50
# Issue 9's "health": the plugin health list an operator's dashboard polls (not the
# load balancer probes /health/live and /health/ready).
HEALTH = "/v1/plugins"
TRIVIAL = "/bench/trivial"  # project/bench_views.py, mounted by WARDEN_BENCH_VIEWS=1


@dataclass(frozen=True)
class Sizes:
    serial: int  # requests per latency figure, one at a time
    parallel: int  # requests per throughput figure, on 4 client threads
    wrk_s: float  # seconds per wrk run
    history: int  # requests per endpoint in the history figure
    small_rows: int
    large_rows: int
    syncs: int

    @classmethod
    def pick(cls, quick: bool) -> Sizes:
        if quick:
            return cls(30, 40, 2, 20, 10_000, 50_000, 1)
        return cls(300, 400, 10, 200, 10_000, 1_000_000, 3)


def make_plugins(folder: Path, total: int) -> Path:
    """A plugin directory of `total` plugins: the samples, the benchmark load plugin, and copies
    of `echo` under other names (same manifest and schemas) to make up the number."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(p for p in (ROOT / "plugin_packages").iterdir() if p.is_dir())
    sources.append(BENCH_PLUGINS / "bench_load")
    for source in sources:
        (folder / source.name).symlink_to(source, target_is_directory=True)
    echo = ROOT / "plugin_packages" / "echo"
    manifest = json.loads((echo / "manifest.json").read_text())
    for index in range(total - len(sources)):
        copy = folder / f"echo_copy_{index:02d}"
        copy.mkdir()
        (copy / "manifest.json").write_text(json.dumps({**manifest, "name": copy.name}))
        (copy / "plugin.py").symlink_to(echo / "plugin.py")
    return folder


def ratio_figure(
    fid: str,
    title: str,
    *,
    warden: dict[str, Any],
    baseline: dict[str, Any],
    warden_label: str,
    baseline_label: str,
    metric: str,
    target: str,
    limit: float,
    higher_is_better: bool,
    p99_limit_ms: float | None = None,
    command: str = "",
) -> dict[str, Any]:
    """One row of the target table: Warden against its baseline on `metric`, and the verdict."""
    ratio = warden[metric] / baseline[metric] if baseline[metric] else float("nan")
    met = ratio >= limit if higher_is_better else ratio <= limit
    if p99_limit_ms is not None:
        met = met and warden["p99_ms"] < p99_limit_ms
    return {
        "id": fid,
        "title": title,
        "metric": metric,
        "target": target,
        "ratio": ratio,
        "met": met,
        "warden": warden,
        "baseline": baseline,
        "warden_label": warden_label,
        "baseline_label": baseline_label,
        "p99_limit_ms": p99_limit_ms,
        "command": command,
        "load": load_average(),
    }


def seed_jobs(first: int, last: int, template_id: str, total_span: int) -> None:
    """Insert finished job rows number `first`..`last` (copies of the template job, 5 % FAILED),
    created 1 h ago and older, spread so that `total_span` rows cover 30 days. Bulk SQL
    (INSERT ... SELECT over a generated series), in batches of 100 k."""
    from django.db import connection, transaction

    from execution_app.models import Job

    table = Job._meta.db_table
    quote = connection.ops.quote_name
    columns = [f.column for f in Job._meta.concrete_fields]
    step = 30 * 86400 / total_span
    if connection.vendor == "postgresql":
        when = f"now() - interval '1 hour' - s.i * interval '{step:.6f} seconds'"
        override = {"id": "gen_random_uuid()"}
        series = "generate_series(%s, %s) AS s(i)"
    else:
        when = (
            "strftime('%%Y-%%m-%%d %%H:%%M:%%f', 'now', '-3600 seconds', "
            f"'-' || (s.i * {step:.6f}) || ' seconds')"
        )
        override = {"id": "lower(hex(randomblob(16)))"}
        series = "s"
    override.update(
        created_at=when,
        started_at=when,
        finished_at=when,
        status="CASE WHEN s.i % 20 = 0 THEN 'FAILED' ELSE 'SUCCESS' END",
        error_type="CASE WHEN s.i % 20 = 0 THEN 'PluginError' ELSE '' END",
    )
    # Both backends take %s parameters, so a literal % is written %%.
    override = {k: v.replace("s.i % 20", "s.i %% 20") for k, v in override.items()}
    exprs = ", ".join(override.get(c, f"t.{quote(c)}") for c in columns)
    names = ", ".join(quote(c) for c in columns)
    for start in range(first, last + 1, 100_000):
        end = min(last, start + 99_999)
        if connection.vendor == "postgresql":
            sql = (
                f"INSERT INTO {table} ({names}) SELECT {exprs} FROM {series}, {table} AS t "
                "WHERE t.id = %s"
            )
            params: list[Any] = [start, end, template_id]
        else:
            sql = (
                "WITH RECURSIVE s(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
                f"INSERT INTO {table} ({names}) SELECT {exprs} FROM s, {table} AS t "
                "WHERE t.id = %s"
            )
            params = [start, end, template_id.replace("-", "")]
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, params)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:  # autovacuum would, a while after such an insert
            cursor.execute(f"ANALYZE {table}")


# wrk figures (c), (d): rounds of each URL in turn, so that drift in the machine's other load hits
# Warden and its baseline alike; each reports its median round.
ROUNDS = 3


def interleaved(
    targets: list[tuple[str, dict[str, str] | None]], *, seconds: float
) -> list[dict[str, Any]]:
    """wrk on each (url, headers) for `seconds` in all, in ROUNDS interleaved rounds; per
    target, the round with the median req/s."""
    runs: list[list[dict[str, Any]]] = [[] for _ in targets]
    for _ in range(ROUNDS):
        for found, (url, headers) in zip(runs, targets, strict=True):
            found.append(wrk(url, seconds=max(1.0, seconds / ROUNDS), headers=headers))
    return [sorted(found, key=lambda run: run["rps"])[len(found) // 2] for found in runs]


def under_load(url: str, seconds: float) -> tuple[dict[str, Any], dict[str, Any]]:
    """wrk `url` idle, then while 4 sleeping and 2 CPU-bound jobs run (the worker must have at
    least 6 children); stop the jobs and wait for their end; return (idle, loaded)."""
    from execution_app.models import Job
    from execution_app.services import job_submit

    idle = wrk(url, seconds=seconds)
    stop = Path(tempfile.mkdtemp(prefix="warden-bench-load-")) / "stop"
    args = {"seconds": 280, "stop_file": str(stop)}
    jobs = [
        job_submit(plugin_name="bench_load", tool=tool, args=args)
        for tool in ("sleep",) * 4 + ("burn",) * 2
    ]
    ids = [j.pk for j in jobs]
    try:
        deadline = time.monotonic() + 120
        while Job.objects.filter(pk__in=ids, status="RUNNING").count() < 6:
            assert time.monotonic() < deadline, "the six load jobs did not all start"
            time.sleep(0.05)
        time.sleep(0.5)  # the CPU-bound tools are spinning
        loaded = wrk(url, seconds=seconds)
        running = Job.objects.filter(pk__in=ids, status="RUNNING").count()
        assert running == 6, f"only {running} of the load jobs still ran at the end of wrk"
    finally:
        stop.touch()
        deadline = time.monotonic() + 60
        while Job.objects.filter(pk__in=ids, status__in=["PENDING", "RUNNING"]).exists():
            assert time.monotonic() < deadline, "the load jobs did not stop"
            time.sleep(0.05)
        shutil.rmtree(stop.parent, ignore_errors=True)
    return idle, loaded


def plans() -> dict[str, str]:
    """The database's plans for the history figure's queries (EXPLAIN; ANALYZE on PostgreSQL)."""
    from django.db import connection

    from execution_app.models import Job
    from execution_app.selectors import job_list
    from plugins_app.selectors import plugin_list

    options = {"analyze": True} if connection.vendor == "postgresql" else {}
    # Both health endpoints serve a per-process cache of the records: every request reads the
    # registry version, whose one jobs query is RUNNING_PLUGINS_SQL; plugin_list() runs only
    # when the version changed.
    running = Job.objects.filter(status="RUNNING", plugin__isnull=False).values("plugin_id")
    queries = {
        "running plugins (every health request)": running.distinct(),
        "health list (when the registry changed)": plugin_list(),
        "job list page": job_list()[:50],
    }
    found = {name: query.explain(**options) for name, query in queries.items()}
    found["job list count"] = job_list().order_by().values("pk").explain(**options)
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--probe-database-url", default=None)
    parser.add_argument("--quick", action="store_true")
    options = parser.parse_args()
    sizes = Sizes.pick(options.quick)

    stack = Stack(database_url=options.database_url, bench_views=True)
    from django.db import connection

    from execution_app.models import Job
    from execution_app.tasks import ping

    def log(text: str) -> None:
        print(f"[{connection.vendor} {time.strftime('%H:%M:%S')} load {load_average()}] {text}")
        sys.stdout.flush()

    figures: list[dict[str, Any]] = []
    out: dict[str, Any] = {
        "database": connection.vendor,
        "quick": options.quick,
        "sizes": sizes.__dict__,
        "load_before": load_average(),
        "figures": figures,
    }
    try:
        stack.prepare([make_plugins(stack.var / "plugins", PLUGINS)])
        from plugins_app.models import PluginRecord

        out["plugins"] = PluginRecord.objects.count()
        assert out["plugins"] == PLUGINS, f"{out['plugins']} plugins, expected {PLUGINS}"
        stack.start_worker(concurrency=2)
        port = stack.start_web()
        http = Http(port, stack.token)
        base = f"http://127.0.0.1:{port}"
        log(f"stack up: {stack.var}, gunicorn :{port}, worker -c 2, {out['plugins']} plugins")

        def echo() -> None:
            http.ok("POST", "/v1/analyze-execution", {"plugin": "echo", "args": {"n": 1}})

        def bare() -> None:
            assert ping.delay().get(timeout=30) == "pong"

        # Every gunicorn thread opens its database connection and Celery result backend (one
        # per thread), both children load echo, before anything is measured.
        timed_parallel(echo, 96, 16)
        for _ in range(30):
            bare()

        # (a) one request at a time: latency.
        log("(a) sync echo over HTTP vs bare Celery delay().get(), serial")
        bare_a = timed_parallel(bare, sizes.serial, 1)
        echo_a = timed_parallel(echo, sizes.serial, 1)
        figures.append(
            ratio_figure(
                "a",
                "sync analyze of `echo` over HTTP, p50",
                warden=echo_a,
                baseline=bare_a,
                warden_label="POST /v1/analyze-execution (echo)",
                baseline_label="Celery ping.delay().get()",
                metric="p50_ms",
                target="≤ 1.5x",
                limit=1.5,
                higher_is_better=False,
            )
        )

        # (b) four client threads: throughput.
        log("(b) jobs/s, 4 client threads, worker -c 2")
        bare_b = timed_parallel(bare, sizes.parallel, 4)
        echo_b = timed_parallel(echo, sizes.parallel, 4)
        figures.append(
            ratio_figure(
                "b",
                "jobs/s, 4 client threads, 2 worker children",
                warden=echo_b,
                baseline=bare_b,
                warden_label="sync echo over HTTP",
                baseline_label="Celery ping tasks",
                metric="rate",
                target="≥ 70 %",
                limit=0.7,
                higher_is_better=True,
            )
        )

        # (c), (d): wrk, 16 connections.
        echo_jobs = Job.objects.filter(plugin_name="echo", status="SUCCESS")
        job_id = str(echo_jobs.values_list("pk", flat=True)[0])
        auth = {"Authorization": f"Token {stack.token}"}
        for path, headers in ((TRIVIAL, None), (HEALTH, None), (f"/v1/jobs/{job_id}", auth)):
            wrk(base + path, seconds=1, headers=headers)  # warm up every gunicorn thread
        log(
            f"(c), (d) GET /v1/plugins and GET /v1/jobs/{{id}} (token) vs trivial DRF view, "
            f"wrk -c 16, {ROUNDS} interleaved rounds"
        )
        trivial, health, detail = interleaved(
            [(base + TRIVIAL, None), (base + HEALTH, None), (base + f"/v1/jobs/{job_id}", auth)],
            seconds=sizes.wrk_s,
        )
        figures.append(
            ratio_figure(
                "c",
                f"`GET /v1/plugins`, {PLUGINS} plugins, wrk -c 16",
                warden=health,
                baseline=trivial,
                warden_label="GET /v1/plugins",
                baseline_label="trivial DRF view",
                metric="rps",
                target="≥ 80 % req/s, p99 < 50 ms",
                limit=0.8,
                higher_is_better=True,
                p99_limit_ms=50,
            )
        )
        figures.append(
            ratio_figure(
                "d",
                "authenticated `GET /v1/jobs/{id}`, wrk -c 16",
                warden=detail,
                baseline=trivial,
                warden_label="GET /v1/jobs/{id} (token)",
                baseline_label="trivial DRF view",
                metric="rps",
                target="≥ 70 % req/s",
                limit=0.7,
                higher_is_better=True,
            )
        )

        # (e) the health list while slow jobs run: 6 children so that all six run at once.
        log("(e) GET /v1/plugins idle vs while 4 sleeping + 2 CPU-bound jobs run (worker -c 6)")
        stack.start_worker(concurrency=6, name="bench6")
        idle, loaded = under_load(base + HEALTH, sizes.wrk_s)
        figures.append(
            ratio_figure(
                "e",
                "`GET /v1/plugins` while 4 sleeping + 2 CPU-bound jobs run, wrk -c 16",
                warden=loaded,
                baseline=idle,
                warden_label="with 6 jobs running",
                baseline_label="idle",
                metric="rps",
                target="≥ 90 % req/s, p99 < 50 ms",
                limit=0.9,
                higher_is_better=True,
                p99_limit_ms=50,
            )
        )

        # (g) cost against history: 10 k rows, then 1 M rows.
        template = job_id
        history: dict[str, dict[str, Any]] = {}
        endpoints = {
            "health list": lambda: http.ok("GET", HEALTH),
            "one health record": lambda: http.ok("GET", "/v1/plugins/echo/health"),
            "job list": lambda: http.ok("GET", "/v1/jobs"),
            "sync echo": echo,
        }
        have = Job.objects.count()
        for label, rows in (("small", sizes.small_rows), ("large", sizes.large_rows)):
            if rows > have:
                log(f"(g) seeding job rows {have + 1}..{rows}")
                started = time.perf_counter()
                seed_jobs(have + 1, rows, template, sizes.large_rows)
                out[f"seed_{label}_s"] = time.perf_counter() - started
                have = Job.objects.count()
            log(f"(g) {have} job rows: the four endpoints, serial")
            history[label] = {"rows": have}
            out.setdefault("plans", {})[label] = plans()
            for name, call in endpoints.items():
                for _ in range(5):
                    call()
                history[label][name] = timed_parallel(call, sizes.history, 1)
        for name in endpoints:
            small, large = history["small"], history["large"]
            figures.append(
                ratio_figure(
                    "g",
                    f"{name} with {large['rows']:,} job rows vs {small['rows']:,}, p50",
                    warden=large[name],
                    baseline=small[name],
                    warden_label=f"{large['rows']:,} rows",
                    baseline_label=f"{small['rows']:,} rows",
                    metric="p50_ms",
                    target="≤ 1.2x",
                    limit=1.2,
                    higher_is_better=False,
                )
            )
    finally:
        stack.stop()

    # (f) plugin sync in its own process and database (bench/probe.py).
    log("(f) plugin sync of 50 plugins vs 50 bare interpreter spawns (bench/probe.py)")
    probe_json = Path(tempfile.mkdtemp(prefix="warden-bench-probe-")) / "probe.json"
    command = [
        PYTHON,
        str(ROOT / "bench" / "probe.py"),
        "--without-hang",
        "--repeat",
        str(sizes.syncs),
        "--json",
        str(probe_json),
    ]
    if options.probe_database_url:
        command += ["--database-url", options.probe_database_url]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "WARDEN_VAR_DIR")}
    subprocess.run(command, check=True, env=env)
    probe = json.loads(probe_json.read_text())
    shutil.rmtree(probe_json.parent, ignore_errors=True)
    sync = summary([s * 1000 for s in probe["sync_s"]], seconds=min(probe["sync_s"]))
    sync["median_s"] = sorted(probe["sync_s"])[len(probe["sync_s"]) // 2]
    spawn = summary([probe["baseline_s"] * 1000], seconds=probe["baseline_s"])
    spawn["median_s"] = probe["baseline_s"]
    sync["curve"] = summary(probe["probe_ms"])["curve"]  # the chart shows per-process times
    spawn["curve"] = summary(probe["spawn_ms"])["curve"]
    healthy = probe["kinds"].get("healthy", 0)
    broken = f"{healthy} healthy, {probe['plugins'] - healthy} broken in 5 ways, none hanging"
    figures.insert(
        5,
        ratio_figure(
            "f",
            f"plugin sync of {probe['plugins']} plugins ({broken})",
            warden=sync,
            baseline=spawn,
            warden_label=f"plugin_sync, median of {len(probe['sync_s'])}",
            baseline_label=f"{probe['plugins']} x python -c pass",
            metric="median_s",
            target="≤ 2.5x",
            limit=2.5,
            higher_is_better=False,
        ),
    )
    out["load_after"] = load_average()
    options.json.write_text(json.dumps(out, indent=1))
    log(f"figures written to {options.json}")


if __name__ == "__main__":
    main()
