"""`manage.py analyze PLUGIN [FILE...]`: run a plugin's tool on files, through the API's service.

Every file becomes one job, submitted with `job_submit` (validation, PENDING job, queue: exactly
what POST /v1/analyze-execution does), then awaited with `job_wait`. Exit codes: cli.py.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from execution_app.management import cli
from execution_app.models import Job
from execution_app.selectors import job_wait
from execution_app.services import analysis_validate, job_submit
from project.errors import WardenError


def positive_seconds(text: str) -> float:
    """argparse type: a finite number of seconds > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, not {text!r}")
    return value


def parse_args_json(text: str | None) -> dict[str, Any]:
    """Return --args as a dict (JSON text, or @path to a JSON file); raise a usage error."""
    if text is None:
        return {}
    source = "--args"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except OSError as exc:
            message = f"Cannot read --args file {source}: {exc.strerror}"
            raise cli.fail(message, cli.EXIT_USAGE) from None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise cli.fail(
            f"{source} is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
            """expected an object such as '{"lang": "eng"}'""",
            cli.EXIT_USAGE,
        ) from None
    if not isinstance(value, dict):
        raise cli.fail(
            f"{source} must be a JSON object, not {type(value).__name__}", cli.EXIT_USAGE
        )
    return value


def read_input(name: str) -> bytes:
    """Return the bytes of file `name`; raise a usage error that names it."""
    try:
        return Path(name).read_bytes()
    except FileNotFoundError:
        raise cli.fail(f"File not found: {name}", cli.EXIT_USAGE) from None
    except IsADirectoryError:
        raise cli.fail(f"Not a file: {name} is a directory", cli.EXIT_USAGE) from None
    except OSError as exc:
        raise cli.fail(f"Cannot read {name}: {exc.strerror}", cli.EXIT_USAGE) from None


class Command(BaseCommand):
    help = (
        "Run a plugin's tool on one or more files (one job per file) through the same service "
        "as POST /v1/analyze-execution, with a progress bar and a summary table. Exit status: "
        "0 all succeeded, 1 a job failed, 2 bad usage or input, 3 plugin unavailable, "
        "4 service unavailable (database, Redis, worker), 5 still running when the wait ended, "
        "130 interrupted."
    )

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        """The parser, accepting FILE arguments after options too (`analyze ocr --tool x a b`)."""
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        setattr(parser, "parse_args", parser.parse_intermixed_args)  # noqa: B010
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("plugin", help="plugin name (see manage.py plugins list)")
        parser.add_argument(
            "files", nargs="*", metavar="FILE", help="input files; none: one job without input"
        )
        parser.add_argument("--tool", help="tool name (default: the plugin's first tool)")
        parser.add_argument(
            "--args", dest="args_json", metavar="JSON", help="tool arguments: JSON or @file.json"
        )
        parser.add_argument("--mime-type", help="MIME type of the files (default: detected)")
        parser.add_argument(
            "--timeout",
            type=positive_seconds,
            metavar="S",
            help="lower the plugin's soft time limit to S seconds (never raises it)",
        )
        parser.add_argument(
            "--async",
            dest="run_async",
            action="store_true",
            help="queue the jobs and print their ids without waiting",
        )
        parser.add_argument(
            "--json",
            dest="as_json",
            action="store_true",
            help="print the jobs as JSON (as GET /v1/jobs/{id})",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        """Validate every input, submit one job per file, wait, print; exit with cli's codes."""
        cli.run_command(lambda: self._run(**options))

    def _run(
        self,
        *,
        plugin: str,
        files: list[str],
        tool: str | None,
        args_json: str | None,
        mime_type: str | None,
        timeout: float | None,
        run_async: bool,
        as_json: bool,
        **_: Any,
    ) -> int:
        tool_args = parse_args_json(args_json)
        out = cli.console(cli.raw_stream(self.stdout))
        progress_out = cli.console(cli.raw_stream(self.stderr))
        request: dict[str, Any] = {
            "plugin_name": plugin,
            "tool": tool,
            "args": tool_args,
            "timeout_s": timeout,
            "mime_type": mime_type,
        }
        # Everything is checked before the first job is queued: the request, then each file
        # (read here and again when submitted, so that only one file is in memory at a time).
        analysis_validate(**{**request, "mime_type": None}, file_bytes=None)
        for name in files:
            try:
                analysis_validate(**request, file_bytes=read_input(name))
            except WardenError as exc:
                raise cli.fail(f"{name}: {exc.message}", cli.code_for_rejection(exc)) from None
        inputs: list[str | None] = list(files) or [None]  # no file: one job without input

        jobs: list[tuple[str, Job]] = []
        rejected: WardenError | None = None
        with Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=progress_out,
            disable=not progress_out.is_terminal,
        ) as progress:
            task = progress.add_task(f"{plugin}: queueing", total=len(inputs))
            try:
                for source in inputs:
                    data = read_input(source) if source is not None else None
                    try:
                        job = job_submit(**request, file_bytes=data, wait=not run_async)
                    except WardenError as exc:  # broker or worker gone: stop here
                        rejected = exc
                        break
                    jobs.append((source or "-", job))
                    progress.advance(task)
                if not run_async:
                    progress.update(task, completed=0, description=f"{plugin}: running")
                    for i, (name, job) in enumerate(jobs):
                        wait_s = job.hard_timeout_s + settings.WARDEN_SYNC_WAIT_MARGIN_S
                        job_wait(job=job, timeout_s=wait_s)
                        job.refresh_from_db()
                        jobs[i] = (name, job)
                        progress.advance(task)
            except KeyboardInterrupt:
                progress.stop()
                pending = [str(j.pk) for _, j in jobs if not j.is_terminal]
                self.stderr.write(
                    f"Interrupted; {len(pending)} job(s) keep running: {' '.join(pending)} "
                    "(manage.py jobs show ID / jobs cancel ID)"
                )
                return cli.EXIT_INTERRUPTED

        if rejected is not None and not jobs:
            raise cli.fail(rejected.message, cli.code_for_rejection(rejected))
        codes = [cli.code_for_job(job) for _, job in jobs] if not run_async else []
        if as_json:
            out.print_json(data=[cli.job_json(job) for _, job in jobs])
        else:
            out.print(self._summary(plugin, jobs, run_async))
        if rejected is not None:
            self.stderr.write(f"Stopped after {len(jobs)} job(s): {rejected.message}")
            codes.append(cli.code_for_rejection(rejected))
        return cli.worst(codes)

    @staticmethod
    def _summary(plugin: str, jobs: list[tuple[str, Job]], queued_only: bool) -> Table:
        table = Table(title=f"{plugin}: {len(jobs)} job(s)")
        table.add_column("File", overflow="fold")
        table.add_column("Job")
        table.add_column("Status")
        table.add_column("Result / error", overflow="fold")
        table.add_column("Time (ms)", justify="right")
        for name, job in jobs:
            table.add_row(
                name,
                str(job.pk),
                cli.status_text(job.status),
                "" if queued_only else cli.outcome_text(job),
                f"{job.execution_time_ms:.1f}" if job.execution_time_ms is not None else "-",
            )
        if not queued_only:
            done = sum(job.status == "SUCCESS" for _, job in jobs)
            table.caption = f"{done} succeeded, {len(jobs) - done} did not"
        return table
