"""Celery tasks of the plugin registry: thin interfaces over its services."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from celery import shared_task

from .services import plugin_sync


@shared_task(name="plugins_app.tasks.reprobe_plugins")
def reprobe_plugins(*, locations: list[str]) -> list[dict[str, Any]]:
    """Re-probe the plugin records at `locations` (the admin action) on a worker host; return
    each one's outcome."""
    return [asdict(outcome) for outcome in plugin_sync(locations=locations)]
