"""Celery tasks of the plugin registry: thin interfaces over its services."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

from .services import plugin_sync


@shared_task(name="plugins_app.tasks.reprobe_plugins")
def reprobe_plugins(*, names: list[str], queues: list[str]) -> list[dict[str, Any]]:
    """Re-probe the plugins `names` (the admin action) on the worker host that took this task,
    which consumes the job `queues`; return each plugin location's outcome there."""
    from execution_app.workers import worker_host_name

    outcomes = plugin_sync(names=names, host=worker_host_name(), queues=queues)
    return [asdict(outcome) for outcome in outcomes]
