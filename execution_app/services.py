"""Writes of the execution side: create, claim, finish and cancel jobs; reap and purge them."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from plugins_app.models import PluginRecord
from plugins_app.services import plugin_record_outcome
from project.errors import PLUGIN_FAULTS, WardenError
from project.storable import storable_text

from .models import ACTIVE_STATUSES, Job, JobStatus
from .validation import (
    args_validate,
    file_validate,
    plugin_admit,
    timeout_resolve,
    tool_resolve,
)
from .workers import mark_queued, queue_has_live_worker, unmarked

logger = logging.getLogger(__name__)
# Sent by name: services never import tasks (tests/test_governance.py).
RUN_JOB_TASK = "execution_app.tasks.run_job"


# What ToolRunner needs of a claimed job and its plugin (fewer columns: a cheaper hot path).
CLAIM_FIELDS = (
    "id",
    "plugin_name",
    "tool",
    "args",
    "input_file",
    "input_mime_type",
    "timeout_s",
    "memory_mb",
    "plugin__id",
    "plugin__name",
    "plugin__location",
    "plugin__source",
    "plugin__version",
    "plugin__entrypoint",
    "plugin__requires_gpu",
    "plugin__tools",
    "plugin__state",
    "plugin__reason",
    "plugin__hint",
    "plugin__fault_origin",
    "plugin__quarantined",
    "plugin__shadowed",
    "plugin__missing",
    "plugin__probed_at",
    "plugin__recent_execution_ms",
    "plugin__metrics_version",
)
ADMIT_FIELDS = (
    "id",
    "name",
    "state",
    "reason",
    "hint",
    "fault_origin",
    "quarantined",
    "shadowed",
    "missing",
    "tools",
    "timeout_s",
    "memory_mb",
    "requires_gpu",
)


@dataclass(frozen=True)
class JobInput:
    """A validated analyze request."""

    plugin: PluginRecord
    tool: str
    args: dict[str, Any]
    file_bytes: bytes | None
    mime_type: str | None
    timeout_s: float


def analysis_validate(
    *,
    plugin_name: str,
    tool: str | None,
    args: Any,
    file_bytes: bytes | None,
    mime_type: str | None,
    timeout_s: float | None,
) -> JobInput:
    """Check an analyze request against the registry; raise WardenError before anything queues."""
    plugin = (
        PluginRecord.objects.filter(name=plugin_name, shadowed=False).only(*ADMIT_FIELDS).first()
    )
    if plugin is None:
        raise WardenError(
            "PluginNotFound", f"No plugin named '{plugin_name}'", details={"field": "plugin"}
        )
    plugin_admit(plugin)
    entry = tool_resolve(plugin, tool)
    args = {} if args is None else args
    args_validate(plugin, entry, args)
    if file_bytes is not None:
        mime_type = file_validate(
            plugin, entry, file_bytes, mime_type, settings.WARDEN_MAX_UPLOAD_MB * 2**20
        )
    else:
        mime_type = None  # describes a file; there is none
    return JobInput(
        plugin, str(entry["name"]), args, file_bytes, mime_type, timeout_resolve(plugin, timeout_s)
    )


def job_create(*, job_input: JobInput) -> Job:
    """Create the PENDING job row (and store its input file) before any task is queued."""
    plugin = job_input.plugin
    job = Job(
        plugin=plugin,
        plugin_name=plugin.name,
        tool=job_input.tool,
        args=job_input.args,
        input_mime_type=job_input.mime_type or "",
        input_size=len(job_input.file_bytes) if job_input.file_bytes is not None else None,
        timeout_s=job_input.timeout_s,
        hard_timeout_s=job_input.timeout_s + settings.WARDEN_HARD_GRACE_S,
        memory_mb=plugin.memory_mb,
        queue="gpu" if plugin.requires_gpu else "cpu",
    )
    with transaction.atomic():
        if job_input.file_bytes is not None:
            job.input_file.save("input", ContentFile(job_input.file_bytes), save=False)
        job.save(force_insert=True)
    return job


def job_dispatch(job: Job) -> None:
    """Queue `job` on its queue with its limits; on an unreachable broker or no live worker,
    fail the job and raise ServiceUnavailable (503)."""
    job_id = str(job.pk)
    try:
        if not queue_has_live_worker(job.queue):
            reason = (
                f"No worker is consuming queue '{job.queue}'; start one (see docs/operations.md)"
            )
            job_fail_unqueued(job_id=job_id, reason=reason)
            raise WardenError(
                "ServiceUnavailable",
                reason,
                details={"queue": job.queue},
                plugin=job.plugin_name,
                job_id=job_id,
            )
        _send(job)
    except (KombuOperationalError, RedisError, OSError) as exc:
        # The client and the job's envelope get the kind of failure; the host, port and cause
        # go to the log and the job's traceback (admin only).
        logger.warning("job %s not queued: broker unreachable: %r", job_id, exc)
        reason = f"Message broker unreachable ({type(exc).__name__}); try again shortly"
        job_fail_unqueued(job_id=job_id, reason=reason, detail=f"{type(exc).__name__}: {exc}")
        raise WardenError(
            "ServiceUnavailable", reason, plugin=job.plugin_name, job_id=job_id
        ) from exc


def _send(job: Job) -> None:
    """Queue `job`'s task message, then mark it queued (see `jobs_requeue_lost`)."""
    job_id = str(job.pk)
    current_app.send_task(
        RUN_JOB_TASK,
        kwargs={"job_id": job_id, "hard_timeout_s": job.hard_timeout_s},
        task_id=job_id,
        queue=job.queue,
        soft_time_limit=job.timeout_s,
        time_limit=job.hard_timeout_s,
    )
    mark_queued(job_id, settings.WARDEN_PENDING_TTL_S + 60)


