"""Writes of the execution side: create, claim, finish and cancel jobs; reap and purge them."""

from __future__ import annotations

import logging
import os
import random
import re
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import import_module
from pathlib import Path
from typing import Any

from celery import current_app
from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import DateTimeField, ExpressionWrapper, F
from django.db.models.functions import Now
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import RedisError

from ops_app.services import JOB_LABELS, job_end_record
from plugins_app.models import PluginRecord
from plugins_app.probe import signal_name
from plugins_app.selectors import host_ready
from plugins_app.services import plugin_record_outcome
from project.errors import PLUGIN_FAULTS, WardenError
from project.storable import storable_text

from .containment import worker_containment
from .models import ACTIVE_STATUSES, Job, JobInputData, JobStatus
from .output import output_tail
from .slots import marker_read, slot_files_remove, slot_info
from .validation import (
    args_validate,
    file_validate,
    plugin_admit,
    timeout_resolve,
    tool_resolve,
)
from .workers import (
    host_queue,
    live_hosts_or_none,
    mark_queued,
    queue_has_live_worker,
    unmarked,
    worker_host_name,
)

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
    "input_size",
    "timeout_s",
    "memory_mb",
    "queue",  # these three label the job's end (ops_app.services.job_end_record)
    "worker_host",
    "attempts",
    "plugin__id",
    "plugin__name",
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
    "version",
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
    queue: str = ""  # where to send the job; "" = the plugin's queue


def job_route(plugin: PluginRecord, live: dict[str, set[str]] | None) -> str:
    """The queue a job of `plugin` goes to: its shared queue (`cpu`/`gpu`) when every live host
    consuming it has the plugin ready, else the host queue (`cpu@host`) of a live host that has
    it ready (chosen at random), so that a job never lands on a host that cannot run it."""
    queue = plugin.queue
    if not live:
        return queue
    consuming = {host for host, queues in live.items() if queue in queues}
    ready = {entry.host for entry in plugin.hosts.all() if host_ready(plugin, entry)} & consuming
    if not ready or ready == consuming:
        return queue
    return host_queue(queue, random.choice(sorted(ready)))


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
        PluginRecord.objects.filter(name=plugin_name)
        .only(*ADMIT_FIELDS)
        .prefetch_related("hosts")
        .first()
    )
    if plugin is None:
        raise WardenError(
            "PluginNotFound", f"No plugin named '{plugin_name}'", details={"field": "plugin"}
        )
    live = live_hosts_or_none()
    plugin_admit(plugin, live)
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
        plugin,
        str(entry["name"]),
        args,
        file_bytes,
        mime_type,
        timeout_resolve(plugin, timeout_s),
        job_route(plugin, live),
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
        queue=job_input.queue or plugin.queue,
        client_limit=job_input.timeout_s < plugin.timeout_s,
    )
    in_storage = settings.WARDEN_INPUT_STORAGE == "storage"
    with transaction.atomic():
        if job_input.file_bytes is not None and in_storage:
            job.input_file.save("input", ContentFile(job_input.file_bytes), save=False)
        job.save(force_insert=True)
        if job_input.file_bytes is not None and not in_storage:
            JobInputData.objects.create(job=job, data=job_input.file_bytes)
    return job


def job_input_read(job: Job) -> bytes | None:
    """The job's input file, wherever it is stored (None if the job has none).

    Raises OSError when the storage cannot be read.
    """
    if job.input_file:
        with job.input_file.open("rb") as handle:
            return bytes(handle.read())
    if not job.input_size:
        return None
    data = JobInputData.objects.filter(job_id=job.pk).values_list("data", flat=True).first()
    if data is None:
        raise FileNotFoundError(f"the input of job {job.pk} is not in the database")
    return bytes(data)


def job_dispatch(job: Job, *, wait: bool = False) -> None:
    """Queue `job` on its queue with its limits; on an unreachable broker or no live worker,
    fail the job and raise ServiceUnavailable (503). `wait`: a caller will wait for the job's
    end (its result may come back in the task's result; see selectors.job_wait)."""
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
        _send(job, inline=wait)
    except (KombuOperationalError, RedisError, OSError) as exc:
        # The client and the job's envelope get the kind of failure; the host, port and cause
        # go to the log and the job's traceback (admin only).
        logger.warning("job %s not queued: broker unreachable: %r", job_id, exc)
        reason = f"Message broker unreachable ({type(exc).__name__}); try again shortly"
        job_fail_unqueued(job_id=job_id, reason=reason, detail=f"{type(exc).__name__}: {exc}")
        raise WardenError(
            "ServiceUnavailable", reason, plugin=job.plugin_name, job_id=job_id
        ) from exc


