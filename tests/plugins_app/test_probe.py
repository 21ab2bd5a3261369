"""Isolated probing: a plugin that raises, crashes, hangs or eats memory fails only itself."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import psutil

from plugins_app.models import FaultOrigin, PluginRecord, PluginState
from plugins_app.probe import ProbeSpec, probe_one
from tests.harness import wait_until
from tests.plugins_app.faults import FAULTS, copy_plugins, record_at

CRASH_HINT = (
    "plugin '{name}' killed its process during import (native crash, os._exit or the kernel OOM "
    "killer); run it by hand to see why"
)
ENTRYPOINT_HINT = (
    "fix 'entrypoint' in manifest.json: it must be 'module:Class' naming a class with a "
    "run(tool, args) method"
)


def sync_fault(sync_plugins: Any, tmp_path: Path, fault: str) -> PluginRecord:
    """Sync `fault` together with a healthy plugin; check the caller and the neighbour survived."""
    copy_plugins(tmp_path, fault, "healthy")
    pid = os.getpid()

    outcomes = sync_plugins(tmp_path)

    assert os.getpid() == pid
    assert f"warden_plugins.{fault}" not in sys.modules  # the caller never imported plugin code
    assert {o.name for o in outcomes} == {fault, "healthy"}
    healthy = record_at(tmp_path / "healthy")
    assert (healthy.state, healthy.reason, healthy.probe_traceback) == (
        PluginState.INITIALIZED,
        None,
        "",
    )
    return record_at(tmp_path / fault)


def assert_load_failure(record: PluginRecord) -> None:
    """What every probe failure leaves on the record, besides its reason."""
    assert record.state == PluginState.FAILED
    assert record.fault_origin == FaultOrigin.LOAD
    assert record.loaded_at is None
    assert record.probed_at is not None
    assert record.probe_duration_ms is not None and record.probe_duration_ms > 0
    assert record.accepting_jobs is False
    assert (record.success_count, record.error_count, record.consecutive_failures) == (0, 0, 0)


def test_it_marks_an_import_error_failed_with_its_traceback(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "import_error")

    assert (
        record.reason
        == "ImportError: ModuleNotFoundError: No module named 'nonexistent_module_xyz'"
    )
    assert record.hint == (
        "fix the ModuleNotFoundError raised by importing the module of plugin 'import_error', "
        "then re-probe; the traceback is in `manage.py plugins check import_error` and the admin"
    )
    assert record.probe_traceback.startswith("Traceback (most recent call last):\n")
    assert f'{(tmp_path / "import_error").resolve()}/plugin.py", line 3, in <module>' in (
        record.probe_traceback
    )
    assert record.probe_traceback.endswith(
        "ModuleNotFoundError: No module named 'nonexistent_module_xyz'\n"
    )
    assert_load_failure(record)


def test_it_marks_a_segfault_at_import_failed(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(sync_plugins, tmp_path, "import_segfault")

    assert record.reason == "import crashed the probe process (signal SIGSEGV)"
    assert record.hint == CRASH_HINT.format(name="import_segfault")
    assert_load_failure(record)


def test_it_marks_os_exit_at_import_failed_with_the_exit_code(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "import_exit")

    assert record.reason == "import crashed the probe process (exit code 7)"
    assert record.hint == CRASH_HINT.format(name="import_exit")
    assert_load_failure(record)


def test_it_marks_system_exit_at_import_failed(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(sync_plugins, tmp_path, "import_system_exit")

    assert record.reason == "ImportError: SystemExit: 3"
    assert record.probe_traceback.endswith("raise SystemExit(3)\nSystemExit: 3\n")
    assert_load_failure(record)


def test_it_kills_a_probe_that_hangs_at_import(
    sync_plugins: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WARDEN_PROBE_TIMEOUT_S = 2

    record = sync_fault(sync_plugins, tmp_path, "import_hang")

    assert (
        record.reason == "import did not finish within the 2 s probe timeout (probe process killed)"
    )
    assert record.hint == (
        "make import of plugin 'import_hang' return promptly (load heavy models lazily), "
        "or raise WARDEN_PROBE_TIMEOUT_S"
    )
    assert record.probe_duration_ms >= 2000  # killed at its limit (it never returns by itself)
    assert_load_failure(record)


def test_it_kills_the_processes_a_hanging_plugin_started(
    sync_plugins: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WARDEN_PROBE_TIMEOUT_S = 2

    record = sync_fault(sync_plugins, tmp_path, "import_hang_child")

    assert (
        record.reason == "import did not finish within the 2 s probe timeout (probe process killed)"
    )
    child_pid = int((tmp_path / "import_hang_child" / "child.pid").read_text())

    def child_gone() -> bool:
        try:
            return psutil.Process(child_pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    wait_until(child_gone, 5, f"the plugin's child process {child_pid} to be killed")


def test_it_kills_a_probe_that_allocates_without_bound(
    sync_plugins: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WARDEN_PROBE_MEMORY_MB = 200

    record = sync_fault(sync_plugins, tmp_path, "import_alloc")

    match = re.fullmatch(
        r"import exceeded the probe memory limit of 200 MB \(RSS reached (\d+) MB; "
        r"probe process killed\)",
        record.reason or "",
    )
    assert match is not None, record.reason
    assert int(match[1]) >= 200
    assert record.hint == (
        "reduce the memory plugin 'import_alloc' uses at import, or raise WARDEN_PROBE_MEMORY_MB"
    )
    assert_load_failure(record)


def test_it_marks_an_init_exception_failed(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(sync_plugins, tmp_path, "init_error")

    assert record.reason == "InitError: ValueError: model path not configured"
    assert record.hint == (
        "fix the ValueError raised by __init__() of plugin 'init_error', then re-probe; the "
        "traceback is in `manage.py plugins check init_error` and the admin"
    )
    assert record.probe_traceback.endswith(
        '    raise ValueError("model path not configured")\nValueError: model path not configured\n'
    )
    assert_load_failure(record)


def test_it_reports_a_failure_of_a_plugin_that_shadows_a_standard_module(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "shadows_stdlib")

    assert record.reason == "InitError: ValueError: model path not configured"
    assert record.probe_traceback.endswith("ValueError: model path not configured\n")


def test_it_marks_a_validate_exception_failed(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(sync_plugins, tmp_path, "validate_error")

    assert record.reason == "ValidationFailed: RuntimeError: license file /etc/xyz.lic not found"
    assert "in validate\n" in record.probe_traceback
    assert record.probe_traceback.endswith("RuntimeError: license file /etc/xyz.lic not found\n")
    assert_load_failure(record)


def test_it_marks_an_entrypoint_naming_a_missing_class_failed(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "missing_class")

    assert record.reason == (
        "EntrypointError: entrypoint 'plugin:Missing': module 'plugin' has no class 'Missing'"
    )
    assert record.hint == ENTRYPOINT_HINT
    assert_load_failure(record)


def test_it_marks_an_entrypoint_naming_a_missing_module_failed(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "missing_module")

    assert record.reason == (
        "EntrypointError: entrypoint 'nowhere:Plugin': no module 'nowhere' in plugin folder "
        f"{(tmp_path / 'missing_module').resolve()}"
    )
    assert record.hint == ENTRYPOINT_HINT
    assert_load_failure(record)


def test_it_marks_a_class_without_run_failed(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(sync_plugins, tmp_path, "no_run")

    assert record.reason == (
        "EntrypointError: entrypoint 'plugin:Plugin': class 'Plugin' has no run() method"
    )
    assert_load_failure(record)


def test_it_keeps_the_result_channel_clean_when_a_plugin_prints(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "prints_stdout")

    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert record.probe_traceback == ""


def test_it_does_not_wait_for_threads_a_plugin_leaves_running(
    sync_plugins: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WARDEN_PROBE_TIMEOUT_S = 5

    record = sync_fault(sync_plugins, tmp_path, "import_thread")

    assert (record.state, record.reason) == (PluginState.INITIALIZED, None)
    assert record.probe_duration_ms < 5000


def test_it_probes_a_healthy_plugin_in_a_child_process() -> None:
    spec = ProbeSpec("healthy", str(FAULTS / "healthy"), "plugin:Plugin", "directory")

    result = probe_one(spec, timeout_s=10, memory_mb=400)

    assert (result.ok, result.reason, result.hint, result.traceback) == (True, None, None, "")
    assert "warden_plugins.healthy" not in sys.modules


def test_it_keeps_what_a_crashing_plugin_wrote_to_stderr(sync_plugins: Any, tmp_path: Path) -> None:
    copy_plugins(tmp_path, "import_exit")
    module = tmp_path / "import_exit" / "plugin.py"
    module.write_text(
        'import sys\nprint("loading weights from /models", file=sys.stderr, flush=True)\n'
        + module.read_text()
    )

    sync_plugins(tmp_path)

    record = record_at(tmp_path / "import_exit")
    assert record.reason == "import crashed the probe process (exit code 7)"
    assert record.probe_traceback == "loading weights from /models\n"
