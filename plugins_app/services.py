"""Writes to the plugin registry: sync (discover, check, probe), state changes and metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from project.storable import storable_text

from .dependencies import check_dependencies
from .discovery import Candidate, discover
from .models import FaultOrigin, PluginRecord, PluginState, PluginStateTransition
from .probe import ProbeResult, ProbeSpec, probe_many

logger = logging.getLogger(__name__)

RECENT_EXECUTIONS = 10
LOCATION_MAX = PluginRecord._meta.get_field("location").max_length or 1024


@dataclass(frozen=True)
class SyncOutcome:
    """One plugin's state after a sync."""

    name: str
    location: str
    state: str
    reason: str | None


def plugin_set_state(
    *,
    plugin: PluginRecord,
    state: str,
    reason: str | None,
    hint: str | None = None,
    fault_origin: str = FaultOrigin.NONE,
    extra: dict[str, Any] | None = None,
) -> None:
    """Store a new state with its reason, recording a transition when state or reason changed."""
    previous_state, previous_reason = plugin.state, plugin.reason
    fields = {"state": state, "reason": reason, "hint": hint, "fault_origin": fault_origin}
    fields.update(extra or {})
    for key, value in fields.items():
        setattr(plugin, key, value)
    plugin.save(update_fields=[*fields, "updated_at"])
    if previous_state != state or previous_reason != reason:
        PluginStateTransition.objects.create(
            plugin=plugin, from_state=previous_state, to_state=state, reason=reason
        )
        _history_trim(plugin)


def _history_trim(plugin: PluginRecord) -> None:
    """Keep a plugin's newest WARDEN_STATE_HISTORY_KEEP transitions (the history's retention)."""
    keep = settings.WARDEN_STATE_HISTORY_KEEP
    stale = plugin.transitions.order_by("-at", "-id").values_list("id", flat=True)[keep:]
    ids = list(stale[:1000])
    if ids:
        PluginStateTransition.objects.filter(id__in=ids).delete()


def _upsert(candidate: Candidate) -> PluginRecord:
    """Create or refresh the record for a discovered candidate (no state change yet)."""
    manifest = candidate.manifest or {}
    limits = manifest.get("limits", {})
    values: dict[str, Any] = {
        "name": candidate.name,
        "source": candidate.source,
        "shadowed": candidate.shadowed_by is not None,
        "missing": False,
        "version": manifest.get("version", ""),
        "description": manifest.get("description", ""),
        "entrypoint": manifest.get("entrypoint", ""),
        "requires_gpu": bool(manifest.get("requires_gpu", False)),
        "manifest": candidate.manifest,
        "tools": manifest.get("tools", []),
        "timeout_s": min(
            float(limits.get("timeout_s", settings.WARDEN_DEFAULT_TIMEOUT_S)),
            float(settings.WARDEN_MAX_TIMEOUT_S),
        ),
        "memory_mb": int(limits.get("memory_mb", settings.WARDEN_DEFAULT_MEMORY_MB)),
    }
    with transaction.atomic():
        if not values["shadowed"]:
            # A previous winner at another location may hold the name; demote it first so the
            # unique constraint holds (it is re-marked as shadowed or missing below).
            PluginRecord.objects.filter(name=candidate.name, shadowed=False).exclude(
                location=candidate.location
            ).update(shadowed=True)
        record, created = PluginRecord.objects.get_or_create(
            location=candidate.location, defaults=values
        )
        if not created:
            for key, value in values.items():
                setattr(record, key, value)
            record.save(update_fields=[*values, "updated_at"])
    return record


def _mark_missing(record: PluginRecord) -> None:
    where = "folder" if record.source == "directory" else "entry point"
    record.missing = True
    record.save(update_fields=["missing", "updated_at"])
    plugin_set_state(
        plugin=record,
        state=PluginState.UNAVAILABLE,
        reason=f"Plugin {where} {record.location} no longer exists (removed since the last sync)",
        hint="restore the plugin folder and re-probe, or delete this record in the admin",
        fault_origin=FaultOrigin.LOAD,
    )


def _apply_probe(record: PluginRecord, result: ProbeResult) -> None:
    extra: dict[str, Any] = {
        "probed_at": timezone.now(),
        "probe_duration_ms": round(result.duration_ms, 1),
        "probe_traceback": result.traceback,
        "quarantined": False,
        "consecutive_failures": 0,
        "consecutive_severe": 0,
    }
    if result.ok:
        extra["loaded_at"] = timezone.now()
        plugin_set_state(plugin=record, state=PluginState.INITIALIZED, reason=None, extra=extra)
    else:
        extra["loaded_at"] = None
        plugin_set_state(
            plugin=record,
            state=PluginState.FAILED,
            reason=result.reason,
            hint=result.hint,
            fault_origin=FaultOrigin.LOAD,
            extra=extra,
        )


