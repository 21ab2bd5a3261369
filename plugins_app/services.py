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
from .discovery import Candidate, discover, forgesyte_probed_manifest
from .forgesyte.translate import MANIFEST_HINT as FORGESYTE_MANIFEST_HINT
from .forgesyte.translate import SOURCE as FORGESYTE_SOURCE
from .manifest import ManifestError
from .models import FaultOrigin, PluginHost, PluginRecord, PluginState, PluginStateTransition
from .probe import ProbeResult, ProbeSpec, probe_many

logger = logging.getLogger(__name__)

RECENT_EXECUTIONS = 10
LOCATION_MAX = PluginHost._meta.get_field("location").max_length or 1024


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


def _manifest_values(manifest: dict[str, Any]) -> dict[str, Any]:
    """The record fields a manifest sets."""
    limits = manifest.get("limits", {})
    return {
        "version": manifest.get("version", ""),
        "description": manifest.get("description", ""),
        "entrypoint": manifest.get("entrypoint", ""),
        "requires_gpu": bool(manifest.get("requires_gpu", False)),
        "manifest": manifest or None,
        "tools": manifest.get("tools", []),
        "timeout_s": min(
            float(limits.get("timeout_s", settings.WARDEN_DEFAULT_TIMEOUT_S)),
            float(settings.WARDEN_MAX_TIMEOUT_S),
        ),
        "memory_mb": int(limits.get("memory_mb", settings.WARDEN_DEFAULT_MEMORY_MB)),
    }


def _record_for(candidate: Candidate) -> PluginRecord:
    """Get or create the plugin's record by name; a candidate with a valid manifest refreshes the
    manifest fields (the registry holds the manifest of the latest sync that read one)."""
    values: dict[str, Any] = {"source": candidate.source}
    if candidate.manifest is not None:
        values.update(_manifest_values(candidate.manifest))
    record, created = PluginRecord.objects.get_or_create(name=candidate.name, defaults=values)
    if not created and candidate.manifest is not None and not candidate.shadowed_by:
        if candidate.source == FORGESYTE_SOURCE:
            # Its tools come from its last good probe: keep them until the next probe
            # replaces them, so jobs keep validating against them while a sync runs.
            values = {k: v for k, v in values.items() if k not in ("tools", "manifest")}
        changed = [k for k, v in values.items() if getattr(record, k) != v]
        for key in changed:
            setattr(record, key, values[key])
        if changed:
            record.save(update_fields=[*changed, "updated_at"])
    return record


def _host_set(
    record: PluginRecord,
    candidate: Candidate,
    *,
    host: str,
    queues: list[str],
    state: str,
    reason: str | None = None,
    hint: str | None = None,
    probe: ProbeResult | None = None,
) -> PluginHost:
    """Store what this host found out about the plugin at `candidate.location`, recording a
    transition when its state or reason there changed."""
    manifest = candidate.manifest or {}
    previous = (
        PluginHost.objects.filter(plugin=record, host=host, location=candidate.location)
        .values_list("state", "reason")
        .first()
    ) or (PluginState.LOADED, None)
    entry, _ = PluginHost.objects.update_or_create(
        plugin=record,
        host=host,
        location=candidate.location,
        defaults={
            "source": candidate.source,
            "shadowed": candidate.shadowed_by is not None,
            "version": str(manifest.get("version", "")),
            "queues": queues,
            "state": state,
            "reason": reason,
            "hint": hint,
            "probed_at": timezone.now(),
            "probe_duration_ms": round(probe.duration_ms, 1) if probe else None,
            "probe_traceback": probe.traceback if probe else "",
        },
    )
    if entry.probed_at and (record.probed_at is None or record.probed_at < entry.probed_at):
        PluginRecord.objects.filter(pk=record.pk).update(probed_at=entry.probed_at)
        record.probed_at = entry.probed_at
    if previous != (state, reason):
        PluginStateTransition.objects.create(
            plugin=record, host=host, from_state=previous[0], to_state=state, reason=reason
        )
        _history_trim(record)
    return entry


def _mark_missing(entry: PluginHost) -> None:
    """A plugin this host had is gone from it (folder removed, package uninstalled)."""
    folder = not entry.location.startswith("entry-point:")
    previous = entry.state
    entry.state = PluginState.UNAVAILABLE
    entry.reason = (
        f"Plugin {'folder' if folder else 'entry point'} {entry.location} no longer exists "
        "(removed since the last sync)"
    )
    entry.hint = (
        "restore the plugin folder and re-probe, or delete this record in the admin"
        if folder
        else "reinstall its package on this host and re-probe, or delete this record in the admin"
    )
    entry.probed_at = timezone.now()
    entry.save(update_fields=["state", "reason", "hint", "probed_at", "updated_at"])
    PluginStateTransition.objects.create(
        plugin=entry.plugin,
        host=entry.host,
        from_state=previous,
        to_state=entry.state,
        reason=entry.reason,
    )
    _history_trim(entry.plugin)


