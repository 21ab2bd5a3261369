"""Shared fixtures: API clients, plugin sync helpers, and the real Redis + Celery worker."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.harness import ROOT, Proc, process_env, start_redis, start_worker, wait_until

TESTS = Path(__file__).resolve().parent
RUNTIME_PLUGINS = TESTS / "plugins" / "runtime"
PROBE_FAULTS = TESTS / "plugins" / "probe_faults"
SAMPLES = ROOT / "plugin_packages"
# ForgeSyte-format packages laid out as installed (package + .dist-info), one site folder each.
FORGESYTE_SITES = TESTS / "plugins" / "forgesyte"


@pytest.fixture
def api_client() -> APIClient:
    """An unauthenticated DRF test client."""
    return APIClient()


@pytest.fixture
def auth_client(db: None) -> APIClient:
    """A DRF test client authenticated with a real token."""
    user = User.objects.create_user("alice", password="pw-alice")
    token = Token.objects.create(user=user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def sync_plugins(db: None) -> Callable[..., list[Any]]:
    """Run the real plugin sync over the given plugin directories."""
    from plugins_app.services import plugin_sync

    def run(*dirs: Path, **kwargs: Any) -> list[Any]:
        return plugin_sync(plugin_dirs=list(dirs), **kwargs)

    return run


@pytest.fixture
def samples(tmp_path: Path) -> Callable[..., Path]:
    """A plugin directory holding only the named sample plugins (symlinked), to keep syncs fast."""

    def pick(*names: str) -> Path:
        folder = tmp_path / "samples"
        folder.mkdir(exist_ok=True)
        for name in names:
            if not (folder / name).exists():
                (folder / name).symlink_to(SAMPLES / name, target_is_directory=True)
        return folder

    return pick


@pytest.fixture(scope="session")
def redis_proc() -> Iterator[Proc]:
    """A real redis-server on the port the test settings point at."""
    port = int(settings.CELERY_BROKER_URL.rsplit(":", 1)[1].split("/")[0])
    proc = start_redis(port, Path(settings.VAR_DIR) / "redis")
    yield proc
    proc.stop()


def database_url(db: dict[str, Any]) -> str:
    """The DATABASE_URL of the (test) database this process uses, for the processes it starts."""
    if db["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{db['NAME']}"
    auth = f"{db['USER']}:{db['PASSWORD']}@" if db.get("USER") else ""
    return f"postgres://{auth}{db['HOST']}:{db['PORT']}/{db['NAME']}"


def worker_env(**extra: str) -> dict[str, str]:
    """Environment for processes that must share this test run's database, Redis and var dir."""
    from django.db import connection

    return process_env(
        {
            "DATABASE_URL": database_url(connection.settings_dict),
            "WARDEN_REDIS_URL": settings.CELERY_BROKER_URL,
            "WARDEN_VAR_DIR": str(settings.VAR_DIR),
            "WARDEN_HARD_GRACE_S": str(settings.WARDEN_HARD_GRACE_S),
            "WARDEN_SYNC_ON_WORKER_START": "0",
            **extra,
        }
    )


@pytest.fixture(scope="session")
def celery_worker(
    django_db_setup: None, django_db_blocker: Any, redis_proc: Proc
) -> Iterator[Proc]:
    """A real prefork Celery worker (concurrency 2, queue cpu) shared by the tests that need one.

    It can import the ForgeSyte fixture packages (its PYTHONPATH holds their sites); only tests
    that put them on their own sys.path discover them, so other tests never see them.
    """
    sites = sorted(str(p) for p in FORGESYTE_SITES.iterdir() if p.is_dir())
    with django_db_blocker.unblock():
        env = worker_env(PYTHONPATH=os.pathsep.join([str(ROOT), *sites]))
    proc = start_worker(env, Path(settings.VAR_DIR) / "worker.log", queues="cpu")
    yield proc
    proc.stop()


@pytest.fixture
def forgesyte_sites(monkeypatch: pytest.MonkeyPatch) -> Callable[..., list[Path]]:
    """Install ForgeSyte fixture packages for this test: their sites on sys.path (discovery)
    and on PYTHONPATH (probe children)."""

    def install(*names: str) -> list[Path]:
        sites = [FORGESYTE_SITES / name for name in names]
        for site in sites:
            assert any(site.glob("*.dist-info")), f"no installed package in {site}"
            monkeypatch.syspath_prepend(str(site))
        monkeypatch.setenv("PYTHONPATH", os.pathsep.join(str(site) for site in sites))
        return sites

    return install


@pytest.fixture
def live(transactional_db: None, celery_worker: Proc, sync_plugins: Any, samples: Any) -> Proc:
    """Runs jobs on the real worker: committed data, `echo` and the fault plugins synced."""
    assert celery_worker.alive(), celery_worker.log_text()
    sync_plugins(samples("echo"), RUNTIME_PLUGINS)
    return celery_worker


@pytest.fixture
def job_done() -> Callable[[str, float], Any]:
    """Wait (polling the database) until a job is terminal; return it."""
    from execution_app.models import Job

    def wait(job_id: str, timeout: float = 30) -> Any:
        def terminal() -> Any:
            job = Job.objects.get(pk=job_id)
            return job if job.is_terminal else None

        return wait_until(terminal, timeout, f"job {job_id} to finish")

    return wait
