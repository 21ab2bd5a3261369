"""ToolRunner: the only code that calls plugin code at execution time.

It runs inside a Celery worker child: validate the input, load the plugin (cached per child, and
not timed against the job's limits), run the tool inside the job's scope (its process tree, memory
watchdog, captured output, soft time limit and the slot the main process uses to enforce the hard
limit), validate the output, and, in a `finally`, record the job's end and the plugin's metrics.
Whatever the plugin raises becomes a typed error envelope.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback as tb
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

import warden
from plugins_app.loader import call_validate, instantiate, load_plugin_class
from plugins_app.models import PluginHost, PluginRecord
from plugins_app.selectors import plugin_host_entry
from project.errors import WardenError
from project.storable import storable_text

from .containment import JobTree, worker_containment
from .models import Job
from .output import OutputCapture
from .services import job_finish, job_input_read, memory_error, scope_error, timeout_error
from .slots import RunningSlot, slot_cancelled
from .validation import args_validate, output_validate, plugin_admit_here, tool_resolve
from .watchdog import MemoryWatch
from .workers import worker_host_name

logger = logging.getLogger(__name__)
MAX_TRACEBACK = 20_000


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    instance: Any


def _plugin_key(plugin: PluginRecord, entry: PluginHost) -> tuple[Any, ...]:
    # A re-probe on this host (a new probed_at) reloads the plugin; other hosts' syncs do not.
    return (plugin.pk, entry.location, entry.version, entry.probed_at)


class ToolRun:
    """The scope of one tool run in the worker child (context manager).

    Entered: the job's slot is held (the main process may stop the child at the hard limit or on
    cancel), fds 1/2 are captured, the job's process tree is contained, the memory watchdog runs and
    a SIGALRM timer raises SoftTimeLimitExceeded at the soft limit. Exited in reverse order: the
    timer is disarmed, every process the job started is killed, the output tail is kept, the slot
    is released. Raises OSError when Warden itself cannot set the scope up.
    """

    def __init__(self, job: Job, *, address_limit: bool) -> None:
        self.job = job
        self.job_id = str(job.pk)
        self.address_limit = address_limit
        self.elapsed_s = 0.0
        self.output_text = ""
        self.oom_kills = 0
        self.watch: MemoryWatch | None = None
        self._tree: JobTree | None = None
        self._output: OutputCapture | None = None
        self._stack = ExitStack()
        self._armed = False
        self._inside = False
        self.fired = False  # the soft-limit alarm went off
        self._started = 0.0
        self._saved_handler: Any = None

    @property
    def overran(self) -> bool:
        """Whether the tool ran past its soft limit."""
        return self.elapsed_s >= self.job.timeout_s

    def __enter__(self) -> ToolRun:
        run_dir = settings.WARDEN_RUN_DIR
        containment = worker_containment()
        tree = containment.job(self.job_id, limit_mb=self.job.memory_mb)
        now = time.monotonic()  # CLOCK_MONOTONIC: the main process compares with its own reading
        try:
            self._stack.enter_context(
                RunningSlot(
                    run_dir,
                    self.job_id,
                    {
                        "soft_deadline": now + self.job.timeout_s,
                        "hard_deadline": now + self.job.timeout_s + settings.WARDEN_HARD_GRACE_S,
                        **tree.slot_info(),
                    },
                )
            )
            self._output = self._stack.enter_context(
                OutputCapture(run_dir, self.job_id, settings.WARDEN_JOB_OUTPUT_KB * 1024)
            )
            self._tree = self._stack.enter_context(tree)
            self.watch = self._stack.enter_context(
                MemoryWatch(
                    job_id=self.job_id,
                    limit_mb=self.job.memory_mb,
                    run_dir=run_dir,
                    poll_s=settings.WARDEN_MEMORY_POLL_S,
                    address_limit=self.address_limit,
                    tree=self._tree,
                    measured=containment.mode,
                    output=self._output,
                )
            )
            if slot_cancelled(run_dir, self.job_id):
                raise WardenError(
                    "Cancelled",
                    f"Job {self.job_id} was cancelled while RUNNING",
                    details={"cancelled_while": "RUNNING"},
                    plugin=self.job.plugin_name,
                )
        except WardenError:
            self._stack.close()
            raise
        except Exception as exc:  # Warden's own failure (run dir, cgroup, /proc): not the plugin's
            self._stack.close()
            raise scope_error(self.job, "prepare", exc) from exc
        except BaseException:
            self._stack.close()
            raise
        self._saved_handler = signal.signal(signal.SIGALRM, self._on_alarm)
        self._started = time.monotonic()
        self._armed = True
        signal.setitimer(signal.ITIMER_REAL, self.job.timeout_s)  # last: nothing left to undo
        return self

    def call(self, function: Callable[..., Any], *args: Any) -> Any:
        """Call the plugin inside the scope; only here may the soft limit interrupt it (an alarm
        that goes off in Warden's own set-up or clean-up is noted, never raised there)."""
        self._inside = True
        try:
            if self.fired:
                raise SoftTimeLimitExceeded()
            return function(*args)
        finally:
            self._inside = False

    def _on_alarm(self, signum: int, frame: FrameType | None) -> None:
        if self._armed:
            self.fired = True
            if self._inside:
                raise SoftTimeLimitExceeded()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._armed = False  # first: a late alarm must not interrupt the clean-up below
        self.elapsed_s = time.monotonic() - self._started
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, self._saved_handler or signal.SIG_DFL)
        try:
            self._stack.__exit__(exc_type, exc, tb)
        except Exception as cleanup:  # Warden's own failure while cleaning up
            raise scope_error(self.job, "clean up after", cleanup) from cleanup
        finally:
            if self._output is not None:
                self.output_text = self._output.text
            if self._tree is not None:
                self.oom_kills = self._tree.oom_kills()