def _send(job: Job, *, inline: bool = False) -> None:
    """Queue `job`'s task message, then mark it queued (see `jobs_requeue_lost`). With
    `inline`, the task returns a small successful result in its own result as well."""
    job_id = str(job.pk)
    current_app.send_task(
        RUN_JOB_TASK,
        kwargs={"job_id": job_id, "hard_timeout_s": job.hard_timeout_s, "inline": inline},
        task_id=job_id,
        queue=job.queue,
        # The soft and hard limits count from the tool's start and are enforced by the worker
        # (runner.ToolRun, supervisor.Supervisor); Celery's own hard limit is the backstop, with
        # room for loading the plugin on first use.
        time_limit=job.hard_timeout_s + settings.WARDEN_LOAD_TIMEOUT_S,
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
    wait: bool = False,
) -> Job:
    """Validate an analyze request, create its PENDING job and queue it: the one path the API,
    the admin and the command line share. `wait`: the caller waits for the end (job_wait).
    Raises WardenError (nothing is queued on a 4xx; the job is recorded FAILED
    ServiceUnavailable on a 503)."""
    job_input = analysis_validate(
        plugin_name=plugin_name,
        tool=tool,
        args=args,
        file_bytes=file_bytes,
        mime_type=mime_type,
        timeout_s=timeout_s,
    )
    job = job_create(job_input=job_input)
    job_dispatch(job, wait=wait)
    return job


def job_claim(*, job_id: str, hard_timeout_s: float) -> Job | None:
    """Atomically move a PENDING job to RUNNING for this worker; None if it is not PENDING.

    `hard_timeout_s` (carried by the task message), plus the time loading the plugin may take,
    sets the deadline the reaper checks. Times come from the database's clock (one clock for
    every host: the reaper compares them with it too).
    """
    budget = timedelta(seconds=hard_timeout_s + settings.WARDEN_LOAD_TIMEOUT_S)
    claimed = Job.objects.filter(pk=job_id, status=JobStatus.PENDING).update(
        status=JobStatus.RUNNING,
        started_at=Now(),
        deadline_at=ExpressionWrapper(Now() + budget, output_field=DateTimeField()),
        worker_host=worker_host_name(),
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
    output: str = "",
    plugin: PluginRecord | None = None,
    job: Job | None = None,
    expected: Collection[str] = ACTIVE_STATUSES,
) -> bool:
    """Record a job's end (SUCCESS with `result`, or FAILED with `error`) and the plugin's metrics.

    One conditional UPDATE: only a job whose status is in `expected` (by default PENDING or
    RUNNING) changes, so a second call (hooks fire twice, the reaper races the worker) is a no-op;
    a caller that decided from one state names exactly that state. Returns whether this call
    ended the job. Only plugin faults count against the plugin, and a timeout at a limit the
    client lowered does not (CONTRACT.md §5). `job`, the job as claimed, spares reading its
    labels again.
    """
    fields: dict[str, Any] = {"finished_at": Now()}
    if output:
        fields["output"] = output
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
        job_end_record(
            job_id=job_id,
            error=error,
            execution_ms=execution_ms,
            peak_memory_mb=peak_memory_mb,
            labels=None if job is None else {f: getattr(job, f) for f in JOB_LABELS},
        )
        plugin_id = (
            plugin.pk
            if plugin is not None
            else Job.objects.values_list("plugin_id", flat=True).get(pk=job_id)
        )
        if plugin_id is not None and (error is None or counts_against_plugin(error)):
            plugin_record_outcome(
                plugin_id=plugin_id,
                snapshot=plugin,
                error_type=None if error is None else error.type,
                reason=None if error is None else error.reason,
                execution_ms=execution_ms,
            )
    return True


def counts_against_plugin(error: WardenError) -> bool:
    """Whether a job's error is the plugin's fault (CONTRACT.md §3 rule 4, §5)."""
    return error.type in PLUGIN_FAULTS and not error.details.get("client_limit")


