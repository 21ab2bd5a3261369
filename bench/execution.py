"""Execution benchmark: Warden's sync round trip against a bare Celery round trip, measured in one
run on one stack (Redis + prefork worker + gunicorn started here), plus limit overshoots.

    .venv/bin/python bench/execution.py [--requests 300] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.measure import timed_parallel
from bench.stack import Stack

STACK = Stack(
    env={
        "WARDEN_HARD_GRACE_S": "1",
        "WARDEN_LOG_LEVEL": "WARNING",
        "WARDEN_QUARANTINE_AFTER": "100000",  # the limit runs crash the same plugin on purpose
    }
)

from tests.harness import wait_until  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=4)
    options = parser.parse_args()

    STACK.prepare()
    from execution_app.models import Job
    from execution_app.tasks import ping
    from plugins_app.models import PluginRecord

    token = STACK.token
    STACK.start_worker(concurrency=2)
    port = STACK.start_web(access_log=False)
    base = f"http://127.0.0.1:{port}"

    def analyze(body: dict, timeout: float = 60) -> tuple[int, dict]:
        request = urllib.request.Request(
            f"{base}/v1/analyze-execution",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def echo() -> None:
        status, body = analyze({"plugin": "echo", "args": {"n": 1}})
        assert status == 200, body

    def bare() -> None:
        assert ping.delay().get(timeout=30) == "pong"

    from execution_app.selectors import job_wait
    from execution_app.services import job_submit

    def in_process() -> None:
        job = job_submit(plugin_name="echo", args={"n": 1})
        assert job_wait(job=job, timeout_s=30).status == "SUCCESS"

    some_job: list[str] = []

    def http_floor() -> None:
        request = urllib.request.Request(
            f"{base}/v1/jobs/{some_job[0]}", headers={"Authorization": f"Token {token}"}
        )
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert reply.status == 200

    try:
        for _ in range(20):  # warm up: children load plugins, connections open
            echo()
            bare()
        some_job.append(str(Job.objects.filter(plugin_name="echo").first().pk))
        print(
            f"# Warden execution benchmark ({options.requests} requests, "
            f"concurrency 1 and {options.concurrency}, worker prefork -c 2)"
        )
        rows = []
        for label, fn in (
            ("bare Celery ping (delay+get)", bare),
            ("Warden sync echo (HTTP)", echo),
            ("Warden echo, services, no HTTP", in_process),
            ("HTTP floor: GET /v1/jobs/{id}", http_floor),
        ):
            serial = timed_parallel(fn, options.requests, 1)
            parallel = timed_parallel(fn, options.requests, options.concurrency)
            rows.append((label, serial["p50_ms"], serial["p99_ms"], parallel["rate"]))
        print(f"{'path':<32}{'p50 ms':>9}{'p99 ms':>9}{'jobs/s':>9}")
        for label, p50, p99, rate in rows:
            print(f"{label:<32}{p50:>9.2f}{p99:>9.2f}{rate:>9.1f}")
        print(
            f"ratio p50 Warden/bare: {rows[1][1] / rows[0][1]:.2f}x over HTTP, "
            f"{rows[2][1] / rows[0][1]:.2f}x without HTTP; "
            f"throughput bare/Warden: {rows[0][3] / rows[1][3]:.2f}x"
        )

        import psutil

        # Where a sync echo's time goes, from the job rows of the serial run above.
        echo_jobs = list(
            Job.objects.filter(plugin_name="echo", status="SUCCESS")
            .order_by("-created_at")[3 * options.requests : 4 * options.requests]  # HTTP, serial
            .values_list("created_at", "started_at", "finished_at")
        )
        queued = [(s - c).total_seconds() * 1000 for c, s, _ in echo_jobs]
        running = [(f - s).total_seconds() * 1000 for _, s, f in echo_jobs]
        print(
            f"echo breakdown (p50): job row created -> claimed by worker "
            f"{statistics.median(queued):.2f} ms; claimed -> finished "
            f"{statistics.median(running):.2f} ms; the rest of the round trip is HTTP, auth, "
            "validation, the INSERT and the wait for the result"
        )

        def limit_run(tool: str, timeout_s: float) -> tuple[float, float, str, float]:
            """Return (job end past the deadline, child death past the deadline, kind, limit)."""
            _, body = analyze(
                {"plugin": "faulty", "tool": tool, "args": {"seconds": 30}, "timeout_s": timeout_s}
            )
            job = Job.objects.get(pk=body["error"]["job_id"])
            kind = body["error"]["details"]["kind"]
            limit = timeout_s if kind == "soft" else timeout_s + 1
            ended = (job.finished_at - job.started_at).total_seconds() - limit
            deadline = job.started_at.timestamp() + limit
            if kind == "hard":  # the child must be gone, killed by the pool
                wait_until(lambda: not psutil.pid_exists(job.worker_pid), 10, "the child to die")
            died = time.time() - deadline if kind == "hard" else ended
            return ended, died, kind, limit

        print("\n# Time limits (faulty plugin; soft limit 1 s, hard = soft + 1 s grace)")
        for tool in ("sleep", "spin_native"):
            ends, deaths = [], []
            for _ in range(5):
                ended, died, kind, limit = limit_run(tool, 1)
                ends.append(ended)
                deaths.append(died)
            print(
                f"{tool:<12} kind={kind:<4} limit={limit:.0f}s  job recorded FAILED "
                f"{statistics.median(ends) * 1000:.0f} ms (max {max(ends) * 1000:.0f} ms) past "
                f"the deadline; stuck child gone by "
                f"{max(deaths) * 1000:.0f} ms past it (max, an upper bound: polled)"
            )

        print("\n# Memory limit (faulty.alloc appends 8 MB chunks; limit 200 MB of RSS growth)")
        for label, gpu in (
            ("CPU plugin: RLIMIT_AS backstop + watchdog", False),
            ("GPU-style plugin: watchdog thread only", True),
        ):
            PluginRecord.objects.filter(name="faulty").update(requires_gpu=gpu)
            peaks, kinds = [], set()
            for _ in range(5):
                _, body = analyze({"plugin": "faulty", "tool": "alloc"})
                assert body["error"]["type"] == "MemoryLimitExceeded", body
                details = body["error"]["details"]
                kinds.add(details["kind"])
                if details["peak_mb"] is not None:  # None: the kernel's cgroup limit stopped it
                    peaks.append(float(details["peak_mb"]))
            stopped = f"stopped by {'/'.join(sorted(kinds))}"
            if not peaks:
                print(f"{label:<44} {stopped} (the kernel does not report a peak)")
                continue
            print(
                f"{label:<44} {stopped}, peak growth at stop: median "
                f"{statistics.median(peaks):.0f} MB, max {max(peaks):.0f} MB "
                f"(max overshoot {100 * (max(peaks) - 200) / 200:.1f} %)"
            )
    finally:
        STACK.stop()


if __name__ == "__main__":
    main()
