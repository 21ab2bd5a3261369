"""ToolRunner: the only code that calls plugin code at execution time.

It runs inside a Celery worker child: validate the input, load the plugin (cached per child),
run the tool under the memory watchdog, validate the output, and, in a `finally`, record the job's
end and the plugin's metrics. Whatever the plugin raises becomes a typed error envelope.
"""

from __future__ import annotations

import logging
import sys
import time
import traceback as tb
from dataclasses import dataclass
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings

import warden
from plugins_app.loader import call_validate, instantiate, load_plugin_class
from plugins_app.models import PluginRecord
from project.db import soft_limit_deferred
from project.errors import WardenError
from project.storable import storable_text

from .models import Job
from .services import job_finish
from .validation import args_validate, output_validate, plugin_admit, tool_resolve
from .watchdog import MemoryWatch

logger = logging.getLogger(__name__)
MAX_TRACEBACK = 20_000


@dataclass
class _Loaded:
    key: tuple[Any, ...]
    instance: Any


def _plugin_key(plugin: PluginRecord) -> tuple[Any, ...]:
    return (plugin.pk, plugin.location, plugin.version, plugin.probed_at)


class ToolRunner:
    """Runs one claimed job; keeps loaded plugin instances for the life of the worker child."""

    _loaded: dict[str, _Loaded] = {}

    def execute(self, job: Job) -> bool:
        """Run `job` (already RUNNING) to its end; return whether it succeeded. Never raises
        for anything the plugin does (a hard kill or crash is recorded by the worker's main
        process instead)."""
        started = time.monotonic()
        result: dict[str, Any] | None = None
        error: WardenError | None = None
        trace = ""
        watch: MemoryWatch | None = None
        try:
            plugin = job.plugin
            if plugin is None:
                raise WardenError("PluginNotFound", f"No plugin named '{job.plugin_name}'")
            plugin_admit(plugin)
            tool = tool_resolve(plugin, job.tool)
            args_validate(plugin, tool, job.args)
            instance = self._instance(plugin)
            call_args = self._call_args(job)
            watch = MemoryWatch(
                job_id=str(job.pk),
                limit_mb=job.memory_mb,
                run_dir=settings.WARDEN_RUN_DIR,
                poll_s=settings.WARDEN_MEMORY_POLL_S,
                address_limit=not plugin.requires_gpu,
            )
            started = time.monotonic()
            with watch:
                output = instance.run(job.tool, call_args)
            result = output_validate(plugin, tool, output)
        except SoftTimeLimitExceeded:
            error = WardenError(
                "TimeoutError",
                f"Tool '{job.tool}' of plugin '{job.plugin_name}' exceeded its "
                f"{job.timeout_s:g} s time limit",
                details={"limit_s": job.timeout_s, "kind": "soft"},
                plugin=job.plugin_name,
            )
        except WardenError as exc:
            error = exc
        except warden.InvalidInput as exc:
            error = WardenError(
                "ValidationError",
                storable_text(str(exc)) or "The plugin rejected the input",
                details={"raised_by": "plugin"},
                plugin=job.plugin_name,
            )
        except MemoryError as exc:
            limited = watch is not None and watch.rlimit_hit
            error = WardenError(
                "MemoryLimitExceeded" if limited else "PluginError",
                f"Tool '{job.tool}' of plugin '{job.plugin_name}' exceeded its "
                f"{job.memory_mb} MB memory limit"
                if limited
                else f"MemoryError: {exc}",
                details={
                    "limit_mb": job.memory_mb,
                    "kind": "address-space",
                    "peak_mb": round(watch.peak_growth_mb, 1) if watch else None,
                },
                plugin=job.plugin_name,
            )
            trace = tb.format_exc()[-MAX_TRACEBACK:]
        except (SystemExit, KeyboardInterrupt) as exc:
            code = exc.code if isinstance(exc, SystemExit) else None
            error = WardenError(
                "PluginCrashed",
                f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised {type(exc).__name__}"
                + (f" (exit code {code})" if isinstance(exc, SystemExit) else ""),
                details={"exception": type(exc).__name__, "exit_code": code},
                plugin=job.plugin_name,
            )
            trace = tb.format_exc()[-MAX_TRACEBACK:]
        except Exception as exc:
            error = WardenError(
                "PluginError",
                f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised "
                f"{type(exc).__name__}: {storable_text(str(exc))}",
                details={"exception": type(exc).__name__},
                plugin=job.plugin_name,
                # The exception's text often echoes the input: not in the public health reason.
                reason=f"Tool '{job.tool}' of plugin '{job.plugin_name}' raised "
                f"{type(exc).__name__}",
            )
            trace = tb.format_exc()[-MAX_TRACEBACK:]
        finally:
            if error is None and result is None:  # a BaseException nobody above expected
                error = WardenError(
                    "PluginCrashed",
                    f"Tool '{job.tool}' of plugin '{job.plugin_name}' was interrupted",
                    details={"exception": type(sys.exc_info()[1]).__name__},
                    plugin=job.plugin_name,
                )
            elapsed_ms = (time.monotonic() - started) * 1000
            with soft_limit_deferred():  # never interrupted mid-transaction (project/db.py)
                job_finish(
                    job_id=str(job.pk),
                    result=result,
                    error=error,
                    traceback=storable_text(trace),
                    execution_ms=elapsed_ms if watch is not None else None,
                    peak_memory_mb=watch.peak_growth_mb if watch is not None else None,
                    plugin=job.plugin,
                )
        return error is None

    def _instance(self, plugin: PluginRecord) -> Any:
        """Return this child's instance of the plugin, importing and initialising it once."""
        cached = self._loaded.get(plugin.name)
        key = _plugin_key(plugin)
        if cached is not None and cached.key == key:
            return cached.instance
        folder = plugin.location if plugin.source == "directory" else None
        try:
            cls = load_plugin_class(
                name=plugin.name,
                folder=folder,
                entrypoint=plugin.entrypoint,
                source=plugin.source,
                fresh=cached is not None,
            )
            instance = instantiate(cls)
            call_validate(instance)
        except SoftTimeLimitExceeded:
            raise
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
        args = dict(job.args)
        if job.input_file:
            with job.input_file.open("rb") as handle:
                args["image_bytes"] = handle.read()
            args["mime_type"] = job.input_mime_type or None
        return args
