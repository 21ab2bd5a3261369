"""Isolated probing: each plugin's import, __init__ and validate() run in a child process.

A probe that raises, crashes, hangs or allocates without bound marks only its own plugin FAILED;
the caller never imports plugin code. Probes of many plugins run in parallel.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from project.storable import storable_text

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Pids of the probe processes this process is running (a worker's orphan sweeper spares them).
ACTIVE_PROBES: set[int] = set()
PROBE_CHILD = "from plugins_app.probe_child import run; run()"  # see probe_child.py
POLL_S = 0.01
STAGE_LABELS = {
    "import": "import",
    "init": "__init__",
    "validate": "validate()",
    "describe": "reading its tools",
}
ERROR_PREFIX = {
    "import": "ImportError",
    "init": "InitError",
    "validate": "ValidationFailed",
    "describe": "InitError",
}
FORGESYTE_HINT = (
    "this ForgeSyte plugin's class must set `tools` (a dict of tool id to handler or "
    "{'handler': ...}) with run_tool(tool_name, args), or implement analyze(image_bytes, "
    "options); check the entry point in the package's pyproject.toml"
)


@dataclass(frozen=True)
class ProbeSpec:
    """What to probe: the plugin as the loader needs it."""

    name: str
    folder: str | None
    entrypoint: str
    source: str


@dataclass(frozen=True)
class ProbeResult:
    """The outcome of one probe: ok, or a precise reason (and hint, traceback)."""

    ok: bool
    reason: str | None = None
    hint: str | None = None
    traceback: str = ""
    duration_ms: float = 0.0
    # What a ForgeSyte plugin's class says about itself (tools, name, ...), read in the probe.
    facts: dict[str, Any] | None = None


def signal_name(number: int) -> str:
    """Return a signal's name ("SIGSEGV"), or its number as text when it has none."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


def _parse(lines: str) -> tuple[str, dict[str, object] | None]:
    stage, outcome = "import", None
    for line in lines.splitlines():
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if "stage" in message and "ok" not in message:
            stage = str(message["stage"])
        elif "ok" in message:
            outcome = message
    return stage, outcome


def _failure_reason(spec: ProbeSpec, outcome: dict[str, object]) -> tuple[str, str]:
    stage = str(outcome["stage"])
    exc_type = str(outcome["exc_type"])
    message = storable_text(str(outcome["message"]).strip())
    if exc_type == "EntrypointError" and spec.source == "forgesyte":
        return f"EntrypointError: {message}", FORGESYTE_HINT
    if exc_type == "EntrypointError":
        return (
            f"EntrypointError: {message}",
            "fix 'entrypoint' in manifest.json: it must be 'module:Class' naming a class with a "
            "run(tool, args) method",
        )
    if exc_type == "HostModuleImportError":
        return (
            f"ImportError: {message}",
            f"plugin '{spec.name}' only runs inside the ForgeSyte server: ask its author for a "
            "release with a fallback for its `app` imports (or patch them), then re-probe",
        )
    if exc_type == "ForgeSyteFormatError":
        return f"{ERROR_PREFIX.get(stage, 'ProbeError')}: {message}", FORGESYTE_HINT
    prefix = ERROR_PREFIX.get(stage, "ProbeError")
    detail = f"{exc_type}: {message}" if message else exc_type
    where = {"import": "importing the module", "init": "__init__()", "validate": "validate()"}
    hint = (
        f"fix the {exc_type} raised by {where.get(stage, stage)} of plugin '{spec.name}', then "
        f"re-probe; the traceback is in `manage.py plugins check {spec.name}` and the admin"
    )
    return f"{prefix}: {detail}", hint