@dataclass(frozen=True)
class JobEnd:
    """How `ToolRunner.execute` ended a job: "SUCCESS", "FAILED", or "SKIPPED" (someone else
    ended it first, e.g. a cancel), with a successful result of at most WARDEN_INLINE_RESULT_KB
    (else None), as stored in the job row."""

    status: str
    result: dict[str, Any] | None = None
    execution_time_ms: float | None = None

    def message(self, *, inline: bool) -> dict[str, Any]:
        """The task's return value. With `inline` (a synchronous caller waits for it), a small
        successful result travels back in it too, so that the caller need not read the job row,
        which holds it already."""
        if not inline or self.result is None:
            return {"status": self.status, "inline": False}
        return {
            "status": self.status,
            "inline": True,
            "result": self.result,
            "execution_time_ms": self.execution_time_ms,
        }


class ToolRunner:
    """Runs one claimed job; keeps loaded plugin instances for the life of the worker child."""

    _loaded: dict[str, _Loaded] = {}

    def execute(self, job: Job) -> JobEnd:
        """Run `job` (already RUNNING) to its end and record it; return how it ended. Never
        raises for anything the plugin does (a hard kill or crash is recorded by the worker's
        main process instead)."""
        result: dict[str, Any] | None = None
        size = 0
        error: WardenError | None = None
        trace = ""
        run: ToolRun | None = None
        try:
            plugin = job.plugin
            if plugin is None:
                raise WardenError("PluginNotFound", f"No plugin named '{job.plugin_name}'")
            host = worker_host_name()
            entry = plugin_host_entry(plugin_id=plugin.pk, host=host)
            plugin_admit_here(plugin, entry, host)
            assert entry is not None  # admitted
            tool = tool_resolve(plugin, job.tool)
            args_validate(plugin, tool, job.args)
            instance = self._instance(plugin, entry)  # loading is not timed against job limits
            call_args = self._call_args(job)
            run = self._scope(job, plugin)
            with run:
                output = run.call(instance.run, job.tool, call_args)
            self._check_run(job, run)
            result, size = output_validate(plugin, tool, output, settings.WARDEN_MAX_RESULT_MB)
        except BaseException as exc:
            error, trace = self._classify(job, run, exc)
        finally:
            if error is None and result is None:  # interrupted inside this very method
                error = WardenError(
                    "PluginCrashed",
                    f"Tool '{job.tool}' of plugin '{job.plugin_name}' was interrupted",
                    details={"exception": type(sys.exc_info()[1]).__name__},
                    plugin=job.plugin_name,
                )
            watch = run.watch if run is not None else None
            execution_ms = run.elapsed_s * 1000 if run is not None and watch else None
            ended = job_finish(
                job_id=str(job.pk),
                result=result,
                error=error,
                traceback=storable_text(trace),
                execution_ms=execution_ms,
                peak_memory_mb=watch.peak_growth_mb if watch is not None else None,
                output=run.output_text if run is not None else "",
                plugin=job.plugin,
                job=job,
            )
        if error is not None or not ended:
            return JobEnd("FAILED" if ended else "SKIPPED")
        if size > settings.WARDEN_INLINE_RESULT_KB * 1024:
            return JobEnd("SUCCESS")
        stored_ms = round(execution_ms, 3) if execution_ms is not None else None  # as job_finish
        return JobEnd("SUCCESS", result, stored_ms)

    @staticmethod
    def _scope(job: Job, plugin: PluginRecord) -> ToolRun:
        """The run's scope. The address-space backstop is for CPU plugins in tree mode only:
        cgroups bound memory better, and helpers (Java, Node) inherit an RLIMIT_AS they cannot
        start under."""
        tree_mode = worker_containment().slot is None
        return ToolRun(job, address_limit=tree_mode and not plugin.requires_gpu)

    @staticmethod
    def _check_run(job: Job, run: ToolRun) -> None:
        """Fail a tool that returned normally after the kernel killed one of its processes for
        memory, or after its soft limit (a plugin that swallowed the interruption)."""
        peak = run.watch.peak_growth_mb if run.watch is not None else None
        if run.oom_kills:
            raise memory_error(job, kind="oom", peak_mb=peak)
        if run.overran:
            raise timeout_error(job, kind="soft", late=True)

    @staticmethod
    def _classify(job: Job, run: ToolRun | None, exc: BaseException) -> tuple[WardenError, str]:
        """Map whatever ended the call to the job's error and its stored traceback."""
        trace = tb.format_exc()[-MAX_TRACEBACK:]
        if isinstance(exc, WardenError):
            return exc, ""
        watch = run.watch if run is not None else None
        if run is not None and watch is not None:  # the tool ran: limits decide first
            if run.oom_kills:
                return memory_error(job, kind="oom", peak_mb=watch.peak_growth_mb), trace
            if isinstance(exc, MemoryError) and watch.rlimit_hit:  # numpy's subclass too
                return memory_error(job, kind="address-space", peak_mb=watch.peak_growth_mb), trace
            if isinstance(exc, SoftTimeLimitExceeded) or run.overran:
                late = not isinstance(exc, SoftTimeLimitExceeded)
                return timeout_error(job, kind="soft", late=late), ""
        if isinstance(exc, warden.InvalidInput):
            return (
                WardenError(
                    "ValidationError",
                    storable_text(str(exc)) or "The plugin rejected the input",
                    details={"raised_by": "plugin"},
                    plugin=job.plugin_name,
                ),
                "",
            )
        if isinstance(exc, SystemExit | KeyboardInterrupt):
            code = exc.code if isinstance(exc, SystemExit) else None
            return (
                WardenError(
                    "PluginCrashed",
                    f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised {type(exc).__name__}"
                    + (f" (exit code {code})" if isinstance(exc, SystemExit) else ""),
                    details={"exception": type(exc).__name__, "exit_code": code},
                    plugin=job.plugin_name,
                ),
                trace,
            )
        if not isinstance(exc, Exception):
            return (
                WardenError(
                    "PluginCrashed",
                    f"Tool '{job.tool}' of plugin '{job.plugin_name}' was interrupted",
                    details={"exception": type(exc).__name__},
                    plugin=job.plugin_name,
                ),
                trace,
            )
        return (
            WardenError(
                "PluginError",
                f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised "
                f"{type(exc).__name__}: {storable_text(str(exc))}",
                details={"exception": type(exc).__name__},
                plugin=job.plugin_name,
                # The exception's text often echoes the input: not in the public health reason.
                reason=f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised "
                f"{type(exc).__name__}",
            ),
            trace,
        )

    def _instance(self, plugin: PluginRecord, entry: PluginHost) -> Any:
        """Return this child's instance of the plugin, importing and initialising it once from
        where this host has it."""
        cached = self._loaded.get(plugin.name)
        key = _plugin_key(plugin, entry)
        if cached is not None and cached.key == key:
            return cached.instance
        folder = entry.location if entry.source == "directory" else None
        try:
            cls = load_plugin_class(
                name=plugin.name,
                folder=folder,
                entrypoint=plugin.entrypoint,
                source=entry.source,
                fresh=cached is not None,
            )
            instance = instantiate(cls)
            call_validate(instance)
        except Exception as exc:
            raise WardenError(
                "PluginError",
                f"Plugin '{plugin.name}' failed to load in the worker: InitError: "
                f"{type(exc).__name__}: {storable_text(str(exc))}",
                details={"exception": type(exc).__name__, "stage": "load"},
                plugin=plugin.name,
            ) from exc
        torch = sys.modules.get("torch")
        if torch is not None:
            torch.set_num_threads(1)  # 2 cores, several children: no oversubscription
        self._loaded[plugin.name] = _Loaded(key, instance)
        return instance

    @staticmethod
    def _call_args(job: Job) -> dict[str, Any]:
        """The tool's args, with the stored input file added; an unreadable input is Warden's
        failure (ServiceUnavailable), not the plugin's."""
        args = dict(job.args)
        try:
            data = job_input_read(job)
        except OSError as exc:
            raise WardenError(
                "ServiceUnavailable",
                f"The worker could not read the input of job {job.pk}: {type(exc).__name__}",
                details={"exception": type(exc).__name__},
                plugin=job.plugin_name,
            ) from exc
        if data is not None:
            args["image_bytes"] = data
            args["mime_type"] = job.input_mime_type or None
        return args