def _apply_probe(
    record: PluginRecord,
    result: ProbeResult,
    candidate: Candidate,
    *,
    host: str,
    queues: list[str],
) -> None:
    if result.ok and result.facts is not None:
        # A ForgeSyte class described its tools in the probe: its manifest is complete now.
        try:
            manifest = forgesyte_probed_manifest(candidate, result.facts)
        except ManifestError as exc:
            reason = f"Invalid manifest: {exc}"
            result = ProbeResult(
                False, reason, FORGESYTE_MANIFEST_HINT, result.traceback, result.duration_ms
            )
        else:
            values = _manifest_values(manifest)
            for key, value in values.items():
                setattr(record, key, value)
            record.save(update_fields=[*values, "updated_at"])
            candidate.manifest = manifest
    if not result.ok:
        _host_set(
            record,
            candidate,
            host=host,
            queues=queues,
            state=PluginState.FAILED,
            reason=result.reason,
            hint=result.hint,
            probe=result,
        )
        return
    _host_set(
        record, candidate, host=host, queues=queues, state=PluginState.INITIALIZED, probe=result
    )
    # A good probe is the way back from quarantine and runtime failure (CONTRACT.md §3 rule 6);
    # the host entry's transition above is the history of it.
    now = timezone.now()
    fields = {
        "state": PluginState.INITIALIZED,
        "reason": None,
        "hint": None,
        "fault_origin": FaultOrigin.NONE,
        "loaded_at": now,
        "probed_at": now,
        "quarantined": False,
        "consecutive_failures": 0,
        "consecutive_severe": 0,
    }
    if record.state == PluginState.FAILED or record.quarantined:  # a runtime failure ends here
        extra = {k: v for k, v in fields.items() if k not in ("state", "reason", "hint")}
        fault = str(extra.pop("fault_origin"))
        plugin_set_state(
            plugin=record,
            state=PluginState.INITIALIZED,
            reason=None,
            fault_origin=fault,
            extra=extra,
        )
        return
    for key, value in fields.items():
        setattr(record, key, value)
    record.save(update_fields=[*fields, "updated_at"])


def sync_host_name() -> str:
    """The host this process syncs for: WARDEN_HOST_NAME (default: this machine's hostname)."""
    return str(settings.WARDEN_HOST_NAME)


def _check_candidate(
    candidate: Candidate, *, host: str, queues: list[str]
) -> SyncOutcome | tuple[PluginRecord, ProbeSpec, Candidate]:
    """Store one discovered candidate and its load-time state on this host; return what to probe,
    or the outcome when it cannot be probed."""
    record = _record_for(candidate)
    state, reason, hint = PluginState.FAILED, None, None
    if candidate.error:
        reason = candidate.error
        hint = candidate.hint or (
            "fix manifest.json (its JSON Schema is documented in docs/plugins.md)"
        )
    elif candidate.shadowed_by:
        reason = (
            f"Duplicate plugin name '{candidate.name}': {candidate.location} is ignored "
            f"because {candidate.shadowed_by} already provides it"
        )
        hint = "rename one of the two plugins or remove one folder"
    else:
        missing = check_dependencies(candidate.manifest or {}, candidate.folder)
        if not missing:
            manifest = candidate.manifest or {}
            spec = ProbeSpec(
                name=candidate.name,
                folder=str(candidate.folder) if candidate.folder else None,
                entrypoint=str(manifest.get("entrypoint", record.entrypoint)),
                source=candidate.source,
            )
            return record, spec, candidate
        hints = [m.hint for m in missing if m.hint]
        state = PluginState.UNAVAILABLE
        reason = "; ".join(m.reason for m in missing)
        hint = "; ".join(dict.fromkeys(hints)) or None
    _host_set(record, candidate, host=host, queues=queues, state=state, reason=reason, hint=hint)
    return SyncOutcome(candidate.name, candidate.location, state, reason)


def _fail_unexpectedly(
    candidate: Candidate, exc: Exception, *, host: str, queues: list[str]
) -> SyncOutcome | None:
    """Record, on this host, a candidate whose check or probe itself failed as FAILED (keeping
    only fields that fit); None when even that is impossible."""
    reason = storable_text(
        f"Warden could not check this plugin: {type(exc).__name__}: {exc}"[:2000]
    )
    if len(candidate.location) > LOCATION_MAX:
        logger.error("plugin at %s not recorded: its path is too long", candidate.location)
        return None
    try:
        with transaction.atomic():
            record, _ = PluginRecord.objects.get_or_create(
                name=candidate.name, defaults={"source": candidate.source}
            )
            _host_set(
                record,
                candidate,
                host=host,
                queues=queues,
                state=PluginState.FAILED,
                reason=reason,
                hint="see the worker or web log for the traceback; fix the plugin folder, then "
                "re-probe",
            )
    except Exception:
        logger.exception("plugin sync: could not record the failure of %s", candidate.location)
        return None
    return SyncOutcome(candidate.name, candidate.location, PluginState.FAILED, reason)


