"""Celery tasks: thin interfaces that take a job id and call one service.

Limits and failure bookkeeping live on the task's Request class, whose hooks run in the worker's
main process, so a job ends FAILED with the right type even when its child was killed.
"""

from __future__ import annotations

import logging
from typing import Any

from billiard.einfo import ExceptionInfo, ExceptionWithTraceback
from billiard.exceptions import TimeLimitExceeded, WorkerLostError
from celery import Task, shared_task
from celery.worker.request import Request

from project.db import db_connections_refresh, soft_limit_deferred
from project.errors import WardenError

from .services import (
    job_claim,
    job_fail_hard_timeout,
    job_fail_lost,
    job_finish,
    jobs_purge,
    jobs_reap,
    jobs_requeue_lost,
)

logger = logging.getLogger(__name__)


class JobRequest(Request):
    """Runs in the worker's main process: records ends the child could not record itself."""

    def _job_id(self) -> str | None:
        job_id = (self.kwargs or {}).get("job_id")
        return str(job_id) if job_id else None

    def on_timeout(self, soft: bool, timeout: float) -> None:
        """Hard limit: the child is about to be killed; record the job's end first."""
        job_id = self._job_id()
        if not soft and job_id:
            _guarded(job_fail_hard_timeout, job_id=job_id)
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
                _guarded(job_fail_hard_timeout, job_id=job_id)
            elif isinstance(exc, WorkerLostError):
                _guarded(job_fail_lost, job_id=job_id, worker_message=str(exc))
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
    # Celery logs each task's return value at INFO: show how the job ended, never an inline
    # result (client data; up to WARDEN_INLINE_RESULT_KB).
    resultrepr_maxsize = len("{'status': 'SKIPPED', 'inline': False")


@shared_task(base=JobTask, name="execution_app.tasks.run_job", bind=True)
def run_job(
    self: JobTask, *, job_id: str, hard_timeout_s: float, inline: bool = False
) -> dict[str, Any]:
    """Claim and run one job; return how it ended (runner.JobEnd.message(): status "SKIPPED"
    if it was not PENDING; with `inline`, a small successful result too)."""
    from .runner import JobEnd, ToolRunner

    with soft_limit_deferred():  # a limit that strikes mid-claim is raised after it
        job = job_claim(job_id=job_id, hard_timeout_s=hard_timeout_s)
    end = JobEnd("SKIPPED") if job is None else ToolRunner().execute(job)
    return end.message(inline=inline)


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
