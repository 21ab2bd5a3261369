"""/health/live and /health/ready: the checks, their reasons, their time bounds, and readiness
following Redis down and back up with a real worker."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import RUNTIME_PLUGINS
from tests.harness import free_port, start_redis, wait_until
from tests.plugins_app.faults import copy_plugins

GPU_PLUGINS = RUNTIME_PLUGINS.parent / "gpu"


def ready(client) -> tuple[int, dict]:
    response = client.get("/health/ready")
    return response.status_code, response.json()


def test_it_answers_live_without_touching_anything(api_client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    response = api_client.get("/health/live", HTTP_AUTHORIZATION="Token not-a-token")

    assert (response.status_code, response.json()) == (200, {"status": "ok"})


@pytest.mark.slow
def test_it_is_ready_then_503_while_redis_is_down_then_ready_again(live, api_client, redis_proc):
    assert ready(api_client) == (
        200,
        {
            "status": "ok",
            "checks": {
                "database": {"status": "ok", "reason": None},
                "broker": {"status": "ok", "reason": None},
                "worker:cpu": {"status": "ok", "reason": None},
            },
        },
    )
    port = int(settings.CELERY_BROKER_URL.rsplit(":", 1)[1].split("/")[0])
    redis_proc.stop()
    try:
        started = time.monotonic()
        status, body = ready(api_client)
        elapsed = time.monotonic() - started
    finally:
        restarted = start_redis(port, Path(settings.VAR_DIR) / "redis")
        redis_proc.popen, redis_proc.log = restarted.popen, restarted.log

    assert elapsed < settings.WARDEN_HEALTH_TIMEOUT_S + 1
    assert status == 503
    assert body["status"] == "unavailable"
    assert body["checks"]["database"] == {"status": "ok", "reason": None}
    assert body["checks"]["broker"]["status"] == "fail"
    assert body["checks"]["broker"]["reason"].startswith("Redis (broker) unavailable: ")
    assert body["checks"]["worker:cpu"] == {
        "status": "fail",
        "reason": "Not checked: Redis (broker) unavailable",
    }
    # Redis came back empty: ready again once the worker's next heartbeat lands.
    wait_until(lambda: ready(api_client)[0] == 200, 30, "readiness to come back", interval=0.25)
    assert ready(api_client)[1]["status"] == "ok"


def test_it_fails_the_broker_check_within_its_timeout_when_redis_hangs(
    transactional_db, api_client, settings
):
    silent = socket.socket()  # accepts connections (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{silent.getsockname()[1]}/0"
    settings.WARDEN_HEALTH_TIMEOUT_S = 1.0
    try:
        started = time.monotonic()
        status, body = ready(api_client)
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    assert status == 503
    assert 1.0 <= elapsed < 2.0
    assert body["checks"]["broker"]["status"] == "fail"
    assert body["checks"]["broker"]["reason"] in (
        "Redis (broker) did not answer within 1 s",
        "Redis (broker) unavailable: TimeoutError: Timeout reading from socket",
    )
    assert body["checks"]["database"] == {"status": "ok", "reason": None}


def test_it_needs_a_live_worker_for_each_queue_with_work(
    transactional_db, api_client, redis_proc, sync_plugins, samples, monkeypatch
):
    from execution_app import workers

    monkeypatch.setattr(workers, "KEY_PREFIX", "warden-ready-test:workers")  # no worker here
    monkeypatch.setattr("plugins_app.dependencies.check_gpu", lambda: None)
    sync_plugins(samples("echo"), GPU_PLUGINS)

    status, body = ready(api_client)

    assert status == 503
    assert body["checks"]["worker:cpu"] == {
        "status": "fail",
        "reason": "No live worker consumes queue 'cpu' (none beat within 15 s); start one: "
        "celery -A project worker -Q cpu",
    }
    assert body["checks"]["worker:gpu"]["status"] == "fail"
    # A heartbeat on the cpu queue satisfies that check only.
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).zadd(
        "warden-ready-test:workers:cpu", {"w@somehost": time.time()}
    )
    status, body = ready(api_client)
    assert status == 503
    assert body["checks"]["worker:cpu"] == {"status": "ok", "reason": None}
    assert body["checks"]["worker:gpu"]["status"] == "fail"


def test_it_checks_every_required_plugin(
    transactional_db, api_client, redis_proc, sync_plugins, samples, settings, monkeypatch, tmp_path
):
    from execution_app import workers

    monkeypatch.setattr(workers, "KEY_PREFIX", "warden-ready-test2:workers")
    import redis

    redis.Redis.from_url(settings.CELERY_BROKER_URL).zadd(
        "warden-ready-test2:workers:cpu", {"w@somehost": time.time()}
    )
    sync_plugins(samples("echo"), copy_plugins(tmp_path / "faults", "missing_package"))
    settings.WARDEN_REQUIRED_PLUGINS = ["echo", "missing_package", "nope"]

    status, body = ready(api_client)

    assert status == 503
    assert body["checks"]["plugin:echo"] == {"status": "ok", "reason": None}
    assert body["checks"]["plugin:missing_package"] == {
        "status": "fail",
        "reason": "Plugin 'missing_package' does not accept jobs: UNAVAILABLE: Missing Python "
        "package 'nonexistent_pkg_xyz' (install with: pip install nonexistent_pkg_xyz) "
        "(fix: pip install nonexistent_pkg_xyz)",
    }
    assert body["checks"]["plugin:nope"] == {
        "status": "fail",
        "reason": "No plugin named 'nope' (is it under WARDEN_PLUGIN_DIRS? run plugins sync)",
    }
    settings.WARDEN_REQUIRED_PLUGINS = ["echo"]
    assert ready(api_client)[0] == 200


def test_it_needs_credentials_for_readiness_when_health_is_not_public(
    transactional_db, api_client, redis_proc, settings
):
    settings.WARDEN_PUBLIC_HEALTH = False

    response = api_client.get("/health/ready")
    live = api_client.get("/health/live")

    assert response.status_code == 401
    assert response.json()["error"]["type"] == "AuthenticationFailed"
    assert live.status_code == 200