def _check_candidate(candidate: Candidate) -> tuple[PluginRecord, ProbeSpec] | None:
    """Store one discovered candidate and its load-time state; return what to probe, if any."""
    record = _upsert(candidate)
    failed = {"loaded_at": None, "probed_at": timezone.now(), "quarantined": False}
    if candidate.error:
        plugin_set_state(
            plugin=record,
            state=PluginState.FAILED,
            reason=candidate.error,
            hint="fix manifest.json (its JSON Schema is documented in docs/plugins.md)",
            fault_origin=FaultOrigin.LOAD,
            extra=failed,
        )
        return None
    if candidate.shadowed_by:
        plugin_set_state(
            plugin=record,
            state=PluginState.FAILED,
            reason=(
                f"Duplicate plugin name '{candidate.name}': {candidate.location} is ignored "
                f"because {candidate.shadowed_by} already provides it"
            ),
            hint="rename one of the two plugins or remove one folder",
            fault_origin=FaultOrigin.LOAD,
            extra=failed,
        )
        return None
    missing = check_dependencies(candidate.manifest or {}, candidate.folder)
    if missing:
        hints = [m.hint for m in missing if m.hint]
        plugin_set_state(
            plugin=record,
            state=PluginState.UNAVAILABLE,
            reason="; ".join(m.reason for m in missing),
            hint="; ".join(dict.fromkeys(hints)) or None,
            fault_origin=FaultOrigin.LOAD,
            extra=failed,
        )
        return None
    spec = ProbeSpec(
        name=record.name,
        folder=str(candidate.folder) if candidate.folder else None,
        entrypoint=record.entrypoint,
        source=record.source,
    )
    return record, spec


def _fail_unexpectedly(candidate: Candidate, exc: Exception) -> None:
    """Record a candidate whose check itself failed as FAILED, keeping only fields that fit."""
    reason = storable_text(
        f"Warden could not check this plugin: {type(exc).__name__}: {exc}"[:2000]
    )
    if len(candidate.location) > LOCATION_MAX:
        logger.error("plugin at %s not recorded: its path is too long", candidate.location)
        return
    try:
        with transaction.atomic():
            taken = PluginRecord.objects.filter(name=candidate.name, shadowed=False).exclude(
                location=candidate.location
            )
            record, _ = PluginRecord.objects.get_or_create(
                location=candidate.location,
                defaults={
                    "name": candidate.name,
                    "source": candidate.source,
                    "shadowed": taken.exists(),
                },
            )
            plugin_set_state(
                plugin=record,
                state=PluginState.FAILED,
                reason=reason,
                hint="see the worker or web log for the traceback; fix the plugin folder, then "
                "re-probe",
                fault_origin=FaultOrigin.LOAD,
                extra={"loaded_at": None, "probed_at": timezone.now(), "quarantined": False},
            )
    except Exception:
        logger.exception("plugin sync: could not record the failure of %s", candidate.location)


def plugin_sync(
    *,
    locations: Collection[str] | None = None,
    plugin_dirs: list[Path] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SyncOutcome]:
    """Discover, check and probe plugins; store each one's state. Returns every plugin's outcome.

    `locations` limits the re-probe to those records (the admin action); discovery still runs so
    that their manifests are re-read. Records whose plugin vanished are kept, marked UNAVAILABLE.
    """
    say = progress or (lambda _msg: None)
    dirs = list(plugin_dirs if plugin_dirs is not None else settings.WARDEN_PLUGIN_DIRS)
    if locations is not None:
        # Re-probing a record found under a directory that is no longer configured still works.
        dirs += [Path(loc).parent for loc in locations if not loc.startswith("entry-point:")]
    candidates = discover(list(dict.fromkeys(Path(d).resolve() for d in dirs)))
    found = {c.location for c in candidates}
    if locations is not None:
        candidates = [c for c in candidates if c.location in locations]
    say(f"Discovered {len(candidates)} plugin(s)")

    to_probe: list[tuple[PluginRecord, ProbeSpec]] = []
    for candidate in candidates:
        try:
            checked = _check_candidate(candidate)
        except Exception as exc:  # one bad folder must not abort the sync of the others
            logger.exception("plugin sync: could not check %s", candidate.location)
            _fail_unexpectedly(candidate, exc)
            continue
        if checked is not None:
            to_probe.append(checked)

    vanished = PluginRecord.objects.filter(missing=False).exclude(location__in=found)
    if locations is not None:
        vanished = vanished.filter(location__in=locations)
    for record in vanished:
        _mark_missing(record)

    if to_probe:
        say(f"Probing {len(to_probe)} plugin(s) in isolated processes")
        results = probe_many(
            [spec for _, spec in to_probe],
            timeout_s=settings.WARDEN_PROBE_TIMEOUT_S,
            memory_mb=settings.WARDEN_PROBE_MEMORY_MB,
            concurrency=settings.WARDEN_PROBE_CONCURRENCY,
            on_done=lambda spec, res: say(
                f"  {spec.name}: {'ok' if res.ok else res.reason} ({res.duration_ms:.0f} ms)"
            ),
        )
        for record, spec in to_probe:
            _apply_probe(record, results[spec.name])

    records = PluginRecord.objects.all()
    if locations is not None:
        records = records.filter(location__in=locations)
    return [SyncOutcome(r.name, r.location, r.state, r.reason) for r in records]


