"""Reads of the plugin registry: a plugin's availability across hosts and its health record."""

from __future__ import annotations

import functools
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.apps import apps
from django.db import connection
from django.db.models import Exists, OuterRef, Prefetch, QuerySet
from django.utils import timezone

from .models import FaultOrigin, PluginHost, PluginRecord, PluginState

RUNNING = "RUNNING"
# "Best" first: the state a plugin reports is the best of its hosts'.
STATE_RANK: dict[str, int] = {
    PluginState.INITIALIZED: 0,
    PluginState.FAILED: 1,
    PluginState.UNAVAILABLE: 2,
    PluginState.LOADED: 3,
}
NOT_PROBED = (
    "Not probed on any host yet: start a worker (it syncs at start) or run `manage.py plugins sync`"
)


@dataclass
class Availability:
    """Whether and where a plugin can run now, and why not."""

    state: str
    reason: str | None
    hint: str | None
    accepting_jobs: bool
    # Some live worker consumes the plugin's queue (None: liveness unknown, Redis unreachable).
    queue_has_worker: bool | None
    hosts: list[dict[str, Any]] = field(default_factory=list)


def _with_running(queryset: QuerySet[PluginRecord]) -> QuerySet[PluginRecord]:
    job_model = apps.get_model("execution_app", "Job")
    running = job_model.objects.filter(plugin_id=OuterRef("pk"), status="RUNNING")
    return queryset.annotate(has_running_job=Exists(running))


def _with_hosts(queryset: QuerySet[PluginRecord]) -> QuerySet[PluginRecord]:
    return queryset.prefetch_related(
        Prefetch("hosts", queryset=PluginHost.objects.order_by("host", "shadowed", "location"))
    )


def plugin_list() -> QuerySet[PluginRecord]:
    """Every plugin record sorted by name, with its hosts and `has_running_job`."""
    return _with_hosts(_with_running(PluginRecord.objects.order_by("name")))


def plugin_get(*, name: str) -> PluginRecord | None:
    """The record called `name` (with its hosts and `has_running_job`), or None."""
    return _with_hosts(_with_running(PluginRecord.objects.filter(name=name))).first()


def plugin_host_entry(*, plugin_id: int, host: str) -> PluginHost | None:
    """What `host` reported about the plugin (its active, non-duplicate location), or None."""
    return (
        PluginHost.objects.filter(plugin_id=plugin_id, host=host, shadowed=False)
        .only("location", "source", "version", "state", "reason", "shadowed", "probed_at")
        .first()
    )


def host_ready(plugin: PluginRecord, entry: PluginHost) -> bool:
    """Whether `entry` says the plugin can run on that host (and runs the registry's version)."""
    return (
        entry.state == PluginState.INITIALIZED
        and not entry.shadowed
        and (not plugin.version or not entry.version or entry.version == plugin.version)
    )


def _host_reason(plugin: PluginRecord, entry: PluginHost) -> str | None:
    if entry.state == PluginState.INITIALIZED and not host_ready(plugin, entry):
        return (
            f"runs version {entry.version} here, the registry has {plugin.version} (synced "
            "elsewhere); deploy one version on every host and re-probe"
        )
    return entry.reason


def plugin_availability(
    plugin: PluginRecord,
    hosts: list[PluginHost] | None = None,
    live: dict[str, set[str]] | None = None,
) -> Availability:
    """Combine the plugin's record with what each host reported (CONTRACT.md §3, issue #8).

    `live` maps hosts with a live worker to the queues they consume (None: unknown). The plugin
    reports the best state among the hosts whose live workers consume its queue (all its hosts
    when none does or liveness is unknown); it accepts jobs when it is not quarantined and one of
    those hosts has it ready. A runtime failure (its last job failed) keeps it accepting.
    """
    entries = list(plugin.hosts.all()) if hosts is None else hosts
    queue = plugin.queue
    views = [
        {
            "host": entry.host,
            "location": entry.location,
            "queues": sorted(live.get(entry.host, set())) if live else list(entry.queues),
            "state": entry.state,
            "reason": _host_reason(plugin, entry),
            "hint": entry.hint,
            "probed_at": entry.probed_at,
            "alive": None if live is None else queue in live.get(entry.host, set()),
            "shadowed": entry.shadowed,
        }
        for entry in entries
    ]
    active = [(e, v) for e, v in zip(entries, views, strict=True) if not e.shadowed]
    alive = [(e, v) for e, v in active if v["alive"]]
    queue_has_worker = None if live is None else any(queue in q for q in live.values())
    pool = alive or active
    ready = [e for e, _ in pool if host_ready(plugin, e)]
    if not active:
        return Availability(PluginState.LOADED, NOT_PROBED, None, False, queue_has_worker, views)
    if plugin.quarantined:
        return Availability(
            PluginState.FAILED, plugin.reason, plugin.hint, False, queue_has_worker, views
        )
    if ready:
        runtime_failed = (
            plugin.state == PluginState.FAILED and plugin.fault_origin == FaultOrigin.RUNTIME
        )
        if runtime_failed:
            return Availability(
                PluginState.FAILED, plugin.reason, plugin.hint, True, queue_has_worker, views
            )
        return Availability(PluginState.INITIALIZED, None, None, True, queue_has_worker, views)
    ranked = sorted(pool, key=lambda ev: STATE_RANK.get(ev[0].state, 9))
    best, _ = ranked[0]
    state = PluginState.FAILED if best.state == PluginState.INITIALIZED else best.state
    if len(pool) == 1:
        reason = _host_reason(plugin, best)
    else:
        reason = "; ".join(f"{e.host}: {_host_reason(plugin, e) or e.state}" for e, _ in ranked)
    hints = [e.hint for e, _ in ranked if e.hint]
    hint = "; ".join(dict.fromkeys(hints)) or None
    return Availability(state, reason, hint, False, queue_has_worker, views)


