"""`make load`: 50 concurrent clients for 60 s against a whole running Warden (gunicorn, prefork
worker, beat, Redis) mixing health reads, job reads, sync and async analyze calls on healthy
plugins, cancels, and calls that hit every fault of the fault plugin (errors, bad output, soft and
hard timeouts, memory kills, crashes) and every process-tree fault of the spawner plugin (helpers,
forks, daemons, a fork bomb). Then it checks: zero 5xx, every job terminal, each plugin's counters
equal to its recorded jobs, no process a plugin started still alive, no "database is locked", the
worker still serving.
Once on SQLite, once on a throw-away PostgreSQL (skipped where the machine has none).

    .venv/bin/python bench/load.py [--clients 50] [--duration 60] [--only sqlite|postgres]
"""

from __future__ import annotations

import argparse
import itertools
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# Every fault tool of tests/plugins/runtime/faulty, with arguments that make it fault, then every
# process-tree fault of tests/plugins/runtime/spawner (helpers, forks, daemons, a fork bomb, a
# helper that eats memory): the processes they start must all be gone after their jobs.
FAULTS: list[tuple[str, str, dict[str, Any]]] = [
    ("faulty", "raise", {}),
    ("faulty", "raise_nul", {}),
    ("faulty", "invalid_input", {}),
    ("faulty", "return_none", {}),
    ("faulty", "return_list", {}),
    ("faulty", "return_nonjson", {}),
    ("faulty", "return_nul", {}),
    ("faulty", "bad_output", {}),
    ("faulty", "image", {}),  # no file: the plugin's KeyError
    ("faulty", "sleep", {"seconds": 30}),  # soft time limit (2 s)
    ("faulty", "ignore_soft", {"seconds": 30}),  # swallows the soft limit: hard kill
    ("faulty", "spin_native", {}),  # one long C call: hard kill
    ("faulty", "alloc", {}),  # memory kill (200 MB)
    ("faulty", "segfault", {}),
    ("faulty", "exit", {}),
    ("faulty", "system_exit", {}),
    ("faulty", "keyboard_interrupt", {}),
    ("spawner", "helper_then_sleep", {"seconds": 30}),  # soft limit; the helper is swept
    ("spawner", "helper_then_hang", {}),  # hard kill of the child and its helper
    ("spawner", "helper_then_crash", {}),  # the child dies; its helper is swept
    ("spawner", "helper_then_alloc", {}),  # memory kill with a helper alive
    ("spawner", "helper_alloc", {"chunks": 250}),  # the helper eats the memory
    ("spawner", "fork_and_return", {}),  # success, leaving a forked child
    ("spawner", "daemon_and_return", {}),  # success, leaving a double-forked daemon
    ("spawner", "swallow_soft", {"seconds": 3}),  # returns after its soft limit: late
    ("spawner", "big_result", {"mb": 20}),  # a result over WARDEN_MAX_RESULT_MB
    ("spawner", "print_flood", {"lines": 50_000}),  # output capped, job fine
    ("spawner", "fork_bomb", {"n": 300}),  # the pids limit (or the sweep) holds
]
SURVIVOR_DEADLINE_S = 15
# At most this many fault jobs in flight, so a worker child stays free for everyone else (the
# slow faults hold a child for their whole time limit).
FAULTS_IN_FLIGHT = 2
POLL_S = 0.25


@dataclass
class Tally:
    """What the clients saw, shared by their threads."""

    statuses: Counter[int] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)
    server_errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, action: str, status: int, body: Any) -> None:
        with self.lock:
            self.statuses[status] += 1
            self.actions[action] += 1
            if status >= 500:
                self.server_errors.append(f"{action} -> {status} {str(body)[:300]}")


