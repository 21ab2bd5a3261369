"""A whole Warden of its own for `make bench`, `make bench-profile`, `make fuzz`, `make load` and
the bench/*.py benchmarks: Redis, a prefork worker, beat and gunicorn, started as `make run` starts
them, on a fresh SQLite database, a throw-away PostgreSQL cluster (scripts/postgres.sh) or a given
empty database. One stack per process: construct it first (it sets this process's environment,
then `django.setup()`).

    stack = Stack(name="load", postgres=True, env={...})
    api = stack.start(beat=True)      # everything `make run` starts; returns an API client
    # or step by step, each process restartable with other settings:
    stack.prepare(plugin_dirs)        # Redis, migrate, plugin sync, an API token
    stack.start_worker(concurrency=2); port = stack.start_web(workers=1)
    ...
    stack.stop()                      # every process, the cluster, and the var dir unless kept
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import (  # noqa: E402
    PYTHON,
    Api,
    Proc,
    free_port,
    process_env,
    start_beat,
    start_gunicorn,
    start_redis,
    start_worker,
)

BENCH_PLUGINS = ROOT / "bench" / "plugins"
RUNTIME_PLUGINS = ROOT / "tests" / "plugins" / "runtime"
SAMPLE_PLUGINS = ROOT / "plugin_packages"
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
WSGI_APP = "project.wsgi:application"


class Stack:
    """One deployment's processes and settings; every process shares this process's environment
    (database, Redis, var dir) plus what its start method adds."""

    def __init__(
        self,
        *,
        name: str = "bench",
        postgres: bool = False,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
        bench_views: bool = False,
        keep: bool | None = None,
    ) -> None:
        """Make the var dir (/tmp/warden-`name`-*), pick a Redis port and the database: a fresh
        SQLite file in the var dir, `database_url` (an empty database), or with `postgres` a
        throw-away cluster. `bench_views` mounts project/bench_views.py (WARDEN_BENCH_VIEWS=1).
        `stop()` deletes the var dir unless `keep` (default: WARDEN_BENCH_KEEP=1).
        Raises SystemExit when `postgres` is asked for and the machine has none."""
        assert not (postgres and database_url), "postgres (a cluster of our own) or database_url"
        self.var = Path(tempfile.mkdtemp(prefix=f"warden-{name}-"))
        self.keep = os.environ.get("WARDEN_BENCH_KEEP") == "1" if keep is None else keep
        self.postgres = postgres
        self.redis_port = free_port()
        settings_env = {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            # With DEBUG off, Warden's processes refuse to start without a secret key.
            "DJANGO_SECRET_KEY": os.environ.get("DJANGO_SECRET_KEY")
            or "warden-bench-" + "s3cr3t-" * 8,
            "WARDEN_VAR_DIR": str(self.var),
            "WARDEN_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "WARDEN_SYNC_ON_WORKER_START": "0",
            **({"WARDEN_BENCH_VIEWS": "1"} if bench_views else {}),  # never in a deployment
            **(env or {}),
        }
        if postgres:
            url = postgres_start(self.var)
            if url is None:
                raise SystemExit("no PostgreSQL server on this machine (scripts/postgres.sh)")
            (database_url,) = create_databases(url, [url.rsplit("/", 1)[1]])
        if database_url:
            settings_env["DATABASE_URL"] = database_url
        else:
            os.environ.pop("DATABASE_URL", None)
        os.environ.update(settings_env)
        self.procs: list[Proc] = []  # in start order; stopped newest first
        self.redis: Proc | None = None
        self.worker: Proc | None = None
        self.beat: Proc | None = None
        self.web: Proc | None = None
        self.web_port = 0
        self.token = ""

        import django

        django.setup()

    @property
    def env(self) -> dict[str, str]:
        """The environment of the processes this stack starts (this process's settings)."""
        return process_env({})

    @property
    def api(self) -> Api:
        """A JSON client of the running gunicorn, with the stack's token."""
        assert self.web is not None, "start_web() first"
        return Api(f"http://127.0.0.1:{self.web_port}", self.token)

    def prepare(self, plugin_dirs: Sequence[Path] = (SAMPLE_PLUGINS, RUNTIME_PLUGINS)) -> None:
        """Start Redis, migrate the database, sync `plugin_dirs` (default: the sample plugins and
        the tests' fault plugins) and create an API token (`self.token`)."""
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from plugins_app.services import plugin_sync

        self.redis = self._started(start_redis(self.redis_port, self.var / "redis"))
        call_command("migrate", verbosity=0)
        plugin_sync(plugin_dirs=list(plugin_dirs))
        user, _ = User.objects.get_or_create(username="bench")
        self.token = Token.objects.get_or_create(user=user)[0].key

    def start(
        self,
        *,
        plugin_dirs: Sequence[Path] = (SAMPLE_PLUGINS, RUNTIME_PLUGINS),
        beat: bool = True,
        concurrency: int = 2,
        threads: int | None = None,
    ) -> Api:
        """`prepare()`, then what `make run` starts: the worker, beat (unless not `beat`) and
        gunicorn (`threads` per process instead of gunicorn.conf.py's when given); return the
        API client."""
        self.prepare(plugin_dirs)
        self.start_worker(concurrency=concurrency)
        if beat:
            self.start_beat()
        self.start_web(threads=threads)
        return self.api

    def start_worker(
        self,
        *,
        concurrency: int = 2,
        name: str = "bench",
        loglevel: str = "INFO",
        launcher: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start (or replace) the prefork worker consuming cpu,gpu (`make run` logs at INFO);
        `launcher` replaces `python -m celery`."""
        self.stop_worker()
        self.worker = self._started(
            start_worker(
                {**self.env, **(env or {})},
                self.var / f"worker-{name}.log",
                name=name,
                concurrency=concurrency,
                loglevel=loglevel,
                launcher=launcher,
            )
        )
        return self.worker

    def stop_worker(self) -> None:
        """Stop the worker, if one runs."""
        self._stop(self.worker)
        self.worker = None

    def start_beat(self) -> Proc:
        """Start (or replace) Celery beat (the requeue of lost jobs, the retention sweep)."""
        self._stop(self.beat)
        self.beat = self._started(start_beat(self.env, self.var / "beat.log"))
        return self.beat

    def start_web(
        self,
        *,
        worker_class: str | None = None,
        workers: int | None = None,
        threads: int | None = None,
        access_log: bool | None = None,
        app: str = WSGI_APP,
        env: dict[str, str] | None = None,
    ) -> int:
        """Start (or replace) gunicorn as `make run` does: the worker model of gunicorn.conf.py
        unless `worker_class`, `workers` or `threads` override it; the access log written by
        Warden's middleware, on unless `access_log` is False (WARDEN_ACCESS_LOG). Return its
        port."""
        self.stop_web()
        port = free_port()
        web_env = {**self.env, **(env or {})}
        if access_log is not None:
            web_env["WARDEN_ACCESS_LOG"] = "true" if access_log else "false"
        self.web = self._started(
            start_gunicorn(
                web_env,
                self.var / f"gunicorn-{port}.log",
                port,
                threads,
                app=app,
                worker_class=worker_class,
                workers=workers,
            )
        )
        self.web_port = port
        return port

    def stop_web(self) -> None:
        """Stop gunicorn, if it runs."""
        self._stop(self.web)
        self.web = None

    def logs(self) -> str:
        """The logs of the processes running now, concatenated (for grepping)."""
        return "\n".join(proc.log_text() for proc in self.procs)

    def stop(self) -> None:
        """Stop every process, newest first, and the PostgreSQL cluster; delete the var dir (a
        1 M-row SQLite file is half a GB) unless the stack keeps it."""
        from django.db import connections

        for proc in reversed(self.procs):
            proc.stop(signal.SIGTERM, timeout=20)
        self.procs.clear()
        self.redis = self.worker = self.beat = self.web = None
        connections.close_all()
        if self.postgres:
            postgres_stop(self.var)
        if not self.keep:
            shutil.rmtree(self.var, ignore_errors=True)

    def _started(self, proc: Proc) -> Proc:
        self.procs.append(proc)
        return proc

    def _stop(self, proc: Proc | None) -> None:
        if proc is not None:
            proc.stop(signal.SIGTERM, timeout=20)
            self.procs.remove(proc)


def postgres_start(var: Path) -> str | None:
    """Start scripts/postgres.sh's throw-away cluster (its note kept under `var`); return its
    URL, or None (saying why) where the machine has no PostgreSQL server. Raises SystemExit when
    the script fails otherwise."""
    done = subprocess.run(
        [str(POSTGRES_SH), "start"],
        env={**os.environ, "WARDEN_VAR_DIR": str(var)},
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode == 3:
        print(f"no PostgreSQL here ({done.stderr.strip()})")
        return None
    if done.returncode != 0:
        raise SystemExit(f"could not start PostgreSQL: {done.stderr}")
    return done.stdout.strip()


def postgres_stop(var: Path) -> None:
    """Stop the cluster `postgres_start(var)` started and delete it."""
    subprocess.run(
        [str(POSTGRES_SH), "stop"], env={**os.environ, "WARDEN_VAR_DIR": str(var)}, check=False
    )


def create_databases(url: str, names: list[str]) -> list[str]:
    """Create empty databases `names` on the server of `url`; return their URLs."""
    import psycopg

    server = url.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True) as conn:
        for name in names:
            conn.execute(f'CREATE DATABASE "{name}"')
    return [f"{server}/{name}" for name in names]


@contextmanager
def postgres_databases(var: Path, names: list[str]) -> Iterator[list[str] | None]:
    """A throw-away cluster holding the empty databases `names` for the block (for a benchmark
    run in a process of its own); yields their URLs, or None where the machine has none."""
    url = postgres_start(var)
    if url is None:
        yield None
        return
    try:
        yield create_databases(url, names)
    finally:
        postgres_stop(var)


def report(rows: list[tuple[str, Any]]) -> str:
    """Aligned `name: value` lines."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


__all__ = [
    "BENCH_PLUGINS",
    "PYTHON",
    "ROOT",
    "RUNTIME_PLUGINS",
    "SAMPLE_PLUGINS",
    "Stack",
    "create_databases",
    "postgres_databases",
    "postgres_start",
    "postgres_stop",
    "report",
]
