"""Containment benchmark: memory overshoot when a helper process takes the memory, and how late
after a job's end the processes it started are gone, for each containment mechanism.

Starts its own Redis and a prefork worker (2 children) per mechanism, runs the `spawner` and
`faulty` test plugins through the services the API uses, and prints one table per mechanism.

    .venv/bin/python bench/containment.py [--runs 10] [--modes auto,tree]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.stack import RUNTIME_PLUGINS, Stack

STACK = Stack(
    env={
        "WARDEN_HARD_GRACE_S": "1",
        "WARDEN_LOG_LEVEL": "WARNING",
        "WARDEN_QUARANTINE_AFTER": "100000",  # the runs fail the same plugins on purpose
    }
)
VAR = STACK.var

import psutil  # noqa: E402

from tests.harness import wait_until  # noqa: E402

LIMIT_MB = 200


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_DEAD
    except psutil.NoSuchProcess:
        return True


def run(plugin: str, tool: str, args: dict, *, cancel_after_helper: bool = False):
    """Run one job to its end; return (job, helper pids, seconds from the job's end to when the
    last helper was seen gone: an upper bound, polled every 2 ms; negative when they were gone
    before the end was recorded)."""
    from execution_app.models import Job
    from execution_app.selectors import job_get
    from execution_app.services import job_cancel, job_submit

    pidfile = VAR / f"pids-{time.monotonic_ns()}"
    pidfile.write_text("")
    job = job_submit(plugin_name=plugin, tool=tool, args={**args, "pidfile": str(pidfile)})
    if cancel_after_helper:
        wait_until(lambda: pidfile.read_text().strip(), 20, "the helper to start")
        job_cancel(job=job_get(job_id=str(job.pk)))
    job = wait_until(
        lambda: Job.objects.filter(pk=job.pk, status__in=["SUCCESS", "FAILED"]).first(),
        60,
        "the job to end",
        interval=0.002,
    )
    pids = [int(p) for p in pidfile.read_text().split()]
    wait_until(lambda: all(gone(p) for p in pids), 10, f"helpers {pids} to die", interval=0.002)
    late = time.time() - job.finished_at.timestamp()
    return job, pids, late


def measure(mode: str, runs: int) -> None:
    STACK.start_worker(concurrency=2, name=f"bench-{mode}", env={"WARDEN_CONTAINMENT": mode})
    try:
        _, _, _ = run("spawner", "ok", {})  # children load the plugins
        rows = []
        for label, plugin, tool, args in (
            ("helper allocates (8 MB chunks)", "spawner", "helper_alloc", {"chunks": 250}),
            ("in-process allocation (8 MB chunks)", "faulty", "alloc", {}),
        ):
            peaks, kinds, measured = [], set(), ""
            for _ in range(runs):
                job, _, _ = run(plugin, tool, args)
                details = job.error["error"]["details"]
                kinds.add(details["kind"])
                measured = details.get("measured", "")
                peaks.append(
                    details["peak_mb"] if details["peak_mb"] is not None else LIMIT_MB * 1.1
                )
            rows.append((label, peaks, kinds, measured))
        print(f"\n# Memory limit {LIMIT_MB} MB, containment {measured} ({runs} runs each)")
        for label, peaks, kinds, _ in rows:
            print(
                f"{label:<38} stopped by {'/'.join(sorted(kinds)):<12} peak median "
                f"{statistics.median(peaks):.1f} MB, max {max(peaks):.1f} MB "
                f"(overshoot {100 * (max(peaks) - LIMIT_MB) / LIMIT_MB:.1f} %)"
            )

        print(f"\n# Helpers gone after the job's end, containment {measured} ({runs} runs each)")
        for label, tool, args, cancel in (
            ("hard-limit kill (helper_then_hang)", "helper_then_hang", {}, False),
            ("memory kill (helper_then_alloc)", "helper_then_alloc", {}, False),
            ("crash (helper_then_crash)", "helper_then_crash", {}, False),
            ("cancel (helper_then_sleep)", "helper_then_sleep", {"seconds": 5}, True),
            ("success leaving a fork", "fork_and_return", {}, False),
            ("success leaving a daemon", "daemon_and_return", {}, False),
        ):
            lates, ends = [], set()
            for _ in range(runs):
                job, _, late = run("spawner", tool, args, cancel_after_helper=cancel)
                lates.append(late)
                ends.add(job.error_type or job.status)
            print(
                f"{label:<36} {'/'.join(sorted(ends)):<20} last helper gone "
                f"median {statistics.median(lates) * 1000:6.0f} ms, "
                f"max {max(lates) * 1000:6.0f} ms after the job's end"
            )
    finally:
        STACK.stop_worker()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--modes", default="auto,tree")
    options = parser.parse_args()
    try:
        STACK.prepare([RUNTIME_PLUGINS])
        for mode in options.modes.split(","):
            measure(mode, options.runs)
    finally:
        STACK.stop()


if __name__ == "__main__":
    main()
