"""Dependency checks: anything the host lacks makes a plugin UNAVAILABLE before any import."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

import plugins_app.dependencies as dependencies
from plugins_app.dependencies import Missing, check_model
from plugins_app.models import FaultOrigin, PluginRecord, PluginState
from tests.plugins_app.faults import copy_plugins, record_at

JSON_DIR = Path(json.__file__).resolve().parent
GPU_HINT = (
    "run this plugin on a worker host with an NVIDIA GPU, its driver (nvidia-smi) and a "
    "CUDA build of torch; GPU jobs go to the 'gpu' queue"
)


def edit_manifest(folder: Path, **changes: Any) -> None:
    path = folder / "manifest.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def sync_fault(sync_plugins: Any, tmp_path: Path, fault: str, **manifest: Any) -> PluginRecord:
    """Sync `fault` next to the healthy plugin; return the fault's record."""
    copy_plugins(tmp_path, fault, "healthy")
    if manifest:
        edit_manifest(tmp_path / fault, **manifest)
    sync_plugins(tmp_path)
    return record_at(tmp_path / fault)


def assert_unavailable_and_never_imported(record: PluginRecord, tmp_path: Path) -> None:
    folder = Path(record.location)
    assert record.state == PluginState.UNAVAILABLE
    assert record.fault_origin == FaultOrigin.LOAD
    assert record.accepting_jobs is False
    assert record.loaded_at is None
    assert record.probe_duration_ms is None  # no probe process was started
    assert record.probe_traceback == ""
    assert not (folder / "IMPORTED").exists()
    assert f"warden_plugins.{record.name}" not in sys.modules
    healthy = record_at(tmp_path / "healthy")
    assert (healthy.state, healthy.reason) == (PluginState.INITIALIZED, None)