def job_submit(
    *,
    plugin_name: str,
    tool: str | None = None,
    args: Any = None,
    file_bytes: bytes | None = None,
    mime_type: str | None = None,
    timeout_s: float | None = None,
) -> Job:
    """Validate an analyze request, create its PENDING job and queue it: the one path the API,
    the admin and the command line share. Raises WardenError (nothing is queued on a 4xx; the
    job is recorded FAILED ServiceUnavailable on a 503)."""
    job_input = analysis_validate(
        plugin_name=plugin_name,
        tool=tool,
        args=args,
        file_bytes=file_bytes,
        mime_type=mime_type,
        timeout_s=timeout_s,
    )
    job = job_create(job_input=job_input)
    job_dispatch(job)
    return job


def job_claim(*, job_id: str, hard_timeout_s: float) -> Job | None:
    """Atomically move a PENDING job to RUNNING for this worker; None if it is not PENDING.

    `hard_timeout_s` (carried by the task message) sets the deadline the reaper checks.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING,
        started_at=now,
        deadline_at=now + timedelta(seconds=hard_timeout_s),
        worker_host=socket.gethostname(),
        worker_pid=os.getpid(),
        attempts=F("attempts") + 1,
    )
    if not claimed:
        Job.objects.filter(pk=job_id).update(attempts=F("attempts") + 1)  # a redelivery
        return None
    return Job.objects.select_related("plugin").only(*CLAIM_FIELDS).get(pk=job_id)


def job_finish(
    *,
    job_id: str,
    result: dict[str, Any] | None = None,
    error: WardenError | None = None,
    traceback: str = "",
    execution_ms: float | None = None,
    peak_memory_mb: float | None = None,
    plugin: PluginRecord | None = None,
    expected: Collection[str] = ACTIVE_STATUSES,
) -> bool:
    """Record a job's end (SUCCESS with `result`, or FAILED with `error`) and the plugin's metrics.

    One conditional UPDATE: only a job whose status is in `expected` (by default PENDING or
    RUNNING) changes, so a second call (hooks fire twice, the reaper races the worker) is a no-op;
    a caller that decided from one state names exactly that state. Returns whether this call
    ended the job.
    """
    now = timezone.now()
    fields: dict[str, Any] = {"finished_at": now}
    if execution_ms is not None:
        fields["execution_time_ms"] = round(execution_ms, 3)
    if peak_memory_mb is not None:
        fields["peak_memory_mb"] = round(peak_memory_mb, 1)
    if error is None:
        fields.update(status=JobStatus.SUCCESS, result=result)
    else:
        error.job_id = job_id
        fields.update(
            status=JobStatus.FAILED,
            error=error.as_envelope(),
            error_type=error.type,
            traceback=traceback,
        )
    with transaction.atomic():
        assert set(expected) <= set(ACTIVE_STATUSES), expected  # terminal states are final
        ended = Job.objects.filter(pk=job_id, status__in=list(expected)).update(**fields)
        if not ended:
            return False
        plugin_id = (
            plugin.pk
            if plugin is not None
            else Job.objects.values_list("plugin_id", flat=True).get(pk=job_id)
        )
        if plugin_id is not None and (error is None or error.type in PLUGIN_FAULTS):
            plugin_record_outcome(
                plugin_id=plugin_id,
                snapshot=plugin,
                error_type=None if error is None else error.type,
                reason=None if error is None else error.reason,
                execution_ms=execution_ms,
            )
    return True


def job_cancel(*, job: Job) -> Job:
    """Cancel a PENDING or RUNNING job (FAILED, type Cancelled); raise Conflict once finished."""
    ended = False
    while not ended and not job.is_terminal:
        was = job.status
        ended = job_finish(
            job_id=str(job.pk),
            error=WardenError(
                "Cancelled",
                f"Job {job.pk} was cancelled while {was}",
                details={"cancelled_while": was},
                plugin=job.plugin_name,
            ),
            expected=(was,),  # a claim may move it to RUNNING meanwhile: then cancel that
        )
        job.refresh_from_db()
    if ended:
        job_stop(job=job)
    else:
        raise WardenError(
            "Conflict",
            f"Job {job.pk} already finished with status {job.status}",
            details={"status": job.status},
            plugin=job.plugin_name,
            job_id=str(job.pk),
        )
    return job


def job_stop(*, job: Job) -> None:
    """Stop a cancelled job's task: drop it if queued, kill its child if it was running (best
    effort: the job row already says Cancelled, and a worker never runs a job that is not
    PENDING)."""
    try:
        current_app.control.revoke(
            str(job.pk), terminate=job.started_at is not None, signal="SIGKILL"
        )
    except (KombuOperationalError, RedisError, OSError) as exc:
        logger.warning("could not revoke job %s: %s", job.pk, exc)


def job_fail_unqueued(*, job_id: str, reason: str, detail: str = "") -> None:
    """Fail a job whose task could not be queued (broker or worker unreachable) and delete its
    stored input, which nothing will read; `detail`, for the admin, goes to its traceback."""
    ended = job_finish(
        job_id=job_id,
        error=WardenError("ServiceUnavailable", reason),
        traceback=storable_text(detail),
        expected=(JobStatus.PENDING,),
    )
    if ended:
        _input_delete(Job.objects.only("id", "input_file").get(pk=job_id))
        Job.objects.filter(pk=job_id).update(input_file="")


def jobs_reap() -> dict[str, int]:
    """Fail RUNNING jobs past their hard deadline and PENDING jobs past WARDEN_PENDING_TTL_S.

    Returns how many of each were failed.
    """
    now = timezone.now()
    # A margin past the hard deadline leaves the worker's own hooks time to record the end.
    stale_running = Job.objects.filter(
        status=JobStatus.RUNNING,
        deadline_at__lt=now - timedelta(seconds=settings.WARDEN_REAPER_GRACE_S),
    ).values_list("pk", "plugin_name", "worker_host", "hard_timeout_s")
    stale_pending = Job.objects.filter(
        status=JobStatus.PENDING,
        created_at__lt=now - timedelta(seconds=settings.WARDEN_PENDING_TTL_S),
    ).values_list("pk", "plugin_name", "queue")
    counts = {"running": 0, "pending": 0}
    for pk, plugin, host, hard in stale_running:
        # The worker host itself died (or lost the database): not counted against the plugin.
        # Which host it was is in the job row (admin), not in what clients read.
        counts["running"] += job_finish(
            job_id=str(pk),
            expected=(JobStatus.RUNNING,),
            error=WardenError(
                "ServiceUnavailable",
                f"Job of plugin '{plugin}' was still RUNNING past its {hard:g} s hard deadline; "
                "its worker died or lost contact",
                details={"reaped": True},
                plugin=plugin,
            ),
            traceback=f"reaped: worker host {host or 'unknown'} died or lost contact",
        )
    for pk, plugin, queue in stale_pending:
        # Only if still PENDING: a worker may have claimed it since the query above.
        counts["pending"] += job_finish(
            job_id=str(pk),
            expected=(JobStatus.PENDING,),
            error=WardenError(
                "ServiceUnavailable",
                f"No worker took the job within {settings.WARDEN_PENDING_TTL_S} s "
                f"(is a worker consuming queue '{queue}'?)",
                details={"reaped": True, "queue": queue},
                plugin=plugin,
            ),
        )
    return counts


def jobs_requeue_lost() -> int:
    """Queue again the PENDING jobs whose message the broker lost (Redis restarted without its
    data): jobs older than WARDEN_REQUEUE_AFTER_S whose queued mark is gone. A message that
    still exists somewhere is harmless: a worker runs only a PENDING job, once.

    Returns how many were queued again. Raises redis/kombu errors if the broker is unreachable.
    """
    now = timezone.now()
    candidates = {
        str(job.pk): job
        for job in Job.objects.filter(
            status=JobStatus.PENDING,
            created_at__lt=now - timedelta(seconds=settings.WARDEN_REQUEUE_AFTER_S),
            created_at__gte=now - timedelta(seconds=settings.WARDEN_PENDING_TTL_S),
        ).only("id", "queue", "timeout_s", "hard_timeout_s")
    }
    lost = unmarked(list(candidates))
    for job_id in lost:
        logger.warning(
            "job %s: its queued message was lost by the broker; queueing it again", job_id
        )
        _send(candidates[job_id])
    return len(lost)


INPUTS_DIR = "job-inputs"
# A stored input with no job row this old (the row was deleted, e.g. from the admin) is swept.
ORPHAN_INPUT_AGE = timedelta(hours=1)


def _input_delete(job: Job) -> None:
    """Delete a job's stored input and its (then empty) per-job folder."""
    if job.input_file:
        job.input_file.delete(save=False)
    _folder_delete_if_empty(f"{INPUTS_DIR}/{job.pk}")


