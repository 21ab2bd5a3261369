"""A whole Warden stack for `make fuzz` and `make load`: Redis, prefork worker, beat, gunicorn,
on a fresh SQLite database or a throw-away PostgreSQL cluster (scripts/postgres.sh).

The caller imports this module first (it configures Django for this process), then calls
`Stack.start()`; everything is stopped by `Stack.stop()`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.harness import (  # noqa: E402
    Api,
    Proc,
    free_port,
    process_env,
    start_beat,
    start_gunicorn,
    start_redis,
    start_worker,
)

RUNTIME_PLUGINS = ROOT / "tests" / "plugins" / "runtime"


@dataclass
class Stack:
    """One deployment: every process shares `env` (database, Redis, var dir)."""

    var: Path
    env: dict[str, str]
    concurrency: int = 2
    procs: dict[str, Proc] = field(default_factory=dict)
    api: Api | None = None
    postgres: bool = False

    @classmethod
    def configure(cls, *, name: str, postgres: bool = False, **extra: str) -> Stack:
        """Choose the var dir (/tmp/warden-`name`-*), Redis port and database; set this
        process's environment and Django up. With `postgres`, a throw-away cluster is started
        (scripts/postgres.sh)."""
        var = Path(tempfile.mkdtemp(prefix=f"warden-{name}-"))
        env = {
            "DJANGO_SETTINGS_MODULE": "project.settings",
            "DJANGO_SECRET_KEY": "warden-bench-" + "s3cr3t-" * 8,
            "WARDEN_VAR_DIR": str(var),
            "WARDEN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
            "WARDEN_SYNC_ON_WORKER_START": "0",
            "WARDEN_LOG_LEVEL": "WARNING",
            **extra,
        }
        if postgres:
            url = subprocess.run(
                [str(ROOT / "scripts" / "postgres.sh"), "start"],
                env={**os.environ, "WARDEN_VAR_DIR": str(var)},
                capture_output=True,
                text=True,
                check=True,
            ).stdout.strip()
            env["DATABASE_URL"] = url
            _create_database(url)
        else:
            os.environ.pop("DATABASE_URL", None)
        os.environ.update(env)
        import django

        django.setup()
        return cls(var=var, env=process_env(env), postgres=postgres)

    def start(self, *, beat: bool = True, concurrency: int = 2, threads: int = 16) -> Api:
        """Migrate, sync the sample and fault plugins, create a token, start every process."""
        from django.contrib.auth.models import User
        from django.core.management import call_command
        from rest_framework.authtoken.models import Token

        from plugins_app.services import plugin_sync

        self.concurrency = concurrency
        port = int(self.env["WARDEN_REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        self.procs["redis"] = start_redis(port, self.var / "redis")
        call_command("migrate", verbosity=0)
        plugin_sync(plugin_dirs=[ROOT / "plugin_packages", RUNTIME_PLUGINS])
        token = Token.objects.create(user=User.objects.create_user("bench")).key
        self.procs["worker"] = start_worker(
            self.env, self.var / "worker.log", name="bench", concurrency=concurrency
        )
        if beat:
            self.procs["beat"] = start_beat(self.env, self.var / "beat.log")
        port = free_port()
        self.procs["web"] = start_gunicorn(self.env, self.var / "web.log", port, threads=threads)
        self.api = Api(f"http://127.0.0.1:{port}", token)
        return self.api

    def logs(self) -> str:
        """Every process's log, concatenated (for grepping)."""
        return "\n".join(p.log_text() for p in self.procs.values())

    def stop(self) -> None:
        """Stop every process (and the PostgreSQL cluster)."""
        from django.db import connections

        for proc in reversed(list(self.procs.values())):
            proc.stop(signal.SIGTERM, timeout=20)
        connections.close_all()
        if self.postgres:
            subprocess.run(
                [str(ROOT / "scripts" / "postgres.sh"), "stop"],
                env={**os.environ, "WARDEN_VAR_DIR": str(self.var)},
                check=False,
            )


def _create_database(url: str) -> None:
    import psycopg

    base, name = url.rsplit("/", 1)
    with psycopg.connect(base + "/postgres", autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')


def report(rows: list[tuple[str, Any]]) -> str:
    """Aligned `name: value` lines."""
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)
