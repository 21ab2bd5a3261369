"""Writes of the operations side: the record of a job's end (counters for /metrics, a log line)."""

from __future__ import annotations

import bisect
import logging
import uuid
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from execution_app.models import Job
from project.errors import PLUGIN_FAULTS, WardenError

from .models import DURATION_BUCKETS_S, MEMORY_BUCKETS_MB, OUTCOME_COLUMNS, JobOutcome

logger = logging.getLogger("warden.jobs")

_ADDED = OUTCOME_COLUMNS[3:]
# One statement, the same on SQLite (>= 3.24) and PostgreSQL: insert the row or add to it.
_TABLE = JobOutcome._meta.db_table
_UPSERT = (
    f"INSERT INTO {_TABLE} ({', '.join(OUTCOME_COLUMNS)}, updated_at) "  # noqa: S608 - names are constants
    f"VALUES ({', '.join(['%s'] * (len(OUTCOME_COLUMNS) + 1))}) "
    "ON CONFLICT (plugin_name, status, error_type) DO UPDATE SET "
    + ", ".join(f"{c} = {_TABLE}.{c} + excluded.{c}" for c in _ADDED)
    + ", updated_at = excluded.updated_at"
)


# This runs on every job's end: two plain statements (the ORM would cost several times more,
# docs/benchmarks.md), the job's labels read by primary key.
JOB_LABELS = ("plugin_name", "tool", "queue", "worker_host", "attempts")
_JOB_PK = Job._meta.pk
_SELECT_JOB = (
    f"SELECT {', '.join(JOB_LABELS)} FROM {Job._meta.db_table} "  # noqa: S608 - constants
    f"WHERE {_JOB_PK.column} = %s"
)


def _one_hot(bounds: tuple[float, ...], value: float | None) -> list[int]:
    """The bucket columns' increments for one observation: 1 in the first bucket whose upper
    bound is >= value, 0 elsewhere (all 0 for None, or above the last bound: only +Inf)."""
    cells = [0] * len(bounds)
    if value is not None:
        index = bisect.bisect_left(bounds, max(value, 0.0))
        if index < len(bounds):
            cells[index] = 1
    return cells


def job_end_record(
    *,
    job_id: str,
    error: WardenError | None,
    execution_ms: float | None,
    peak_memory_mb: float | None,
    labels: dict[str, Any] | None = None,
) -> None:
    """Count one job's end in JobOutcome and log it on `warden.jobs` (one line with job id,
    plugin, tool, status, error type and duration) once the caller's transaction commits.

    Called by `execution_app.services.job_finish` inside its transaction, only when that call
    really ended the job, so each job is counted exactly once. Raises database errors (the
    caller's transaction then rolls back the job's end as well). `labels` (JOB_LABELS of the
    job), when the caller has them, spare reading them.
    """
    job = labels
    if job is None:
        with connection.cursor() as cursor:
            key = _JOB_PK.get_db_prep_value(uuid.UUID(str(job_id)), connection)
            cursor.execute(_SELECT_JOB, [key])
            row = cursor.fetchone()
        job = dict(zip(JOB_LABELS, row or ("", "", "", "", 0), strict=True))
    status = "SUCCESS" if error is None else "FAILED"
    error_type = "" if error is None else error.type
    # Rounded as job_finish stores them, so the sums match the jobs' own columns.
    duration_s = round(execution_ms, 3) / 1000 if execution_ms is not None else None
    peak_memory_mb = round(peak_memory_mb, 1) if peak_memory_mb is not None else None
    params: list[Any] = [
        job["plugin_name"],
        status,
        error_type,
        1,
        int(duration_s is not None),
        duration_s or 0.0,
        int(peak_memory_mb is not None),
        peak_memory_mb or 0.0,
        *_one_hot(DURATION_BUCKETS_S, duration_s),
        *_one_hot(MEMORY_BUCKETS_MB, peak_memory_mb),
        timezone.now(),
    ]
    with connection.cursor() as cursor:
        cursor.execute(_UPSERT, params)

    fields: dict[str, Any] = {
        "event": "job_end",
        "job_id": job_id,
        "plugin": job["plugin_name"],
        "tool": job["tool"],
        "status": status,
        "error_type": error_type or None,
        "duration_ms": round(execution_ms, 3) if execution_ms is not None else None,
        "peak_memory_mb": peak_memory_mb,
        "queue": job["queue"],
        "worker_host": job["worker_host"] or None,
        "attempts": job["attempts"],
    }
    text = f"job {job_id} {job['plugin_name']}.{job['tool']} {status}"
    if error is not None:
        text += f" {error.type}"
    if execution_ms is not None:
        text += f" in {execution_ms:.1f} ms"
    if error is not None:
        text += f": {error.message[:300]}"
    level = logging.INFO if error is None or error.type not in PLUGIN_FAULTS else logging.WARNING
    transaction.on_commit(lambda: logger.log(level, text, extra=fields))