REPROBE_TASK = "plugins_app.tasks.reprobe_plugins"  # by name: services never import tasks


def plugin_reprobe_enqueue(*, locations: list[str]) -> None:
    """Queue a re-probe of the records at `locations` for a worker (queue `cpu`), so probes never
    run in a web process. Raises kombu/redis errors if the broker cannot be reached."""
    current_app.send_task(REPROBE_TASK, kwargs={"locations": locations}, queue="cpu")


def _recent_fields(recent: list[float], execution_ms: float | None) -> dict[str, Any]:
    """The last-10 execution-time fields after one more execution."""
    if execution_ms is None:
        return {}
    recent = [*recent, round(execution_ms, 3)][-RECENT_EXECUTIONS:]
    return {
        "recent_execution_ms": recent,
        "last_execution_time_ms": round(execution_ms, 3),
        "avg_execution_time_ms": round(sum(recent) / len(recent), 3),
    }


def _record_success_fast(
    plugin_id: int, snapshot: PluginRecord, execution_ms: float | None
) -> bool:
    """One conditional UPDATE for the common case: a success of an INITIALIZED plugin whose
    metrics nobody changed since `snapshot` was read. Returns False when the slow path is needed."""
    if snapshot.state != PluginState.INITIALIZED or snapshot.quarantined:
        return False
    updated = PluginRecord.objects.filter(
        pk=plugin_id, metrics_version=snapshot.metrics_version, state=PluginState.INITIALIZED
    ).update(
        success_count=F("success_count") + 1,
        consecutive_failures=0,
        consecutive_severe=0,
        metrics_version=F("metrics_version") + 1,
        last_used=timezone.now(),
        **_recent_fields(list(snapshot.recent_execution_ms or []), execution_ms),
    )
    return bool(updated)


def plugin_record_outcome(
    *,
    plugin_id: int,
    error_type: str | None,
    reason: str | None,
    execution_ms: float | None,
    snapshot: PluginRecord | None = None,
) -> None:
    """Update a plugin's metrics and state after one finished execution (CONTRACT.md §3 rule 4).

    `error_type` None means success; a plugin fault type means failure. Client errors and
    cancellations must not be passed here: they change neither state nor counts. `snapshot`, the
    record as read when the job started, allows a one-statement update on success.
    """
    from project.errors import SEVERE_FAULTS

    success = error_type is None
    if success and snapshot is not None and _record_success_fast(plugin_id, snapshot, execution_ms):
        return
    now = timezone.now()
    with transaction.atomic():
        record = (
            PluginRecord.objects.select_for_update()
            .only(
                "recent_execution_ms",
                "state",
                "reason",
                "fault_origin",
                "quarantined",
                "missing",
                "consecutive_severe",
            )
            .get(pk=plugin_id)
        )
        fields: dict[str, Any] = {
            "last_used": now,
            "metrics_version": F("metrics_version") + 1,
            **_recent_fields(list(record.recent_execution_ms or []), execution_ms),
        }
        if error_type is None:
            PluginRecord.objects.filter(pk=plugin_id).update(
                success_count=F("success_count") + 1,
                consecutive_failures=0,
                consecutive_severe=0,
                **fields,
            )
            runtime_failed = record.fault_origin == FaultOrigin.RUNTIME
            if record.state == PluginState.FAILED and runtime_failed and not record.quarantined:
                record.refresh_from_db()
                plugin_set_state(plugin=record, state=PluginState.INITIALIZED, reason=None)
            return
        severe = error_type in SEVERE_FAULTS
        PluginRecord.objects.filter(pk=plugin_id).update(
            error_count=F("error_count") + 1,
            consecutive_failures=F("consecutive_failures") + 1,
            consecutive_severe=(F("consecutive_severe") + 1) if severe else 0,
            **fields,
        )
        record.refresh_from_db()
        if record.fault_origin == FaultOrigin.LOAD or record.missing:
            return  # re-probed away meanwhile: a load-time state wins over a late job outcome
        quarantine = severe and record.consecutive_severe >= settings.WARDEN_QUARANTINE_AFTER
        full_reason = f"{error_type}: {reason}" if reason else error_type
        hint = None
        if quarantine and not record.quarantined:
            full_reason = (
                f"Quarantined after {record.consecutive_severe} consecutive crashes/timeouts/"
                f"memory kills; last: {full_reason}"
            )
            hint = "fix the plugin, then re-probe it (admin action or `manage.py plugins sync`)"
        elif record.quarantined:
            return
        plugin_set_state(
            plugin=record,
            state=PluginState.FAILED,
            reason=full_reason,
            hint=hint,
            fault_origin=FaultOrigin.RUNTIME,
            extra={"quarantined": quarantine},
        )