def plugin_reported_state(plugin: PluginRecord, availability: Availability) -> str:
    """The state to report: RUNNING while one of its jobs runs, else its availability's state."""
    if getattr(plugin, "has_running_job", False) and availability.state in (
        PluginState.INITIALIZED,
        PluginState.FAILED,
    ):
        return RUNNING
    return availability.state


def plugin_uptime_seconds(plugin: PluginRecord, availability: Availability) -> float | None:
    """Seconds since the plugin was last loaded successfully, or None if it cannot run now."""
    if plugin.loaded_at is None or not availability.accepting_jobs:
        return None
    return round((timezone.now() - plugin.loaded_at).total_seconds(), 3)


def plugin_health(plugin: PluginRecord, live: dict[str, set[str]] | None = None) -> dict[str, Any]:
    """The health record of CONTRACT.md §4 (every field present, null where unknown), with the
    per-host table `hosts`."""
    availability = plugin_availability(plugin, live=live)
    return {
        "name": plugin.name,
        "version": plugin.version or None,
        "description": plugin.description or None,
        "state": plugin_reported_state(plugin, availability),
        "reason": availability.reason,
        "hint": availability.hint,
        "accepting_jobs": availability.accepting_jobs,
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
        "uptime_seconds": plugin_uptime_seconds(plugin, availability),
        "loaded_at": plugin.loaded_at if availability.accepting_jobs else None,
        "last_used": plugin.last_used,
        "last_execution_time_ms": plugin.last_execution_time_ms,
        "avg_execution_time_ms": plugin.avg_execution_time_ms,
        "hosts": [{key: view[key] for key in HOST_FIELDS} for view in availability.hosts],
    }


HOST_FIELDS = ("host", "queues", "state", "reason", "hint", "probed_at", "alive")


# --- the health list, rendered once per registry change ------------------------------------------

# Each part a string made of one value per row, in a fixed order: any row's change changes the
# string. (A maximum of `updated_at` would miss a write stamped earlier than the newest row: a
# host whose clock is behind, or two writes committing in the other order.) The same rows listed
# in another order would only make a different key (a needless rebuild), never the same key for
# different rows.
_VERSION_SQL = """
SELECT (SELECT COALESCE(SUM(metrics_version), 0) FROM plugins_app_pluginrecord),
       {plugins},
       {hosts},
       {running}
"""


def _rows(vendor: str, value: str, source: str, order: str) -> str:
    """A scalar subquery: `value` of each row of `source` in `order`, comma-separated (every
    argument is a constant of this module, never input)."""
    if vendor == "postgresql":
        return f"(SELECT string_agg(({value})::text, ',' ORDER BY {order}) FROM {source})"  # noqa: S608
    inner = f"SELECT {value} AS v FROM {source} ORDER BY {order}"  # noqa: S608
    return f"(SELECT group_concat(v, ',') FROM ({inner}))"  # noqa: S608


@functools.cache
def _version_sql(vendor: str) -> str:
    from execution_app.selectors import RUNNING_PLUGINS_SQL

    stamp = (
        "id::text || ':' || updated_at::text"
        if vendor == "postgresql"
        else ("id || ':' || updated_at")
    )
    return _VERSION_SQL.format(
        plugins=_rows(vendor, stamp, "plugins_app_pluginrecord", "id"),
        hosts=_rows(vendor, stamp, "plugins_app_pluginhost", "id"),
        running=_rows(vendor, "plugin_id", f"({RUNNING_PLUGINS_SQL}) AS running", "plugin_id"),
    )