def timeout_error(job: Job, *, kind: str, late: bool = False) -> WardenError:
    """The TimeoutError of a job that ran past its soft limit (`kind` "soft") or was killed at its
    hard limit ("hard"); `late` means the tool returned by itself after the soft limit."""
    soft = job.timeout_s
    hard = soft + settings.WARDEN_HARD_GRACE_S
    details: dict[str, Any] = {"limit_s": soft, "kind": kind, "client_limit": job.client_limit}
    where = f"Tool '{job.tool}' of plugin '{job.plugin_name}'"
    if kind == "hard":
        details["hard_limit_s"] = hard
        message = (
            f"{where} exceeded its {soft:g} s time limit and did not stop; its worker process "
            f"was killed at the {hard:g} s hard limit"
        )
    elif late:
        details["late"] = True
        message = (
            f"{where} exceeded its {soft:g} s time limit (it returned late, after ignoring the "
            "interruption; its result was discarded)"
        )
    else:
        message = f"{where} exceeded its {soft:g} s time limit"
    if job.client_limit:
        message += " (a limit lowered by the request's timeout_s)"
    return WardenError("TimeoutError", message, details=details, plugin=job.plugin_name)


def scope_error(job: Job, doing: str, exc: BaseException) -> WardenError:
    """Warden's own failure around a tool run (run directory, cgroup, output capture): the job
    ends ServiceUnavailable, not counted against the plugin."""
    return WardenError(
        "ServiceUnavailable",
        f"The worker could not {doing} the run of job {job.pk} ({type(exc).__name__})",
        details={"exception": type(exc).__name__},
        plugin=job.plugin_name,
    )


def memory_error(job: Job, *, kind: str, peak_mb: float | None, **extra: Any) -> WardenError:
    """The MemoryLimitExceeded of a job stopped by the watchdog ("rss"), the address-space
    backstop ("address-space") or the kernel inside the job's cgroup ("oom")."""
    how = {
        "rss": "its process tree was killed",
        "address-space": "an allocation failed at the address-space limit",
        "oom": "the kernel killed a process of the job at the job's cgroup limit",
    }.get(kind, "it was stopped")
    grew = f" (grew by {peak_mb:.1f} MB)" if peak_mb is not None else ""
    return WardenError(
        "MemoryLimitExceeded",
        f"Tool '{job.tool}' of plugin '{job.plugin_name}' exceeded its {job.memory_mb} MB "
        f"memory limit{grew}; {how}",
        details={
            "limit_mb": job.memory_mb,
            "peak_mb": round(peak_mb, 1) if peak_mb is not None else None,
            "kind": kind,
            "measured": worker_containment().mode,
            **extra,
        },
        plugin=job.plugin_name,
        # Without the peak, which differs each time: one health reason (and history row) for
        # repeated kills.
        reason=f"Tool '{job.tool}' of plugin '{job.plugin_name}' exceeded its {job.memory_mb} MB "
        f"memory limit; {how}",
    )


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


STOP_COMMAND = "warden_stop_job"


def job_stop(*, job: Job) -> None:
    """Ask the worker running a cancelled job to stop it (best effort: the job row already says
    Cancelled, and a worker never starts a job that is not PENDING). The worker kills the job's
    process tree only while its child is verifiably still running this job (slots.slot_stop)."""
    if job.started_at is None:
        return  # never started: its message is skipped when a worker takes it
    try:
        current_app.control.broadcast(STOP_COMMAND, arguments={"job_id": str(job.pk)})
    except (KombuOperationalError, RedisError, OSError) as exc:
        logger.warning("could not ask the workers to stop job %s: %s", job.pk, exc)


END_FIELDS = ("id", "plugin_name", "tool", "timeout_s", "memory_mb", "client_limit")
_EXIT_RE = re.compile(r"signal (\d+)|exitcode (\d+)")


def job_fail_lost(*, job_id: str, worker_message: str) -> None:
    """Record a job whose worker child died (main process): killed on purpose (its end marker
    says why: memory watchdog, hard limit, cancel), OOM-killed by the kernel inside the job's
    cgroup, or crashed (`worker_message` is Celery's text, with the signal or exit code)."""
    _job_end_after_kill(job_id, worker_message=worker_message, hard_limit=False)


def job_fail_hard_timeout(*, job_id: str) -> None:
    """Record a job whose child Celery kills at its backstop time limit (main process)."""
    _job_end_after_kill(job_id, worker_message=None, hard_limit=True)


