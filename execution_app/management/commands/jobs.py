"""`manage.py jobs list|show|cancel`: the jobs API's selectors and services on the command line.

Exit codes as `manage.py analyze` (execution_app/management/cli.py).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from rich.console import Group
from rich.panel import Panel
from rich.syntax import Syntax
from rich.table import Table

from execution_app.management import cli
from execution_app.models import Job, JobStatus
from execution_app.selectors import job_get, job_list, job_wait
from execution_app.services import job_cancel
from project.errors import WardenError

DETAIL_FIELDS = (
    "plugin_name",
    "tool",
    "status",
    "error_type",
    "queue",
    "created_at",
    "started_at",
    "finished_at",
    "execution_time_ms",
    "peak_memory_mb",
    "timeout_s",
    "hard_timeout_s",
    "memory_mb",
    "worker_host",
    "worker_pid",
    "attempts",
    "input_mime_type",
    "input_size",
)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, not {text!r}")
    return int(text)


class Command(BaseCommand):
    help = (
        "List, show or cancel jobs. Exit status: 0 ok, 1 the shown job failed, 2 bad usage or "
        "unknown job, 4 service unavailable, 5 still running (show --wait), 6 cancel of a job "
        "that had already finished."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        listing = sub.add_parser("list", help="Recent jobs, newest first")
        listing.add_argument("--plugin", help="only this plugin's jobs")
        listing.add_argument("--status", help=f"only jobs in this status ({', '.join(JobStatus)})")
        listing.add_argument("--limit", type=positive_int, default=20, help="default 20")
        listing.add_argument("--json", dest="as_json", action="store_true")
        show = sub.add_parser("show", help="One job: details, result or error, traceback")
        show.add_argument("job_id", metavar="ID")
        show.add_argument(
            "--wait",
            action="store_true",
            help="wait for the job to end first; the exit status then says how it ended",
        )
        show.add_argument("--json", dest="as_json", action="store_true")
        cancel = sub.add_parser("cancel", help="Cancel PENDING or RUNNING jobs")
        cancel.add_argument("job_ids", nargs="+", metavar="ID")

    def handle(self, *args: Any, **options: Any) -> None:
        """Dispatch to the action; map every expected failure to an exit code, no traceback."""
        cli.run_command(lambda: getattr(self, f"_{options['action']}")(**options))

    def _list(
        self, *, plugin: str | None, status: str | None, limit: int, as_json: bool, **_: Any
    ) -> int:
        jobs = list(job_list(plugin=plugin, status=status.upper() if status else None)[:limit])
        out = cli.console(cli.raw_stream(self.stdout))
        if as_json:
            out.print_json(data=[cli.job_json(job) for job in jobs])
        elif not jobs:
            out.print("No jobs.")
        else:
            out.print(cli.jobs_table(jobs, title=f"{len(jobs)} most recent job(s)"))
        return cli.EXIT_OK

    def _show(self, *, job_id: str, wait: bool, as_json: bool, **_: Any) -> int:
        job = job_get(job_id=job_id)
        if wait and not job.is_terminal:
            job_wait(job=job, timeout_s=job.hard_timeout_s + settings.WARDEN_SYNC_WAIT_MARGIN_S)
        # job_get loads what the API shows; the details here show more (one read, one moment).
        job.refresh_from_db(fields=[f.attname for f in job._meta.concrete_fields])
        out = cli.console(cli.raw_stream(self.stdout))
        if as_json:
            out.print_json(data=cli.job_json(job))
        else:
            out.print(self._details(job))
        return cli.code_for_job(job) if wait else cli.EXIT_OK

    def _cancel(self, *, job_ids: list[str], **_: Any) -> int:
        jobs = [job_get(job_id=job_id) for job_id in job_ids]  # all known before any cancel
        codes: list[int] = []
        for job in jobs:
            was = job.status
            try:
                job_cancel(job=job)
                self.stdout.write(f"{job.pk}: cancelled (was {was})")
            except WardenError as exc:
                self.stderr.write(f"{job.pk}: {exc.message}")
                codes.append(cli.code_for_rejection(exc))
        return cli.worst(codes)

    @staticmethod
    def _details(job: Job) -> Group:
        table = Table(show_header=False, title=f"Job {job.pk}", title_justify="left")
        table.add_column(style="bold")
        table.add_column()
        for name in DETAIL_FIELDS:
            value = getattr(job, name)
            if name == "status":
                table.add_row(name, cli.status_text(value))
            else:
                table.add_row(name, "-" if value in (None, "") else str(value))
        table.add_row("args", json.dumps(job.args))
        parts: list[Any] = [table]
        if job.result is not None:
            parts.append(Panel(Syntax(json.dumps(job.result, indent=2), "json"), title="Result"))
        if job.error:
            parts.append(Panel(Syntax(json.dumps(job.error, indent=2), "json"), title="Error"))
        if job.traceback:
            parts.append(Panel(job.traceback, title="Traceback (never sent to API clients)"))
        return Group(*parts)
