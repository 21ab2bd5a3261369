"""Reads of the plugin registry: health records, straight from the database."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.db.models import Exists, OuterRef, QuerySet
from django.utils import timezone

from .models import FaultOrigin, PluginRecord, PluginState

RUNNING = "RUNNING"


def _with_running(queryset: QuerySet[PluginRecord]) -> QuerySet[PluginRecord]:
    job_model = apps.get_model("execution_app", "Job")
    running = job_model.objects.filter(plugin_id=OuterRef("pk"), status="RUNNING")
    return queryset.annotate(has_running_job=Exists(running))


def plugin_list() -> QuerySet[PluginRecord]:
    """Return every plugin record sorted by name, annotated with `has_running_job`."""
    return _with_running(PluginRecord.objects.order_by("name", "shadowed", "location"))


def plugin_get(*, name: str) -> PluginRecord | None:
    """Return the active (non-shadowed) record called `name`, or None."""
    return _with_running(PluginRecord.objects.filter(name=name, shadowed=False)).first()


def plugin_reported_state(plugin: PluginRecord) -> str:
    """Return the state to report: RUNNING while one of its jobs runs, else the stored state."""
    if getattr(plugin, "has_running_job", False) and plugin.state in (
        PluginState.INITIALIZED,
        PluginState.FAILED,
    ):
        return RUNNING
    return plugin.state


def plugin_uptime_seconds(plugin: PluginRecord) -> float | None:
    """Return seconds since the plugin was last loaded successfully, or None if not loaded."""
    if plugin.loaded_at is None or plugin.fault_origin == FaultOrigin.LOAD:
        return None
    return round((timezone.now() - plugin.loaded_at).total_seconds(), 3)


def plugin_health(plugin: PluginRecord) -> dict[str, Any]:
    """Return the health record of CONTRACT.md §4 (every field present, null where unknown)."""
    return {
        "name": plugin.name,
        "version": plugin.version or None,
        "description": plugin.description or None,
        "state": plugin_reported_state(plugin),
        "reason": plugin.reason,
        "hint": plugin.hint,
        "accepting_jobs": plugin.accepting_jobs,
        "requires_gpu": plugin.requires_gpu,
        "tools": [
            {
                "name": tool.get("name"),
                "description": tool.get("description"),
                "input_types": tool.get("input_types", []),
                "input_schema": tool.get("input_schema"),
                "output_schema": tool.get("output_schema"),
            }
            for tool in plugin.tools or []
        ],
        "success_count": plugin.success_count,
        "error_count": plugin.error_count,
        "consecutive_failures": plugin.consecutive_failures,
        "uptime_seconds": plugin_uptime_seconds(plugin),
        "loaded_at": plugin.loaded_at,
        "last_used": plugin.last_used,
        "last_execution_time_ms": plugin.last_execution_time_ms,
        "avg_execution_time_ms": plugin.avg_execution_time_ms,
    }