def test_it_marks_a_plugin_with_a_missing_package_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "missing_package")

    assert record.reason == (
        "Missing Python package 'nonexistent_pkg_xyz' "
        "(install with: pip install nonexistent_pkg_xyz)"
    )
    assert record.hint == "pip install nonexistent_pkg_xyz"
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_uses_the_manifest_hint_for_a_missing_package(sync_plugins: Any, tmp_path: Path) -> None:
    record = sync_fault(
        sync_plugins,
        tmp_path,
        "missing_package",
        hints={"nonexistent_pkg_xyz": "pip install xyz-distribution==2.1"},
    )

    assert record.reason == (
        "Missing Python package 'nonexistent_pkg_xyz' (install with: pip install "
        "xyz-distribution==2.1)"
    )
    assert record.hint == "pip install xyz-distribution==2.1"
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_marks_a_plugin_with_a_missing_program_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "missing_program")

    assert record.reason == (
        "Missing program 'nonexistent_program_xyz' on PATH "
        "(install with: apt-get install xyz-tools)"
    )
    assert record.hint == "apt-get install xyz-tools"
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_lists_every_missing_dependency_in_manifest_order(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(
        sync_plugins,
        tmp_path,
        "missing_program",
        dependencies={"python": ["nonexistent_pkg_xyz"], "binaries": ["nonexistent_program_xyz"]},
    )

    assert record.reason == (
        "Missing Python package 'nonexistent_pkg_xyz' (install with: pip install "
        "nonexistent_pkg_xyz); Missing program 'nonexistent_program_xyz' on PATH (install with: "
        "apt-get install xyz-tools)"
    )
    assert record.hint == "pip install nonexistent_pkg_xyz; apt-get install xyz-tools"
    assert_unavailable_and_never_imported(record, tmp_path)


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="this host has nvidia-smi")
def test_it_marks_a_gpu_plugin_unavailable_on_a_host_without_gpu(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "needs_gpu")

    assert record.reason == (
        "No CUDA GPU (torch.cuda.is_available() is False; nvidia-smi not found); "
        "this plugin requires a GPU"
    )
    assert record.hint == GPU_HINT
    assert record.requires_gpu is True
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_probes_a_gpu_plugin_normally_when_a_gpu_is_present(
    sync_plugins: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The only mock in this suite: no GPU exists on the test host (CONTRACT.md §6).
    monkeypatch.setattr(dependencies, "check_gpu", lambda: None)

    record = sync_fault(sync_plugins, tmp_path, "needs_gpu")

    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert record.requires_gpu is True
    assert record.accepting_jobs is True
    assert (tmp_path / "needs_gpu" / "IMPORTED").read_text() == "imported"  # by the probe ...
    assert "warden_plugins.needs_gpu" not in sys.modules  # ... not by the test process


def test_it_reports_the_gpu_check_only_for_plugins_that_require_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(dependencies, "check_gpu", lambda: calls.append("gpu") or None)

    assert dependencies.check_dependencies({"requires_gpu": False}, None) == []
    assert calls == []
    assert dependencies.check_dependencies({"requires_gpu": True}, None) == []
    assert calls == ["gpu"]


def test_it_marks_a_plugin_with_a_missing_model_file_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "model_missing")

    expected_at = (tmp_path / "model_missing").resolve() / "models" / "weights.bin"
    assert record.reason == (
        f"Missing model file 'models/weights.bin' (expected at {expected_at}) "
        "(install with: scripts/fetch_weights.sh)"
    )
    assert record.hint == "scripts/fetch_weights.sh"
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_marks_a_plugin_with_a_truncated_model_file_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "model_truncated")

    at = (tmp_path / "model_truncated").resolve() / "models" / "weights.bin"
    assert record.reason == (
        f"Model file 'models/weights.bin' is truncated: 10 bytes, expected at least 1024 ({at})"
    )
    assert record.hint is None
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_marks_a_plugin_whose_model_has_the_wrong_magic_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "model_bad_magic")

    at = (tmp_path / "model_bad_magic").resolve() / "models" / "weights.png"
    assert record.reason == (
        "Model file 'models/weights.png' is not the expected format: starts with b'GIF8', "
        f"expected b'\\x89PNG' ({at})"
    )
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_finds_a_model_file_shipped_by_an_installed_package(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(sync_plugins, tmp_path, "model_package")

    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert record.manifest["models"] == [
        {"package": "json", "path": "__init__.py", "min_bytes": 100, "magic": 'r"""JSON'}
    ]


def test_it_marks_a_model_in_a_missing_package_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(
        sync_plugins,
        tmp_path,
        "model_missing",
        models=[{"package": "nonexistent_pkg_xyz", "path": "data/cascade.xml"}],
    )

    assert record.reason == (
        "Missing Python package 'nonexistent_pkg_xyz' that ships model file 'data/cascade.xml' "
        "(install with: pip install nonexistent_pkg_xyz)"
    )
    assert record.hint == "pip install nonexistent_pkg_xyz"
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_marks_a_model_the_package_does_not_ship_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    record = sync_fault(
        sync_plugins,
        tmp_path,
        "model_missing",
        models=[{"package": "json", "path": "data/cascade.xml"}],
        hints={},
    )

    assert record.reason == (
        f"Missing model file 'data/cascade.xml' (expected at {JSON_DIR / 'data' / 'cascade.xml'})"
    )
    assert record.hint is None
    assert_unavailable_and_never_imported(record, tmp_path)


def test_it_requires_16_bytes_by_default(tmp_path: Path) -> None:
    (tmp_path / "m.bin").write_bytes(b"x" * 15)
    (tmp_path / "ok.bin").write_bytes(b"x" * 16)

    assert check_model({"path": "m.bin"}, tmp_path, {}) == Missing(
        f"Model file 'm.bin' is truncated: 15 bytes, expected at least 16 ({tmp_path / 'm.bin'})",
        None,
    )
    assert check_model({"path": "ok.bin"}, tmp_path, {}) is None


def test_it_compares_plain_text_magic(tmp_path: Path) -> None:
    (tmp_path / "m.onnx").write_bytes(b"ONNX" + bytes(60))

    assert check_model({"path": "m.onnx", "magic": "ONNX"}, tmp_path, {}) is None
    assert check_model({"path": "m.onnx", "magic": "PK"}, tmp_path, {}) == Missing(
        "Model file 'm.onnx' is not the expected format: starts with b'ON', expected b'PK' "
        f"({tmp_path / 'm.onnx'})",
        None,
    )


def test_it_reports_a_model_path_that_is_a_directory(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()

    assert check_model({"path": "models"}, tmp_path, {}) == Missing(
        f"Model file 'models' is a directory, not a file ({tmp_path / 'models'})", None
    )


# --- dotted names are found without running any package's __init__ (issue #7 defect 3) -------

BOOM_INIT = """\
import os
from pathlib import Path

Path(__file__).with_name("IMPORTED").write_text(str(os.getpid()))
raise RuntimeError("boom/__init__.py ran: a package was imported to find a submodule")
"""


def boom_package(site: Path) -> Path:
    """A package whose __init__ marks a file and raises if anything imports it."""
    package = site / "boom_pkg"
    (package / "models").mkdir(parents=True)  # a namespace subpackage (no __init__.py)
    (package / "__init__.py").write_text(BOOM_INIT)
    (package / "sub.py").write_text("VALUE = 1\n")
    (package / "inner").mkdir()
    (package / "inner" / "__init__.py").write_text("")
    (package / "models" / "weights.bin").write_bytes(b"WEIGHTS" + bytes(64))
    return package


@pytest.fixture
def boom_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    boom_package(site)
    monkeypatch.syspath_prepend(str(site))
    return site / "boom_pkg"


def test_it_finds_dotted_packages_without_importing_their_parents(boom_site: Path) -> None:
    assert dependencies.check_python_package("boom_pkg.sub", {}) is None
    assert dependencies.check_python_package("boom_pkg.inner", {}) is None
    assert dependencies.check_python_package("boom_pkg.models", {}) is None
    assert dependencies.check_python_package("boom_pkg.nope", {}) == Missing(
        "Missing Python package 'boom_pkg.nope' (install with: pip install boom_pkg)",
        "pip install boom_pkg",
    )
    assert dependencies.check_python_package("boom_pkg.sub.deeper", {}) is not None
    assert not (boom_site / "IMPORTED").exists()
    assert [m for m in sys.modules if m.startswith("boom_pkg")] == []


def test_it_locates_a_model_in_a_dotted_package_without_importing_it(boom_site: Path) -> None:
    entry = {"package": "boom_pkg.models", "path": "weights.bin", "magic": "WEIGHTS"}

    assert dependencies.model_file_path(entry, None) == boom_site / "models" / "weights.bin"
    assert check_model(entry, None, {}) is None
    assert dependencies.model_file_path({"package": "boom_pkg.sub", "path": "x"}, None) == (
        boom_site / "x"
    )
    assert not (boom_site / "IMPORTED").exists()
    assert [m for m in sys.modules if m.startswith("boom_pkg")] == []


def test_it_reports_a_module_of_an_already_imported_package() -> None:
    assert dependencies.find_module_spec("json.decoder") is not None
    assert dependencies.find_module_spec("json.nope") is None
    assert dependencies.find_module_spec("json..decoder") is None
    assert dependencies.find_module_spec("") is None


def test_it_treats_the_host_as_having_a_gpu_when_the_test_only_setting_says_so(
    settings: Any,
) -> None:
    settings.WARDEN_FAKE_GPU = True

    assert dependencies.check_gpu() is None
    assert dependencies.check_dependencies({"requires_gpu": True}, None) == []
