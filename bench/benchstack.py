"""The stack a benchmark measures: its own Redis, database, prefork worker and gunicorn (the
processes `make run` starts), configured once per benchmark process. Shared by the bench/*.py
benchmarks (bench/stack.py is the stack of `make fuzz` and `make load`).

    stack = Stack()            # first: sets the environment, then django.setup()
    stack.start(plugin_dirs)   # Redis, migrate, plugin sync, an API token
    stack.start_worker(concurrency=2); port = stack.start_web()
    ...
    stack.close()              # stops every process it started
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.harness import (  # noqa: E402
    PYTHON,
    Proc,
    free_port,
    process_env,
    start_gunicorn,
    start_redis,
    start_worker,
)

BENCH_PLUGINS = ROOT / "bench" / "plugins"


class Stack:
    """One benchmark's processes and settings. Construct it before importing Django models."""

    def __init__(
        self,
        *,
        var: Path | None = None,
        database_url: str | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.var = var or Path(tempfile.mkdtemp(prefix="warden-bench-"))
        self.var.mkdir(parents=True, exist_ok=True)
        self.redis_port = free_port()
        settings_env = {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "WARDEN_VAR_DIR": str(self.var),
            "WARDEN_REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "WARDEN_SYNC_ON_WORKER_START": "0",
            # With DEBUG off, Warden's processes refuse to start without a secret key.
            "DJANGO_SECRET_KEY": os.environ.get(
                "DJANGO_SECRET_KEY", "warden-bench-" + "s3cr3t-" * 8
            ),
            # The baselines of bench/run.py (project/bench_views.py); never set in a deployment.
            "WARDEN_BENCH_VIEWS": "1",
            **(env or {}),
        }
        if database_url:
            settings_env["DATABASE_URL"] = database_url
        else:
            os.environ.pop("DATABASE_URL", None)
        os.environ.update(settings_env)
        self.procs: list[Proc] = []
        self.worker: Proc | None = None
        self.web: Proc | None = None
        self.token = ""

        import django

        django.setup()

    @property
    def env(self) -> dict[str, str]:
        """The environment of the processes this stack starts (this process's settings)."""
        return process_env({})

    def start(self, plugin_dirs: list[Path]) -> None:
        """Start Redis, migrate the database, sync `plugin_dirs` and create an API token."""
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from plugins_app.services import plugin_sync

        self.procs.append(start_redis(self.redis_port, self.var / "redis"))
        call_command("migrate", verbosity=0)
        plugin_sync(plugin_dirs=plugin_dirs)
        user, _ = User.objects.get_or_create(username="bench")
        self.token = Token.objects.get_or_create(user=user)[0].key

    def start_worker(
        self,
        *,
        concurrency: int = 2,
        name: str = "bench",
        loglevel: str = "INFO",
        launcher: list[str] | None = None,
        env: dict[str, str] | None = None,
    ) -> Proc:
        """Start (or replace) the prefork worker consuming cpu,gpu; `make run` logs at INFO."""
        self.stop_worker()
        self.worker = start_worker(
            {**self.env, **(env or {})},
            self.var / f"worker-{name}.log",
            name=name,
            concurrency=concurrency,
            loglevel=loglevel,
            launcher=launcher,
        )
        self.procs.append(self.worker)
        return self.worker

    def stop_worker(self) -> None:
        """Stop the worker, if one runs."""
        if self.worker is not None:
            self.worker.stop()
            self.procs.remove(self.worker)
            self.worker = None

    def start_web(
        self,
        *,
        worker_class: str = "gthread",
        workers: int = 2,
        threads: int = 16,
        access_log: bool = True,
        app: str = "project.wsgi:application",
        env: dict[str, str] | None = None,
    ) -> int:
        """Start (or replace) gunicorn as `make run` does (gthread 2 x 16, access log on);
        return its port."""
        self.stop_web()
        port = free_port()
        extra = ("--access-logfile", str(self.var / f"access-{port}.log")) if access_log else ()
        self.web = start_gunicorn(
            {**self.env, **(env or {})},
            self.var / f"gunicorn-{port}.log",
            port,
            app=app,
            worker_class=worker_class,
            workers=workers,
            threads=threads,
            extra_args=extra,
        )
        self.web_port = port
        self.procs.append(self.web)
        return port

    def stop_web(self) -> None:
        """Stop gunicorn, if it runs."""
        if self.web is not None:
            self.web.stop()
            self.procs.remove(self.web)
            self.web = None

    def close(self) -> None:
        """Stop every process this stack started, newest first, and delete its var directory
        (a 1 M-row SQLite file is half a GB) unless WARDEN_BENCH_KEEP=1."""
        for proc in reversed(self.procs):
            proc.stop()
        self.procs.clear()
        self.worker = self.web = None
        if os.environ.get("WARDEN_BENCH_KEEP") != "1":
            shutil.rmtree(self.var, ignore_errors=True)


__all__ = ["BENCH_PLUGINS", "PYTHON", "ROOT", "Stack"]