def _supervise(
    proc: subprocess.Popen[bytes],
    started: float,
    timeout_s: float,
    memory_mb: int,
    out_file: Any,
    err_file: Any,
) -> tuple[str, dict[str, object] | None, str, str | None, float]:
    """Watch a probe process until it ends (killing its group past the time or memory limit);
    return (stage reached, outcome, stderr tail, what it was killed for, peak RSS MB)."""
    killed_for: str | None = None
    peak_mb = 0.0
    try:
        handle: psutil.Process | None = psutil.Process(proc.pid)
    except psutil.Error:
        handle = None
    while proc.poll() is None:
        if time.monotonic() - started > timeout_s:
            killed_for = "timeout"
        elif handle is not None:
            try:
                peak_mb = max(peak_mb, handle.memory_info().rss / 2**20)
            except psutil.Error:
                pass
            if peak_mb > memory_mb:
                killed_for = "memory"
        if killed_for:
            _kill_group(proc)
            break
        try:
            proc.wait(timeout=POLL_S)  # returns the moment the probe ends
        except subprocess.TimeoutExpired:
            pass
    proc.wait()
    out_file.seek(0)
    stage, outcome = _parse(out_file.read().decode("utf-8", "replace"))
    err_file.seek(0)
    stderr_tail = storable_text(err_file.read()[-4000:].decode("utf-8", "replace"))
    return stage, outcome, stderr_tail, killed_for, peak_mb


def probe_args(spec: ProbeSpec) -> list[str]:
    """The probe child's arguments for `spec` (probe_child.main)."""
    return [spec.name, spec.folder or "", spec.entrypoint, spec.source]


def probe_one(spec: ProbeSpec, *, timeout_s: float, memory_mb: int) -> ProbeResult:
    """Probe one plugin in a fresh process; never raises for anything the plugin does."""
    started = time.monotonic()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(PROJECT_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("OMP_NUM_THREADS", "1")
    with tempfile.TemporaryFile() as out_file, tempfile.TemporaryFile() as err_file:
        proc = subprocess.Popen(
            [sys.executable, "-P", "-c", PROBE_CHILD, *probe_args(spec)],
            stdin=subprocess.DEVNULL,
            stdout=out_file,
            stderr=err_file,
            cwd=str(PROJECT_ROOT),
            env=env,
            start_new_session=True,
        )
        ACTIVE_PROBES.add(proc.pid)
        try:
            stage, outcome, stderr_tail, killed_for, peak_mb = _supervise(
                proc, started, timeout_s, memory_mb, out_file, err_file
            )
        finally:
            ACTIVE_PROBES.discard(proc.pid)
    duration_ms = (time.monotonic() - started) * 1000
    label = STAGE_LABELS.get(stage, stage)
    if killed_for == "timeout":
        return ProbeResult(
            False,
            f"{label} did not finish within the {timeout_s:g} s probe timeout "
            "(probe process killed)",
            f"make {label} of plugin '{spec.name}' return promptly (load heavy models lazily), "
            "or raise WARDEN_PROBE_TIMEOUT_S",
            stderr_tail,
            duration_ms,
        )
    if killed_for == "memory":
        return ProbeResult(
            False,
            f"{label} exceeded the probe memory limit of {memory_mb} MB "
            f"(RSS reached {peak_mb:.0f} MB; probe process killed)",
            f"reduce the memory plugin '{spec.name}' uses at {label}, or raise "
            "WARDEN_PROBE_MEMORY_MB",
            stderr_tail,
            duration_ms,
        )
    if outcome is not None and outcome.get("ok"):
        facts = outcome.get("facts")
        return ProbeResult(
            True, duration_ms=duration_ms, facts=facts if isinstance(facts, dict) else None
        )
    if outcome is not None:
        reason, hint = _failure_reason(spec, outcome)
        trace = storable_text(str(outcome.get("traceback", "")))
        return ProbeResult(False, reason, hint, trace, duration_ms)
    code = proc.returncode
    how = f"signal {signal_name(-code)}" if code < 0 else f"exit code {code}"
    return ProbeResult(
        False,
        f"{label} crashed the probe process ({how})",
        f"plugin '{spec.name}' killed its process during {label} (native crash, os._exit or "
        "the kernel OOM killer); run it by hand to see why",
        stderr_tail,
        duration_ms,
    )


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def probe_many(
    specs: Sequence[ProbeSpec],
    *,
    timeout_s: float,
    memory_mb: int,
    concurrency: int,
    on_done: Callable[[ProbeSpec, ProbeResult], None] | None = None,
) -> dict[str, ProbeResult]:
    """Probe every spec in parallel; return results by plugin name."""
    results: dict[str, ProbeResult] = {}

    def work(spec: ProbeSpec) -> None:
        result = probe_one(spec, timeout_s=timeout_s, memory_mb=memory_mb)
        results[spec.name] = result
        if on_done is not None:
            on_done(spec, result)

    with ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="probe") as pool:
        list(pool.map(work, specs))
    return results
