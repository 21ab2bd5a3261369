"""Celery tasks: thin interfaces that take a job id and call one service.

Limits and failure bookkeeping live on the task's Request class, whose hooks run in the worker's
main process, so a job ends FAILED with the right type even when its child was killed.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, shared_task
from celery.exceptions import SoftTimeLimitExceeded
from celery.worker.request import Request
from django.conf import settings

from plugins_app.probe import signal_name
from project.db import db_connections_refresh, soft_limit_deferred
from project.errors import WardenError

from .models import Job
from .services import job_claim, job_finish, jobs_purge, jobs_reap, jobs_requeue_lost
from .watchdog import marker_path, read_marker

logger = logging.getLogger(__name__)
_EXIT_RE = re.compile(r"signal (\d+)|exitcode (\d+)")


def _job_label(job_id: str) -> tuple[str, str, float]:
    job = Job.objects.filter(pk=job_id).values("plugin_name", "tool", "timeout_s").first()
    if job is None:
        return "?", "?", 0.0
    return job["plugin_name"], job["tool"], job["timeout_s"]


def job_fail_hard_timeout(job_id: str) -> None:
    """Record a job whose child was killed at the hard time limit.

    A watchdog marker means the child had already killed itself for memory and the pool noticed
    only at the deadline: that job is recorded as the memory kill it was.
    """
    marker = read_marker(settings.WARDEN_RUN_DIR, job_id)
    if marker is not None:
        _job_fail_memory(job_id, marker)
        return
    plugin, tool, soft = _job_label(job_id)
    hard = soft + settings.WARDEN_HARD_GRACE_S
    job_finish(
        job_id=job_id,
        error=WardenError(
            "TimeoutError",
            f"Tool '{tool}' of plugin '{plugin}' exceeded its {soft:g} s time limit and did not "
            f"stop; its worker process was killed at the {hard:g} s hard limit",
            details={"limit_s": soft, "hard_limit_s": hard, "kind": "hard"},
            plugin=plugin,
        ),
    )


def job_fail_soft_timeout(job_id: str) -> None:
    """Record a job whose soft limit struck outside ToolRunner's own handling (a limit so short
    it ends during the claim or the plugin load): a TimeoutError, not a Warden failure."""
    plugin, tool, soft = _job_label(job_id)
    job_finish(
        job_id=job_id,
        error=WardenError(
            "TimeoutError",
            f"Tool '{tool}' of plugin '{plugin}' exceeded its {soft:g} s time limit",
            details={"limit_s": soft, "kind": "soft"},
            plugin=plugin,
        ),
    )


def _job_fail_memory(job_id: str, marker: dict[str, Any]) -> None:
    """Record a job whose child the memory watchdog killed (its marker says how far it grew)."""
    plugin, tool, _ = _job_label(job_id)
    job_finish(
        job_id=job_id,
        peak_memory_mb=marker.get("peak_mb"),
        error=WardenError(
            "MemoryLimitExceeded",
            f"Tool '{tool}' of plugin '{plugin}' exceeded its {marker.get('limit_mb')} MB "
            f"memory limit (grew by {marker.get('peak_mb')} MB); its worker process was "
            "killed and replaced",
            details={**marker, "kind": "rss"},
            plugin=plugin,
            # Without the peak, which differs each time: one health reason (and history row)
            # for repeated kills.
            reason=f"Tool '{tool}' of plugin '{plugin}' exceeded its {marker.get('limit_mb')} MB "
            "memory limit; its worker process was killed and replaced",
        ),
    )


def job_fail_lost(job_id: str, exc: BaseException) -> None:
    """Record a job whose worker child died: a memory kill (marker present) or a crash."""
    marker = read_marker(settings.WARDEN_RUN_DIR, job_id)
    if marker is not None:
        _job_fail_memory(job_id, marker)
        return
    plugin, tool, _ = _job_label(job_id)
    text = str(exc)
    match = _EXIT_RE.search(text)
    details: dict[str, Any] = {"worker_message": text}
    if match and match.group(1):
        number = int(match.group(1))
        how = f"signal {signal_name(number)}"
        details.update(signal=signal_name(number), signal_number=number)
    elif match and match.group(2):
        how = f"exit code {match.group(2)}"
        details["exit_code"] = int(match.group(2))
    else:
        how = "unknown cause"
    job_finish(
        job_id=job_id,
        error=WardenError(
            "PluginCrashed",
            f"Tool '{tool}' of plugin '{plugin}' crashed its worker process ({how}); "
            "the worker replaced it",
            details=details,
            plugin=plugin,
        ),
    )


class JobRequest(Request):
    """Runs in the worker's main process: records ends the child could not record itself."""

    def _job_id(self) -> str | None:
        job_id = (self.kwargs or {}).get("job_id")
        return str(job_id) if job_id else None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Hard limit: the child is about to be killed; record the job's end first."""
        job_id = self._job_id()
        if not soft and job_id:
            _guarded(job_fail_hard_timeout, job_id)
        super().on_timeout(soft, timeout)

    def on_failure(
        self, exc_info: ExceptionInfo, send_failed_event: bool = True, return_ok: bool = False
    ) -> None:
        """Map a dead child or a task-level failure onto the job's terminal record."""
        job_id = self._job_id()
        exc = exc_info.exception
        if isinstance(exc, ExceptionWithTraceback):  # how the pool hands over a lost child
            exc = exc.exc
        if job_id:
            if isinstance(exc, TimeLimitExceeded):
                _guarded(job_fail_hard_timeout, job_id)
            elif isinstance(exc, WorkerLostError):
                _guarded(job_fail_lost, job_id, exc)
            elif isinstance(exc, SoftTimeLimitExceeded):
                _guarded(job_fail_soft_timeout, job_id)
            else:
                _guarded(
                    job_finish,
                    job_id=job_id,
                    error=WardenError(
                        "ServiceUnavailable",
                        f"The worker could not complete the job ({type(exc).__name__})",
                        details={"exception": type(exc).__name__},
                    ),
                    traceback=str(exc_info.traceback or ""),
                )
            # A killed child cannot remove its own watchdog marker.
            marker_path(settings.WARDEN_RUN_DIR, job_id).unlink(missing_ok=True)
        super().on_failure(exc_info, send_failed_event=send_failed_event, return_ok=return_ok)