def _folder_delete_if_empty(name: str) -> None:
    try:
        path = default_storage.path(name)
    except NotImplementedError:  # object storage: no folders to leave behind
        return
    try:
        os.rmdir(path)
    except OSError:  # not empty, or already gone
        pass


def _orphan_inputs_delete(now: datetime) -> int:
    """Delete stored inputs whose job row no longer exists; return how many folders went."""
    try:
        folders, _ = default_storage.listdir(INPUTS_DIR)
    except (FileNotFoundError, NotImplementedError):
        return 0
    known = {
        str(pk) for pk in Job.objects.filter(pk__in=_uuids(folders)).values_list("pk", flat=True)
    }
    swept = 0
    for folder in set(folders) - known:
        name = f"{INPUTS_DIR}/{folder}"
        _, files = default_storage.listdir(name)
        paths = [f"{name}/{file}" for file in files]
        if any(default_storage.get_modified_time(p) > now - ORPHAN_INPUT_AGE for p in paths):
            continue  # a job being created right now stores its input before its row commits
        for path in paths:
            default_storage.delete(path)
        _folder_delete_if_empty(name)
        swept += 1
    return swept


def _uuids(names: list[str]) -> list[uuid.UUID]:
    keys = []
    for name in names:
        try:
            keys.append(uuid.UUID(name))
        except ValueError:
            pass
    return keys


