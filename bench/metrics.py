"""Metrics benchmark: the cost of a /metrics scrape with 50 plugins, with and without a large jobs
table, the query plans behind it, and the per-request cost of the HTTP request metrics.

    .venv/bin/python bench/metrics.py [--jobs 1000000] [--scrapes 300]

Uses project.settings with a throwaway WARDEN_VAR_DIR (SQLite) and its own Redis; set
DATABASE_URL to measure on PostgreSQL instead (the database must exist and be empty).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
VAR = Path(tempfile.mkdtemp(prefix="warden-bench-metrics-"))
os.environ.update(
    DJANGO_SETTINGS_MODULE="project.settings",
    WARDEN_VAR_DIR=str(VAR),
    WARDEN_LOG_LEVEL="WARNING",
    WARDEN_ACCESS_LOG="false",
)

from tests.harness import free_port, start_redis  # noqa: E402

REDIS_PORT = free_port()
os.environ["WARDEN_REDIS_URL"] = f"redis://127.0.0.1:{REDIS_PORT}/0"

import django  # noqa: E402

django.setup()
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402

ERROR_TYPES = ("PluginError", "TimeoutError", "MemoryLimitExceeded", "ValidationError")
STATES = ["INITIALIZED"] * 38 + ["FAILED"] * 6 + ["UNAVAILABLE"] * 5 + ["LOADED"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"median {statistics.median(ms):.2f} ms, p95 {percentile(ms, 95):.2f} ms, "
        f"max {max(ms):.2f} ms (n={len(ms)})"
    )


def seed_registry(plugins: int) -> None:
    """`plugins` plugin records in assorted states, outcome totals with histograms, heartbeats."""
    import redis

    from ops_app.models import DURATION_COLUMNS, MEMORY_COLUMNS, JobOutcome
    from plugins_app.models import PluginRecord

    rng = random.Random(7)
    PluginRecord.objects.bulk_create(
        PluginRecord(
            name=f"plugin_{i:02d}",
            location=f"/plugins/plugin_{i:02d}",
            version="1.0.0",
            state=STATES[i % len(STATES)],
            reason=None if STATES[i % len(STATES)] == "INITIALIZED" else "something is wrong",
            requires_gpu=i % 10 == 0,
            quarantined=i == 7,
            success_count=rng.randrange(10**6),
            error_count=rng.randrange(10**4),
        )
        for i in range(plugins)
    )
    rows = []
    for i in range(plugins):
        for status, error_type in [("SUCCESS", ""), *(("FAILED", t) for t in ERROR_TYPES)]:
            row = JobOutcome(
                plugin_name=f"plugin_{i:02d}",
                status=status,
                error_type=error_type,
                count=rng.randrange(1, 10**6),
                timed_count=rng.randrange(1, 10**6),
                duration_sum_s=rng.random() * 10**5,
                memory_count=rng.randrange(1, 10**6),
                memory_sum_mb=rng.random() * 10**6,
            )
            for column in (*DURATION_COLUMNS, *MEMORY_COLUMNS):
                setattr(row, column, rng.randrange(10**5))
            rows.append(row)
    JobOutcome.objects.bulk_create(rows)
    client = redis.Redis.from_url(os.environ["WARDEN_REDIS_URL"])
    now = time.time()
    client.zadd("warden:workers:cpu", {"cpu@host-a": now, "cpu@host-b": now})
    client.zadd("warden:workers:gpu", {"gpu@host-c": now})
    client.rpush("cpu", *[b"message"] * 25)


def seed_jobs(total: int) -> None:
    """`total` finished jobs over 30 days (plus 100 running), inserted in raw batches."""
    from execution_app.models import Job

    table = Job._meta.db_table
    columns = (
        "id, plugin_id, plugin_name, tool, args, input_mime_type, status, error_type, traceback, "
        "timeout_s, hard_timeout_s, memory_mb, queue, created_at, finished_at, "
        "execution_time_ms, worker_host, attempts"
    )
    sql = f"INSERT INTO {table} ({columns}) VALUES ({', '.join(['%s'] * 18)})"
    rng = random.Random(11)
    now = datetime.now(UTC)
    batch: list[tuple[object, ...]] = []
    started = time.perf_counter()
    for i in range(total + 100):
        running = i >= total
        created = now - timedelta(seconds=rng.random() * 30 * 86400)
        failed = rng.random() < 0.1
        batch.append(
            (
                uuid.uuid4().hex if connection.vendor == "sqlite" else str(uuid.uuid4()),
                None,
                f"plugin_{rng.randrange(50):02d}",
                "run",
                "{}",
                "",
                "RUNNING" if running else ("FAILED" if failed else "SUCCESS"),
                "PluginError" if failed and not running else "",
                "",
                60.0,
                65.0,
                1024,
                "cpu",
                created,
                None if running else created + timedelta(seconds=1),
                None if running else rng.random() * 500,
                "host-a",
                1,
            )
        )
        if len(batch) == 20_000:
            with connection.cursor() as cursor:
                cursor.executemany(sql, batch)
            batch.clear()
    with connection.cursor() as cursor:
        cursor.executemany(sql, batch)
    print(f"  inserted {total + 100} jobs in {time.perf_counter() - started:.1f} s")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {table}")


def time_scrapes(n: int) -> tuple[list[float], list[float], int, int]:
    """Times of n full HTTP scrapes (test client: middleware, DRF, collector, exposition), of n
    collector-only runs, the queries per scrape and the exposition size."""
    from ops_app.metrics import metrics_text

    client = Client()
    for _ in range(5):
        client.get("/metrics")
    full = []
    for _ in range(n):
        started = time.perf_counter()
        response = client.get("/metrics")
        full.append(time.perf_counter() - started)
        assert response.status_code == 200
    collector = []
    for _ in range(n):
        started = time.perf_counter()
        body = metrics_text()
        collector.append(time.perf_counter() - started)
    with CaptureQueriesContext(connection) as queries:
        metrics_text()
    return full, collector, len(queries), len(body)


def query_plans() -> None:
    """EXPLAIN of each database query a scrape makes."""
    from ops_app.metrics import metrics_text

    with CaptureQueriesContext(connection) as queries:
        metrics_text()
    explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN "
    for query in queries.captured_queries:
        sql = query["sql"]
        with connection.cursor() as cursor:
            cursor.execute(explain + sql)
            plan = [" ".join(str(c) for c in row) for row in cursor.fetchall()]
        print(f"  {sql[:110]}{'…' if len(sql) > 110 else ''}")
        for line in plan:
            print(f"      {line}")


def time_http_metric_writes(n: int) -> None:
    """Per-request cost of the HTTP metrics: multiprocess mmap files (what Warden does) against
    the alternative of counters in Redis (one pipeline per request)."""
    import redis

    from ops_app.metrics import observe_request

    started = time.perf_counter()
    for i in range(n):
        observe_request("GET", "v1/plugins", 200, 0.004 + (i % 7) / 1000)
    mmap_us = (time.perf_counter() - started) / n * 1e6

    client = redis.Redis.from_url(os.environ["WARDEN_REDIS_URL"])
    started = time.perf_counter()
    for i in range(n):
        pipe = client.pipeline(transaction=False)
        pipe.hincrby("bench:http:count", "GET|v1/plugins|200", 1)
        pipe.hincrbyfloat("bench:http:sum", "GET|v1/plugins", 0.004 + (i % 7) / 1000)
        pipe.hincrby("bench:http:bucket", "GET|v1/plugins|0.005", 1)
        pipe.execute()
    redis_us = (time.perf_counter() - started) / n * 1e6
    print(f"  multiprocess mmap (prometheus_client): {mmap_us:.1f} µs per request")
    print(f"  Redis pipeline (3 commands, local Redis): {redis_us:.1f} µs per request")


def time_job_end_record(n: int) -> None:
    """What counting and logging a job's end adds to `job_finish`: `job_end_record` alone (the
    job's labels by primary key, one upsert), per call, on jobs of one plugin."""
    from django.db import transaction

    from execution_app.models import Job
    from ops_app.services import job_end_record
    from plugins_app.models import PluginRecord

    plugin = PluginRecord.objects.get(name="plugin_03")
    jobs = Job.objects.bulk_create(
        Job(
            plugin=plugin,
            plugin_name=plugin.name,
            tool="run",
            timeout_s=60,
            hard_timeout_s=65,
            memory_mb=1024,
        )
        for _ in range(n)
    )
    times = []
    for i, job in enumerate(jobs):
        with transaction.atomic():
            started = time.perf_counter()
            job_end_record(
                job_id=str(job.pk), error=None, execution_ms=float(i % 400), peak_memory_mb=12.0
            )
            times.append(time.perf_counter() - started)
    Job.objects.filter(pk__in=[j.pk for j in jobs]).delete()
    print(f"  job_end_record (per job end): {summary(times)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=50)
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--scrapes", type=int, default=300)
    args = parser.parse_args()

    redis_proc = start_redis(REDIS_PORT, VAR / "redis")
    try:
        call_command("migrate", verbosity=0)
        seed_registry(args.plugins)
        print(f"{args.plugins} plugins, {connection.vendor}, empty jobs table")
        full, collector, queries, size = time_scrapes(args.scrapes)
        print(f"  GET /metrics: {summary(full)}")
        print(f"  collector only: {summary(collector)}")
        print(f"  {queries} database queries per scrape, {size} bytes of exposition")
        time_http_metric_writes(20_000)
        time_job_end_record(500)
        if args.jobs:
            print(f"{args.plugins} plugins, {args.jobs} jobs")
            seed_jobs(args.jobs)
            full, collector, queries, size = time_scrapes(args.scrapes)
            print(f"  GET /metrics: {summary(full)}")
            print(f"  collector only: {summary(collector)}")
            print(f"  {queries} database queries per scrape")
            from ops_app.selectors import jobs_recent, plugin_recent_jobs
            from plugins_app.models import PluginRecord

            plugin = PluginRecord.objects.get(name="plugin_07")
            for label, read in (
                ("dashboard: jobs of the last hour", lambda: jobs_recent(hours=1)),
                ("plugin page: its last 60 jobs", lambda: plugin_recent_jobs(plugin=plugin)),
            ):
                times = []
                for _ in range(20):
                    started = time.perf_counter()
                    read()
                    times.append(time.perf_counter() - started)
                print(f"  {label}: {summary(times)}")
        print("query plans:")
        query_plans()
    finally:
        redis_proc.stop()


if __name__ == "__main__":
    main()
