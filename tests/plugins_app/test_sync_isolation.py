"""One bad plugin folder fails alone: the sync records it with an actionable reason and goes on
with every other plugin (worker start, `plugins sync` and the admin re-probe all sync)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from plugins_app.models import PluginState
from tests.plugins_app.faults import FAULTS, record_at


def healthy(dest: Path, name: str = "healthy") -> Path:
    folder = dest / name
    shutil.copytree(FAULTS / "healthy", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "name": name}))
    return folder


def with_manifest(dest: Path, name: str, text: str) -> Path:
    folder = healthy(dest, name)
    (folder / "manifest.json").write_text(text)
    return folder


def manifest_text(name: str, **extra: Any) -> str:
    manifest = json.loads((FAULTS / "healthy" / "manifest.json").read_text())
    return json.dumps({**manifest, "name": name, **extra})


def deep_schema_text(name: str, levels: int) -> str:
    """A manifest whose tool input_schema nests `levels` objects (built without recursion)."""
    schema = '{"properties": {"a": ' * levels + "{}" + "}}" * levels
    return (
        f'{{"name": "{name}", "version": "1", "entrypoint": "plugin:Plugin", '
        f'"tools": [{{"name": "run", "input_schema": {schema}}}]}}'
    )


def assert_alone(sync_plugins: Any, dest: Path, bad: Path, state: str, reason: str) -> None:
    """Sync `dest`: `bad` ends in `state` with exactly `reason`; the healthy plugin is ready."""
    good = healthy(dest, "zz_healthy")

    sync_plugins(dest)

    record = record_at(bad)
    assert (record.state, record.reason) == (state, reason)
    assert record.accepting_jobs is False
    assert record_at(good).state == PluginState.INITIALIZED


@pytest.mark.parametrize("levels", [40, 400, 5000])
def test_it_fails_a_deeply_nested_manifest_alone(
    sync_plugins: Any, tmp_path: Path, levels: int
) -> None:
    bad = with_manifest(tmp_path, "deep", deep_schema_text("deep", levels))

    if levels * 2 + 4 < 1000:
        expected = f"Invalid manifest: nested too deeply ({levels * 2 + 4} levels; at most 64)"
    else:
        expected = "Invalid manifest: manifest.json is nested too deeply (more than 64 levels)"
    assert_alone(sync_plugins, tmp_path, bad, "FAILED", expected)


def test_it_fails_a_bad_magic_hex_string_alone(sync_plugins: Any, tmp_path: Path) -> None:
    text = manifest_text("badmagic", models=[{"path": "plugin.py", "magic": "hex:zz"}])
    bad = with_manifest(tmp_path, "badmagic", text)

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "FAILED",
        "Invalid manifest: 'models/0/magic': 'hex:zz' is not hex (write 'hex:' and an even "
        "number of hex digits, e.g. 'hex:89504e47')",
    )


def test_it_fails_an_entrypoint_too_long_to_store_alone(sync_plugins: Any, tmp_path: Path) -> None:
    entrypoint = "m" * 300 + ":Plugin"
    bad = with_manifest(tmp_path, "longentry", manifest_text("longentry", entrypoint=entrypoint))

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "FAILED",
        f"Invalid manifest: 'entrypoint': '{entrypoint}' is too long",
    )


@pytest.mark.parametrize(
    ("ref", "problem"),
    [
        (
            "https://example.com/s.json",
            "only references inside the schema ('#/...') are allowed "
            "(Warden never fetches schemas)",
        ),
        ("#/$defs/nowhere", "which does not exist"),
    ],
)
def test_it_fails_a_tool_schema_referring_outside_itself(
    sync_plugins: Any, tmp_path: Path, ref: str, problem: str
) -> None:
    text = manifest_text("refs", tools=[{"name": "run", "input_schema": {"$ref": ref}}])
    bad = with_manifest(tmp_path, "refs", text)

    sync_plugins(tmp_path)

    record = record_at(bad)
    assert record.state == PluginState.FAILED
    assert record.reason.startswith(f"Invalid manifest: tool 'run' input_schema refers to '{ref}'")
    assert problem in record.reason


def test_it_fails_a_manifest_that_is_too_large(sync_plugins: Any, tmp_path: Path) -> None:
    bad = with_manifest(tmp_path, "huge", manifest_text("huge", description="x" * (2**20 + 1)))
    size = (bad / "manifest.json").stat().st_size

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "FAILED",
        f"Invalid manifest: {bad.resolve() / 'manifest.json'} is {size} bytes; a manifest may "
        f"have at most {2**20} bytes",
    )


def test_it_fails_a_manifest_that_is_a_fifo_without_hanging(
    sync_plugins: Any, tmp_path: Path
) -> None:
    bad = healthy(tmp_path, "fifo")
    (bad / "manifest.json").unlink()
    os.mkfifo(bad / "manifest.json")

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "FAILED",
        f"Invalid manifest: {bad.resolve() / 'manifest.json'} is not a regular file",
    )


def test_it_marks_a_model_file_that_is_a_fifo_unavailable(
    sync_plugins: Any, tmp_path: Path
) -> None:
    bad = with_manifest(
        tmp_path, "fifomodel", manifest_text("fifomodel", models=[{"path": "m.bin"}])
    )
    os.mkfifo(bad / "m.bin")

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "UNAVAILABLE",
        f"Model file 'm.bin' is not a regular file ({bad.resolve() / 'm.bin'})",
    )


def test_it_fails_a_plugin_whose_check_breaks_unexpectedly(
    sync_plugins: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from plugins_app import services

    bad = healthy(tmp_path, "surprise")
    real = services.check_dependencies

    def check(manifest: dict[str, Any], folder: Path | None) -> Any:
        if manifest.get("name") == "surprise":
            raise KeyError("something Warden did not foresee")
        return real(manifest, folder)

    monkeypatch.setattr(services, "check_dependencies", check)

    assert_alone(
        sync_plugins,
        tmp_path,
        bad,
        "FAILED",
        "Warden could not check this plugin: KeyError: 'something Warden did not foresee'",
    )