def jobs_purge(*, older_than_days: int | None = None) -> int:
    """Apply Warden's retention rules; return the number of jobs deleted.

    Deletes finished jobs older than WARDEN_JOB_RETENTION_DAYS with their stored inputs and
    folders, stored inputs left without a job (older than an hour), and expired admin sessions.
    """
    days = settings.WARDEN_JOB_RETENTION_DAYS if older_than_days is None else older_than_days
    now = timezone.now()
    old = Job.objects.exclude(status__in=ACTIVE_STATUSES).filter(
        finished_at__lt=now - timedelta(days=days)
    )
    deleted = 0
    for job in old.iterator():
        _input_delete(job)
        job.delete()
        deleted += 1
    swept = _orphan_inputs_delete(now)
    import_module(settings.SESSION_ENGINE).SessionStore.clear_expired()
    logger.info("retention: %d job(s) and %d orphaned input(s) deleted", deleted, swept)
    return deleted


def error_for_envelope(data: dict[str, Any]) -> WardenError:
    """Rebuild a WardenError from a stored envelope (to re-raise a finished job's error)."""
    err = data.get("error", {})
    return WardenError(
        err.get("type", "PluginError"),
        err.get("message", ""),
        details=err.get("details"),
        plugin=err.get("plugin"),
        job_id=err.get("job_id"),
    )