def _guarded(func: Any, *args: Any, **kwargs: Any) -> None:
    """Hooks run on the worker's main loop: log a failure there rather than kill the worker."""
    try:
        db_connections_refresh()  # the main process has no request cycle to renew its connection
        func(*args, **kwargs)
    except Exception:
        logger.exception("could not record the end of job %s", args or kwargs)


class JobTask(Task):
    Request = JobRequest
    acks_late = True
    reject_on_worker_lost = False
    max_retries = 0


@shared_task(base=JobTask, name="execution_app.tasks.run_job", bind=True)
def run_job(self: JobTask, *, job_id: str, hard_timeout_s: float) -> str:
    """Claim and run one job; return its final status ('SKIPPED' if it was not PENDING)."""
    from .runner import ToolRunner

    with soft_limit_deferred():  # a limit that strikes mid-claim is raised after it
        job = job_claim(job_id=job_id, hard_timeout_s=hard_timeout_s)
    if job is None:
        return "SKIPPED"
    return "SUCCESS" if ToolRunner().execute(job) else "FAILED"


@shared_task(name="execution_app.tasks.reap_jobs")
def reap_jobs() -> dict[str, int]:
    """Fail jobs that no worker will ever finish, queue again those whose message the broker
    lost (beat, every WARDEN_REAPER_INTERVAL_S)."""
    return {**jobs_reap(), "requeued": jobs_requeue_lost()}


@shared_task(name="execution_app.tasks.purge_jobs")
def purge_jobs() -> int:
    """Delete finished jobs past WARDEN_JOB_RETENTION_DAYS (beat, hourly)."""
    return jobs_purge()


@shared_task(name="execution_app.tasks.ping")
def ping() -> str:
    """A no-op round trip through broker, worker and result backend (for benchmarks)."""
    return "pong"