class Client(threading.Thread):
    """One client: a random mix of calls until the deadline."""

    def __init__(
        self,
        number: int,
        api: Any,
        deadline: float,
        tally: Tally,
        faults: Any,
        cycle: Any,
        pidfile: Path,
    ) -> None:
        super().__init__(name=f"client-{number}", daemon=True)
        self.fault_cycle = cycle
        self.api = api
        self.deadline = deadline
        self.tally = tally
        self.faults = faults
        self.random = random.Random(number)
        self.pidfile = pidfile

    def call(self, action: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        try:
            status, reply = self.api.call(method, path, body, timeout=120)
        except OSError as exc:  # a refused or dropped connection is a failure too
            status, reply = 599, f"{type(exc).__name__}: {exc}"
        self.tally.record(action, status, reply)
        return status, reply

    def run(self) -> None:
        actions = [
            (20, self.health_list),
            (15, self.health_one),
            (5, self.jobs_list),
            (20, self.sync_echo),
            (5, self.sync_ok),
            (10, self.async_echo),
            (3, self.cancel),
            (22, self.fault),
        ]
        weights = [w for w, _ in actions]
        while time.monotonic() < self.deadline:
            self.random.choices([a for _, a in actions], weights)[0]()

    def health_list(self) -> None:
        self.call("health list", "GET", "/v1/plugins")

    def health_one(self) -> None:
        name = self.random.choice(["echo", "faulty", "ocr", "nonexistent"])
        self.call("health one", "GET", f"/v1/plugins/{name}/health")

    def jobs_list(self) -> None:
        status = self.random.choice(["", "&status=FAILED", "&status=RUNNING"])
        self.call("jobs list", "GET", f"/v1/jobs?limit=20{status}")

    def sync_echo(self) -> None:
        self.call("sync echo", "POST", "/v1/analyze-execution", {"plugin": "echo", "args": {}})

    def sync_ok(self) -> None:
        body = {"plugin": "faulty", "tool": "ok", "args": {"n": 1}}
        self.call("sync faulty ok", "POST", "/v1/analyze-execution", body)

    def async_echo(self) -> None:
        self.submit_and_poll("async echo", {"plugin": "echo", "args": {"n": 2}})

    def cancel(self) -> None:
        body = {"plugin": "echo", "tool": "sleep", "args": {"seconds": 3}}
        status, reply = self.call("async sleep", "POST", "/v1/analyze-execution/async", body)
        if status == 202:
            self.call("cancel", "DELETE", reply["url"])

    def fault(self) -> None:
        if not self.faults.acquire(blocking=False):
            return self.health_list()
        try:
            with self.tally.lock:  # every fault in turn, so each one is hit
                plugin, tool, args = next(self.fault_cycle)
            if plugin == "spawner":
                args = {**args, "pidfile": str(self.pidfile)}
            body = {"plugin": plugin, "tool": tool, "args": args}
            if self.random.random() < 0.5:
                self.call(f"sync fault {tool}", "POST", "/v1/analyze-execution", body)
            else:
                self.submit_and_poll(f"async fault {tool}", body)
        finally:
            self.faults.release()
        return None

    def submit_and_poll(self, action: str, body: dict[str, Any]) -> None:
        status, reply = self.call(action, "POST", "/v1/analyze-execution/async", body)
        if status != 202:
            return
        while time.monotonic() < self.deadline + 120:
            status, job = self.call("poll job", "GET", reply["url"])
            if status != 200 or job["status"] in ("SUCCESS", "FAILED"):
                return
            time.sleep(POLL_S)


def run_once(database: str, clients: int, duration: float) -> list[str]:
    """One load run on a fresh stack; returns the problems found (empty: passed)."""
    from bench.stack import Stack, report

    stack = Stack(
        name=f"load-{database}",
        postgres=database == "postgres",
        env={
            "WARDEN_LOG_LEVEL": "WARNING",
            "WARDEN_QUARANTINE_AFTER": "1000000",  # the fault plugin must keep faulting
        },
        keep=True,  # its logs and database, for a look after a failure
    )
    problems: list[str] = []
    try:
        api = stack.start(concurrency=3, threads=32)
        from tests.invariants import active_jobs, counter_mismatches, job_totals, wait_all_terminal

        tally = Tally()
        faults = threading.BoundedSemaphore(FAULTS_IN_FLIGHT)
        started = time.monotonic()
        cycle = itertools.cycle(FAULTS)  # shared: every fault in turn
        pidfile = stack.var / "spawned.pids"  # the spawner plugin notes each process it starts
        threads = [
            Client(n, api, started + duration, tally, faults, cycle, pidfile)
            for n in range(clients)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - started
        drained = time.monotonic()
        try:
            wait_all_terminal(600)
        except AssertionError:
            problems.append(f"{active_jobs()} job(s) still PENDING or RUNNING after 600 s")
        drain = time.monotonic() - drained
        final_status, final = api.call("POST", "/v1/analyze-execution", {"plugin": "echo"})
        serving = final_status == 200 and stack.worker is not None and stack.worker.alive()
        mismatches = counter_mismatches()
        spawned, survivors = _survivors(pidfile)
        if survivors:
            problems.append(f"{len(survivors)} process(es) plugins started outlived their jobs")
        locked = stack.logs().count("database is locked")
        problems += tally.server_errors[:20]
        if tally.server_errors:
            problems.append(f"{len(tally.server_errors)} responses with a 5xx status")
        problems += mismatches
        if locked:
            problems.append(f'"database is locked" {locked} times in the logs')
        if not serving:
            problems.append(f"the worker no longer serves: {final_status} {final}")
        requests = sum(tally.statuses.values())
        print(
            report(
                [
                    ("database", "PostgreSQL" if database == "postgres" else "SQLite"),
                    ("clients x duration", f"{clients} x {duration:g} s (ran {elapsed:.1f} s)"),
                    ("requests", f"{requests} ({requests / elapsed:.0f}/s)"),
                    ("responses by status", dict(sorted(tally.statuses.items()))),
                    ("5xx responses", len(tally.server_errors)),
                    ("calls by kind", dict(sorted(tally.actions.items()))),
                    ("jobs", job_totals()),
                    ("jobs not terminal", active_jobs()),
                    ("drain after the run", f"{drain:.1f} s"),
                    ("counters == jobs", not mismatches),
                    ("plugin processes started / alive after", f"{spawned} / {len(survivors)}"),
                    ('"database is locked"', locked),
                    ("worker still serving", serving),
                    ("logs and database", stack.var),
                ]
            )
        )
    finally:
        stack.stop()
    return problems


def _survivors(pidfile: Path) -> tuple[int, list[int]]:
    """How many processes the spawner noted, and those still alive (not zombies) once the sweep
    had SURVIVOR_DEADLINE_S to remove them."""
    import psutil

    noted = [int(line) for line in pidfile.read_text().split()] if pidfile.exists() else []

    def alive() -> list[int]:
        found = []
        for pid in noted:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    found.append(pid)
            except psutil.NoSuchProcess:
                pass
        return found

    deadline = time.monotonic() + SURVIVOR_DEADLINE_S
    while (left := alive()) and time.monotonic() < deadline:
        time.sleep(0.2)
    return len(noted), left


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--only", choices=["sqlite", "postgres"])
    options = parser.parse_args()
    databases = [options.only] if options.only else ["sqlite", "postgres"]
    failed = False
    for database in databases:
        if database == "postgres" and not _postgres_available():
            print("load: no PostgreSQL server here; the PostgreSQL run is skipped")
            continue
        # Each database in its own process: Django is configured once per process.
        done = subprocess.run(
            [
                sys.executable,
                __file__,
                "--run",
                database,
                "--clients",
                str(options.clients),
                "--duration",
                str(options.duration),
            ],
            check=False,
        )
        failed |= done.returncode != 0
    print("make load: " + ("FAILED" if failed else "passed"))
    return 1 if failed else 0


def _postgres_available() -> bool:
    """Whether scripts/postgres.sh can start a cluster here (server binaries, `postgres` user)."""
    import pwd

    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return False
    return bool(list(Path("/usr/lib/postgresql").glob("*/bin/initdb")))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--run":
        run = argparse.ArgumentParser()
        run.add_argument("--run")
        run.add_argument("--clients", type=int)
        run.add_argument("--duration", type=float)
        args = run.parse_args()
        found = run_once(args.run, args.clients, args.duration)
        for problem in found:
            print(f"FAIL: {problem}", file=sys.stderr)
        sys.exit(1 if found else 0)
    sys.exit(main())
