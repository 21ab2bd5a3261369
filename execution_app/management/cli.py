"""What `manage.py analyze` and `manage.py jobs` share: exit codes, error mapping, rich output."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import IO, Any

from django.core.management.base import CommandError
from django.db import DatabaseError
from rich.console import Console
from rich.table import Table
from rich.text import Text

from execution_app.models import Job, JobStatus
from project.errors import WardenError

# Exit codes scripts can rely on (docs/operations.md). When several apply (several files), the
# first one in this order wins: 4, 3, 2, 5, 6, 1.
EXIT_OK = 0
EXIT_JOB_FAILED = 1  # a job ran and ended FAILED (plugin fault, timeout, crash, bad input, cancel)
EXIT_USAGE = 2  # bad arguments: missing file, bad JSON, unknown plugin/tool/job, invalid args
EXIT_PLUGIN_UNAVAILABLE = 3  # the plugin exists but rejects jobs (FAILED at load, UNAVAILABLE, …)
EXIT_SERVICE_UNAVAILABLE = 4  # database, Redis or a worker missing (retry later)
EXIT_STILL_RUNNING = 5  # the wait ended before the job did
EXIT_CONFLICT = 6  # `jobs cancel` of a job that had already finished
EXIT_INTERRUPTED = 130  # Ctrl-C (jobs already queued keep running)
EXIT_MEANING = {
    EXIT_JOB_FAILED: "a job failed",
    EXIT_USAGE: "bad usage",
    EXIT_PLUGIN_UNAVAILABLE: "the plugin does not accept jobs",
    EXIT_SERVICE_UNAVAILABLE: "service unavailable (database, Redis or worker)",
    EXIT_STILL_RUNNING: "a job was still running when the wait ended (manage.py jobs show ID)",
    EXIT_CONFLICT: "a job had already finished",
    EXIT_INTERRUPTED: "interrupted",
}
PRECEDENCE = (
    EXIT_SERVICE_UNAVAILABLE,
    EXIT_PLUGIN_UNAVAILABLE,
    EXIT_USAGE,
    EXIT_STILL_RUNNING,
    EXIT_CONFLICT,
    EXIT_JOB_FAILED,
)
_REJECTED = {
    "PluginUnavailable": EXIT_PLUGIN_UNAVAILABLE,
    "ServiceUnavailable": EXIT_SERVICE_UNAVAILABLE,
    "Conflict": EXIT_CONFLICT,
}
STATUS_STYLE: dict[str, str] = {
    JobStatus.SUCCESS: "green",
    JobStatus.FAILED: "red",
    JobStatus.RUNNING: "blue",
    JobStatus.PENDING: "yellow",
}


def worst(codes: list[int]) -> int:
    """Return the exit code for several outcomes (see PRECEDENCE); 0 when all were 0."""
    return next((code for code in PRECEDENCE if code in codes), EXIT_OK)


def code_for_rejection(error: WardenError) -> int:
    """Exit code for a request refused before any job ran (4xx/503 of the API)."""
    return _REJECTED.get(error.type, EXIT_USAGE)


def code_for_job(job: Job) -> int:
    """Exit code for a job's outcome: 0 success, 1 failed, 4 failed for want of the service,
    5 still PENDING or RUNNING."""
    if job.status == JobStatus.SUCCESS:
        return EXIT_OK
    if job.status == JobStatus.FAILED:
        error_type = (job.error or {}).get("error", {}).get("type")
        return EXIT_SERVICE_UNAVAILABLE if error_type == "ServiceUnavailable" else EXIT_JOB_FAILED
    return EXIT_STILL_RUNNING


def fail(message: str, code: int) -> CommandError:
    """A CommandError that Django prints as one line (no traceback) and exits with `code`."""
    return CommandError(message, returncode=code)


def run_command(action: Callable[[], int]) -> None:
    """Run a command's action; turn every expected failure, and an exit code other than
    EXIT_OK, into a CommandError with its exit code and a one-line message (no traceback)."""
    try:
        code = action()
    except WardenError as exc:
        raise fail(exc.message, code_for_rejection(exc)) from None
    except DatabaseError as exc:
        raise fail(
            f"Database unavailable: {type(exc).__name__}: {exc}", EXIT_SERVICE_UNAVAILABLE
        ) from None
    except KeyboardInterrupt:
        raise fail("interrupted", EXIT_INTERRUPTED) from None
    if code != EXIT_OK:
        raise fail(EXIT_MEANING[code], code)


def raw_stream(wrapper: Any) -> IO[str]:
    """The stream behind a command's OutputWrapper (which adds a newline to every write)."""
    stream: IO[str] = getattr(wrapper, "_out", wrapper)
    return stream


def console(out: IO[str]) -> Console:
    """A rich console on `out`: colours on a terminal, plain wide text otherwise."""
    terminal = out.isatty()
    return Console(file=out, width=None if terminal else 200)


def status_text(status: str) -> Text:
    """The job status, coloured."""
    return Text(status, style=STATUS_STYLE.get(status, ""))


def outcome_text(job: Job, width: int = 70) -> str:
    """One line about a job's outcome: the error's type and message, or the result, shortened."""
    if job.error:
        error = job.error.get("error", {})
        text = f"{error.get('type')}: {error.get('message')}"
    elif job.result is not None:
        text = json.dumps(job.result, separators=(",", ":"), default=str)
    else:
        text = ""
    return text if len(text) <= width else text[: width - 1] + "…"


def jobs_table(jobs: list[Job], *, title: str | None = None) -> Table:
    """A table of jobs: id, plugin.tool, status, outcome, time, created."""
    table = Table(title=title, show_lines=False, expand=False)
    table.add_column("Job")
    table.add_column("Plugin.tool")
    table.add_column("Status")
    table.add_column("Result / error", overflow="fold")
    table.add_column("Time (ms)", justify="right")
    table.add_column("Created (UTC)")
    for job in jobs:
        table.add_row(
            str(job.pk),
            f"{job.plugin_name}.{job.tool}",
            status_text(job.status),
            outcome_text(job),
            f"{job.execution_time_ms:.1f}" if job.execution_time_ms is not None else "-",
            f"{job.created_at:%Y-%m-%d %H:%M:%S}",
        )
    return table


def job_json(job: Job) -> dict[str, Any]:
    """The job as GET /v1/jobs/{id} returns it."""
    from execution_app.serializers import JobSerializer

    data: dict[str, Any] = json.loads(json.dumps(JobSerializer(job).data, default=str))
    return data