def _job_end_after_kill(job_id: str, *, worker_message: str | None, hard_limit: bool) -> None:
    run_dir = settings.WARDEN_RUN_DIR
    try:
        _job_record_kill(job_id, run_dir, worker_message=worker_message, hard_limit=hard_limit)
    finally:
        slot_files_remove(run_dir, job_id)


def _job_record_kill(
    job_id: str, run_dir: Path, *, worker_message: str | None, hard_limit: bool
) -> None:
    marker = marker_read(run_dir, job_id) or {}
    info = slot_info(run_dir, job_id)  # left behind when the child died during the tool's run
    oom_kills = worker_containment().release(info.get("pid"), int(info.get("oom_base", 0)))
    output = output_tail(run_dir, job_id, settings.WARDEN_JOB_OUTPUT_KB * 1024)
    job = Job.objects.filter(pk=job_id).only(*END_FIELDS).first()
    if job is not None:
        cause = marker.get("cause")
        if cause == "memory":
            error = memory_error(
                job,
                kind=str(marker.get("kind", "rss")),
                peak_mb=marker.get("peak_mb"),
            )
        elif cause == "cancel":
            error = WardenError(
                "Cancelled",
                f"Job {job_id} was cancelled while RUNNING",
                details={"cancelled_while": "RUNNING"},
                plugin=job.plugin_name,
            )
        elif oom_kills:
            error = memory_error(job, kind="oom", peak_mb=None, oom_kills=oom_kills)
        elif cause == "hard" or hard_limit:
            error = timeout_error(job, kind="hard")
        else:
            error = _crash_error(job, worker_message or "")
        job_finish(
            job_id=job_id,
            error=error,
            output=output,
            peak_memory_mb=error.details.get("peak_mb") if error.type != "Cancelled" else None,
        )


def _crash_error(job: Job, worker_message: str) -> WardenError:
    match = _EXIT_RE.search(worker_message)
    details: dict[str, Any] = {"worker_message": worker_message}
    if match and match.group(1):
        number = int(match.group(1))
        how = f"signal {signal_name(number)}"
        details.update(signal=signal_name(number), signal_number=number)
    elif match and match.group(2):
        how = f"exit code {match.group(2)}"
        details["exit_code"] = int(match.group(2))
    else:
        how = "unknown cause"
    return WardenError(
        "PluginCrashed",
        f"Tool '{job.tool}' of plugin '{job.plugin_name}' crashed its worker process ({how}); "
        "the worker replaced it",
        details=details,
        plugin=job.plugin_name,
    )


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
    # Compared on the database's clock, the one that wrote the deadlines. A margin past the hard
    # deadline leaves the worker's own hooks time to record the end.
    grace = timedelta(seconds=settings.WARDEN_REAPER_GRACE_S)
    ttl = timedelta(seconds=settings.WARDEN_PENDING_TTL_S)
    stale_running = Job.objects.filter(
        status=JobStatus.RUNNING,
        deadline_at__lt=ExpressionWrapper(Now() - grace, output_field=DateTimeField()),
    ).values_list("pk", "plugin_name", "worker_host", "hard_timeout_s")
    stale_pending = Job.objects.filter(
        status=JobStatus.PENDING,
        created_at__lt=ExpressionWrapper(Now() - ttl, output_field=DateTimeField()),
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
    """Delete a job's stored input: its JobInputData row, or its file and (then empty) per-job
    folder."""
    JobInputData.objects.filter(job_id=job.pk).delete()
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
    """Delete stored inputs whose job row no longer exists; return how many went. An input is
    the object `job-inputs/<job id>` (or, as earlier versions stored it, the folder
    `job-inputs/<job id>/` holding `input`); other names there are left alone."""
    try:
        folders, files = default_storage.listdir(INPUTS_DIR)
    except (FileNotFoundError, NotImplementedError):
        return 0
    ids = {str(key): key for key in _uuids([*folders, *files])}
    known = {str(pk) for pk in Job.objects.filter(pk__in=ids.values()).values_list("pk", flat=True)}
    swept = 0
    for name in sorted(n for n in [*folders, *files] if n in ids and n not in known):
        path = f"{INPUTS_DIR}/{name}"
        paths = [path]
        if name in folders:
            paths = [f"{path}/{file}" for file in default_storage.listdir(path)[1]]
        if any(default_storage.get_modified_time(p) > now - ORPHAN_INPUT_AGE for p in paths):
            continue  # a job being created right now stores its input before its row commits
        for item in paths:
            default_storage.delete(item)
        _folder_delete_if_empty(path)
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