def registry_version() -> tuple[Any, ...]:
    """A value that changes whenever anything a health record shows may have changed: any write
    to a plugin or host entry (every state change saves `updated_at`, every metrics update bumps
    `metrics_version`), and which plugins have a RUNNING job. One raw statement (building it
    with the ORM would cost more than running it; on PostgreSQL each statement is a round trip);
    its cost grows with the plugins and hosts (tens to hundreds of rows), not with the jobs."""
    from execution_app.selectors import RUNNING_PLUGINS_PARAMS

    with connection.cursor() as cursor:
        cursor.execute(_version_sql(connection.vendor), RUNNING_PLUGINS_PARAMS)
        row = cursor.fetchone()
    return tuple(str(v) for v in row)


@dataclass
class _Body:
    """A JSON body encoded once, with each record's `uptime_seconds` left open: `chunks` around
    the uptimes of the plugins loaded at `loaded` (epoch seconds)."""

    chunks: list[str]
    loaded: list[float]

    @classmethod
    def encode(
        cls,
        records: list[dict[str, Any]],
        loaded: list[float | None],
        encode: Callable[[Any], str],
        *,
        single: bool,
    ) -> _Body:
        """`records` (the one record if `single`, else the list) as `encode` writes them; every
        uptime that moves with the clock (its `loaded` is not None) is cut out and filled in by
        `render`. The shared cached records are never modified (other threads encode them too)."""
        token = f"uptime-{secrets.token_hex(8)}"
        opened: list[float] = []
        marked: list[dict[str, Any]] = []
        for record, loaded_at in zip(records, loaded, strict=True):
            if loaded_at is not None:
                record = {**record, "uptime_seconds": f"{token}-{len(opened)}"}
                opened.append(loaded_at)
            marked.append(record)
        text = encode(marked[0] if single else marked)
        chunks: list[str] = []
        rest = text
        for i in range(len(opened)):
            before, rest = rest.split(f'"{token}-{i}"', 1)
            chunks.append(before)
        chunks.append(rest)
        return cls(chunks, opened)

    def render(self, now: float) -> bytes:
        """The body with every open uptime brought up to `now` (as json writes a float)."""
        out = [self.chunks[0]]
        for loaded_at, chunk in zip(self.loaded, self.chunks[1:], strict=True):
            out.append(repr(round(now - loaded_at, 3)))
            out.append(chunk)
        return "".join(out).encode()


@dataclass
class _Rendered:
    key: tuple[Any, ...]
    records: list[dict[str, Any]]
    by_name: dict[str, dict[str, Any]]
    loaded: dict[str, float | None]  # epoch of loaded_at of the plugins with an uptime
    bodies: dict[str | None, _Body] = field(default_factory=dict)  # None: the whole list


_rendered: _Rendered | None = None


def _health_cache(
    live: dict[str, set[str]] | None, render: Callable[[list[dict[str, Any]]], Any]
) -> _Rendered:
    """This process's rendering of every health record, rebuilt only when the registry version
    or the live hosts changed since it was built."""
    global _rendered
    live_key = (
        None if live is None else tuple(sorted((h, tuple(sorted(q))) for h, q in live.items()))
    )
    key = (*registry_version(), live_key)
    cached = _rendered
    if cached is None or cached.key != key:
        plugins = list(plugin_list())
        records = list(render([plugin_health(p, live) for p in plugins]))
        loaded = {
            p.name: p.loaded_at.timestamp()
            if p.loaded_at and r["uptime_seconds"] is not None
            else None
            for p, r in zip(plugins, records, strict=True)
        }
        cached = _Rendered(key, records, {r["name"]: r for r in records}, loaded)
        _rendered = cached
    return cached


def health_body(
    live: dict[str, set[str]] | None,
    render: Callable[[list[dict[str, Any]]], Any],
    encode: Callable[[Any], str],
    name: str | None = None,
) -> bytes | None:
    """The JSON body of every health record (`name` None) or of one (None if no plugin has that
    name), encoded by `encode` once per registry version and brought up to now per call."""
    cached = _health_cache(live, render)
    body = cached.bodies.get(name)
    if body is None:
        if name is None:
            records = cached.records
        elif name in cached.by_name:
            records = [cached.by_name[name]]
        else:
            return None
        loaded = [cached.loaded[r["name"]] for r in records]
        body = _Body.encode(records, loaded, encode, single=name is not None)
        cached.bodies[name] = body
    return body.render(time.time())
