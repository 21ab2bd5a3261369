"""Reads of the execution side: jobs by id, filtered lists, and waiting for a job's end."""

from __future__ import annotations

import functools
import time
import uuid
from typing import NoReturn

from celery.exceptions import TimeoutError as CeleryTimeoutError
from celery.result import AsyncResult
from django.conf import settings
from django.db import connection
from django.db.models import QuerySet

from project.errors import WardenError

from .models import ACTIVE_STATUSES, Job, JobStatus

POLL_S = 0.02
WAIT_SLICE_S = 1.0  # job_wait re-reads the row this often while the Celery result is missing


# The plugins with a RUNNING job now (read on every health request: one raw statement, whose
# parameter is RUNNING_PLUGINS_PARAMS; the (plugin, status) index serves it).
RUNNING_PLUGINS_SQL = (
    "SELECT DISTINCT plugin_id FROM execution_app_job WHERE status = %s AND plugin_id IS NOT NULL"
)
RUNNING_PLUGINS_PARAMS = [JobStatus.RUNNING.value]


# What the API shows of a job (serializers.JobSerializer); never the traceback or the captured
# output, which only the admin shows and which may be kilobytes per job.
API_FIELDS = (
    *("id", "plugin_name", "tool", "status", "args", "result", "error", "input_mime_type"),
    *("input_size", "timeout_s", "hard_timeout_s", "memory_mb", "queue", "created_at"),
    *("started_at", "finished_at", "execution_time_ms", "peak_memory_mb", "attempts"),
)


def job_get(*, job_id: str) -> Job:
    """Return the job; raise NotFound (404) if there is none with that id."""
    try:
        key = uuid.UUID(str(job_id))
    except ValueError:
        _missing(job_id)
    # A raw statement (the same columns as .only(*API_FIELDS)): building the ORM's SELECT costs
    # four times what running it does, on the endpoint clients poll.
    found = list(Job.objects.raw(_api_select(), [Job._meta.pk.get_db_prep_value(key, connection)]))
    return found[0] if found else _missing(job_id)


@functools.cache
def _api_select() -> str:
    quote = connection.ops.quote_name
    columns = ", ".join(quote(name) for name in API_FIELDS)  # plain fields: column = name
    table = quote(Job._meta.db_table)
    return f"SELECT {columns} FROM {table} WHERE {quote('id')} = %s"  # noqa: S608 - our names


def _missing(job_id: str) -> NoReturn:
    raise WardenError("NotFound", f"No job with id '{job_id}'", job_id=str(job_id))


def job_list(*, plugin: str | None = None, status: str | None = None) -> QuerySet[Job]:
    """Return jobs newest first, optionally filtered; raise ValidationError on a bad status."""
    jobs = Job.objects.only(*API_FIELDS)
    if plugin:
        jobs = jobs.filter(plugin_name=plugin)
    if status is not None:  # `?status=` (empty) is no status either: a 400, not "all jobs"
        if status not in JobStatus.values:
            raise WardenError(
                "ValidationError",
                f"Unknown status '{status}' (one of {', '.join(JobStatus.values)})",
                details={"field": "status", "choices": list(JobStatus.values)},
            )
        jobs = jobs.filter(status=status)
    return jobs.order_by("-created_at")


def job_wait_limit(job: Job) -> float:
    """How long a synchronous caller waits for `job`: its hard limit, plus loading the plugin on
    first use, plus a margin for the worker to record the end."""
    return job.hard_timeout_s + settings.WARDEN_LOAD_TIMEOUT_S + settings.WARDEN_SYNC_WAIT_MARGIN_S


def _forget(task: AsyncResult) -> None:
    """Drop a task's stored result once read (its job row is the record)."""
    try:
        task.forget()
    except Exception:  # noqa: S110 - Redis gone: the result expires by itself
        pass


def job_wait(*, job: Job, timeout_s: float) -> Job:
    """Wait up to `timeout_s` for the job to end; return it (possibly still active).

    Waits on the Celery result (a Redis subscription, no polling). A success whose result came
    back inline (dispatched with `wait`; the row holds the same) ends the wait; anything else is
    read from the job row, which the worker's main process writes when a child died.
    """
    deadline = time.monotonic() + timeout_s
    task = AsyncResult(str(job.pk))
    end = None
    while (remaining := deadline - time.monotonic()) > 0:
        try:
            end = task.get(timeout=min(remaining, WAIT_SLICE_S), propagate=False, interval=POLL_S)
            break
        except CeleryTimeoutError:
            # Another waiter may have read and forgotten the result: the row tells.
            job.refresh_from_db(fields=["status"])
            if job.status not in ACTIVE_STATUSES:
                break
        except Exception:  # Redis gone: the job row decides below
            break
    if isinstance(end, dict) and end.get("inline") and end.get("status") == JobStatus.SUCCESS:
        job.status, job.result = JobStatus.SUCCESS, end.get("result")
        job.execution_time_ms = end.get("execution_time_ms")
        _forget(task)  # up to WARDEN_INLINE_RESULT_KB: not kept in Redis for result_expires
        return job
    while True:
        job.refresh_from_db(fields=["status", "result", "error", "execution_time_ms"])
        if job.status not in ACTIVE_STATUSES or time.monotonic() >= deadline:
            return job
        time.sleep(POLL_S)