def plugin_sync(
    *,
    names: Collection[str] | None = None,
    plugin_dirs: list[Path] | None = None,
    host: str | None = None,
    queues: list[str] | None = None,
    progress: Callable[[str], None] | None = None,
) -> list[SyncOutcome]:
    """Discover, check and probe the plugins this host can see; store what this host found out
    about each (PluginHost) and each plugin's manifest (PluginRecord). Returns this host's
    outcome per plugin location.

    `names` limits the re-probe to those plugins (discovery still runs so that their manifests
    are re-read). `host` and `queues` name this host and what its workers consume (a worker's
    own sync passes them; `manage.py plugins sync` records the machine's hostname). A plugin this
    host had and no longer finds is kept, UNAVAILABLE on this host. Other hosts' entries are
    never touched.
    """
    say = progress or (lambda _msg: None)
    host = host or sync_host_name()
    queues = list(queues or [])
    dirs = list(plugin_dirs if plugin_dirs is not None else settings.WARDEN_PLUGIN_DIRS)
    if names is not None:
        # Re-probing a plugin found under a directory that is no longer configured still works.
        dirs += [
            Path(location).parent
            for location in PluginHost.objects.filter(host=host, plugin__name__in=names)
            .exclude(location__startswith="entry-point:")
            .values_list("location", flat=True)
        ]
    candidates = discover(list(dict.fromkeys(Path(d).resolve() for d in dirs)))
    found = {c.location for c in candidates}
    if names is not None:
        candidates = [c for c in candidates if c.name in names]
    say(f"Discovered {len(candidates)} plugin(s)")

    outcomes: list[SyncOutcome] = []
    to_probe: list[tuple[PluginRecord, ProbeSpec, Candidate]] = []
    for candidate in candidates:
        try:
            checked = _check_candidate(candidate, host=host, queues=queues)
        except Exception as exc:  # one bad folder must not abort the sync of the others
            logger.exception("plugin sync: could not check %s", candidate.location)
            outcome = _fail_unexpectedly(candidate, exc, host=host, queues=queues)
            if outcome is not None:
                outcomes.append(outcome)
            continue
        if isinstance(checked, SyncOutcome):
            outcomes.append(checked)
        else:
            to_probe.append(checked)

    vanished = PluginHost.objects.filter(host=host).exclude(location__in=found)
    if names is not None:
        vanished = vanished.filter(plugin__name__in=names)
    for entry in vanished.select_related("plugin"):
        moved = PluginHost.objects.filter(
            plugin_id=entry.plugin_id, host=host, location__in=found
        ).exists()
        if entry.shadowed or moved:
            entry.delete()  # a duplicate that is gone, or the plugin found elsewhere here now
            continue
        elif entry.state != PluginState.UNAVAILABLE or "no longer exists" not in (
            entry.reason or ""
        ):
            _mark_missing(entry)
        outcomes.append(SyncOutcome(entry.plugin.name, entry.location, entry.state, entry.reason))

    if to_probe:
        say(f"Probing {len(to_probe)} plugin(s) in isolated processes")
        results = probe_many(
            [spec for _, spec, _ in to_probe],
            timeout_s=settings.WARDEN_PROBE_TIMEOUT_S,
            memory_mb=settings.WARDEN_PROBE_MEMORY_MB,
            concurrency=settings.WARDEN_PROBE_CONCURRENCY,
            on_done=lambda spec, res: say(
                f"  {spec.name}: {'ok' if res.ok else res.reason} ({res.duration_ms:.0f} ms)"
            ),
        )
        for record, spec, candidate in to_probe:
            try:
                _apply_probe(record, results[spec.name], candidate, host=host, queues=queues)
                entry = PluginHost.objects.get(
                    plugin=record, host=host, location=candidate.location
                )
            except Exception as exc:  # as above: this plugin fails alone
                logger.exception("plugin sync: could not record the probe of %s", spec.name)
                outcome = _fail_unexpectedly(candidate, exc, host=host, queues=queues)
                if outcome is not None:
                    outcomes.append(outcome)
                continue
            outcomes.append(
                SyncOutcome(candidate.name, candidate.location, entry.state, entry.reason)
            )
    return sorted(outcomes, key=lambda o: (o.name, o.location))


REPROBE_TASK = "plugins_app.tasks.reprobe_plugins"  # by name: services never import tasks


def plugin_reprobe_enqueue(*, names: list[str]) -> list[str]:
    """Queue a re-probe of the plugins `names` on every host with a live worker (each host probes
    its own copy; probes never run in a web process). Returns those hosts, sorted.

    Raises kombu/redis errors if the broker or the heartbeat store cannot be reached.
    """
    from execution_app.workers import host_queue, live_hosts

    hosts = live_hosts()
    for host, queues in sorted(hosts.items()):
        current_app.send_task(
            REPROBE_TASK,
            kwargs={"names": names, "queues": sorted(queues)},
            queue=host_queue(sorted(queues)[0], host),
        )
    return sorted(hosts)


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
