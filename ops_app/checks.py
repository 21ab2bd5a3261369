"""Readiness checks (CONTRACT.md §4): database, broker, a live worker per queue with work, and
every plugin of WARDEN_REQUIRED_PLUGINS accepting jobs. Each check is bounded in time."""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import DatabaseError, connection
from redis.exceptions import RedisError

from execution_app import workers
from plugins_app.models import PluginRecord
from plugins_app.selectors import plugin_availability

from . import selectors

OK = "ok"
FAIL = "fail"
# The database and Redis checks run side by side in these threads, so a hung connection costs
# at most WARDEN_HEALTH_TIMEOUT_S; a thread still stuck on a dead host makes later checks fail
# fast (their futures wait in the queue) rather than pile up threads.
_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="warden-ready")


@dataclass(frozen=True)
class Check:
    """One check's outcome: ok, or fail with a reason an operator can act on."""

    status: str
    reason: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """Return the check as it appears in /health/ready."""
        return {"status": self.status, "reason": self.reason}


@dataclass(frozen=True)
class _Registry:
    """What the readiness checks read from the database."""

    queues_with_work: list[str]
    required: dict[str, Check]


def _required_check(name: str) -> Check:
    plugin = PluginRecord.objects.filter(name=name).prefetch_related("hosts").first()
    if plugin is None:
        return Check(
            FAIL, f"No plugin named '{name}' (is it under WARDEN_PLUGIN_DIRS? run plugins sync)"
        )
    availability = plugin_availability(plugin, live=None)
    if availability.accepting_jobs:
        return Check(OK)
    condition = f"{availability.state}{' (quarantined)' if plugin.quarantined else ''}"
    detail = f": {availability.reason}" if availability.reason else ""
    hint = f" (fix: {availability.hint})" if availability.hint else ""
    return Check(FAIL, f"Plugin '{name}' does not accept jobs: {condition}{detail}{hint}")


def _read_registry(required: list[str]) -> _Registry:
    """Runs in a pool thread with its own connection, closed at the end (no idle connection
    is left behind by a probe)."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return _Registry(selectors.queues_with_work(), {n: _required_check(n) for n in required})
    finally:
        connection.close()


def _wait(
    future: Future[Any], what: str, deadline: float, timeout_s: float
) -> tuple[Any, str | None]:
    """Return (result, None) or (None, why it failed) by `deadline` (time.monotonic())."""
    try:
        return future.result(timeout=max(deadline - time.monotonic(), 0.0)), None
    except FutureTimeout:
        return None, f"{what} did not answer within {timeout_s:g} s"
    except DatabaseError as exc:
        return None, f"{what} unavailable: {type(exc).__name__}: {exc}"
    except RedisError as exc:
        return None, f"{what} unavailable: {type(exc).__name__}: {exc}"


def readiness() -> tuple[bool, dict[str, dict[str, Any]]]:
    """Run every check; return (all ok, {check name: {status, reason}}).

    Check names: `database`, `broker`, `worker:<queue>` for each queue whose plugins accept
    jobs, `plugin:<name>` for each of WARDEN_REQUIRED_PLUGINS. Never raises for an unreachable
    database or Redis: those are failing checks.
    """
    timeout_s = settings.WARDEN_HEALTH_TIMEOUT_S
    required = list(settings.WARDEN_REQUIRED_PLUGINS)
    deadline = time.monotonic() + timeout_s  # both checks run at once: one shared bound
    registry_future = _pool.submit(_read_registry, required)
    broker_future = _pool.submit(selectors.broker_snapshot)
    registry, database_error = _wait(registry_future, "Database", deadline, timeout_s)
    snapshot, broker_error = _wait(broker_future, "Redis (broker)", deadline, timeout_s)

    checks: dict[str, Check] = {
        "database": Check(FAIL, database_error) if database_error else Check(OK),
        "broker": Check(FAIL, broker_error) if broker_error else Check(OK),
    }
    if registry is None:
        checks["worker:*"] = Check(FAIL, "Not checked: the database says which queues have work")
    else:
        for queue in registry.queues_with_work:
            if snapshot is None:
                checks[f"worker:{queue}"] = Check(FAIL, "Not checked: Redis (broker) unavailable")
            elif not snapshot.workers.get(queue):
                checks[f"worker:{queue}"] = Check(
                    FAIL,
                    f"No live worker consumes queue '{queue}' (none beat within "
                    f"{workers.TTL_S} s); start one: celery -A project worker -Q {queue}",
                )
            else:
                checks[f"worker:{queue}"] = Check(OK)
    for name in required:
        checks[f"plugin:{name}"] = (
            registry.required[name]
            if registry is not None
            else Check(FAIL, "Not checked: database unavailable")
        )
    ok = all(check.status == OK for check in checks.values())
    return ok, {name: check.as_dict() for name, check in checks.items()}
