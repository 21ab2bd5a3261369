"""Manifest faults: the schema rejects them, and a sync stores an exact FAILED reason."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from plugins_app.manifest import ManifestError, read_manifest, validate_manifest
from plugins_app.models import FaultOrigin, PluginState
from tests.plugins_app.faults import copy_plugins, record_at

MANIFEST_HINT = "fix manifest.json (its JSON Schema is documented in docs/plugins.md)"


def minimal(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "name": "demo",
        "version": "1.0.0",
        "entrypoint": "plugin:Plugin",
        "tools": [{"name": "run"}],
    }
    data.update(changes)
    return data


def assert_neighbour_unaffected(tmp_path: Path) -> None:
    healthy = record_at(tmp_path / "healthy")
    assert (healthy.state, healthy.reason, healthy.hint) == (PluginState.INITIALIZED, None, None)
    assert healthy.loaded_at is not None
    assert healthy.accepting_jobs is True


def test_it_accepts_the_minimal_manifest() -> None:
    assert validate_manifest(minimal()) == minimal()


def test_it_lists_every_schema_problem_at_once() -> None:
    data = minimal(colour="blue", name="Bad-Name")
    del data["version"]

    with pytest.raises(ManifestError) as caught:
        validate_manifest(data)

    assert str(caught.value) == (
        "unknown key(s) 'colour' at '/'; 'version' is a required property at '/'; "
        "'name': 'Bad-Name' does not match '^[a-z][a-z0-9_]{0,63}$'"
    )


def test_it_rejects_a_manifest_without_tools() -> None:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(minimal(tools=[]))

    assert str(caught.value) == "'tools': [] should be non-empty"


def test_it_rejects_duplicate_tool_names() -> None:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(minimal(tools=[{"name": "run"}, {"name": "run"}]))

    assert str(caught.value) == "duplicate tool names in ['run', 'run']"


def test_it_rejects_a_tool_schema_that_is_not_a_json_schema() -> None:
    tools = [{"name": "run", "input_schema": {"type": "no-such-type"}}]

    with pytest.raises(ManifestError) as caught:
        validate_manifest(minimal(tools=tools))

    assert str(caught.value).startswith("tool 'run' input_schema is not a valid JSON Schema: ")


def test_it_rejects_unknown_keys_inside_nested_objects() -> None:
    with pytest.raises(ManifestError) as caught:
        validate_manifest(minimal(limits={"timeout_s": 5, "cpu": 2}))

    assert str(caught.value) == "unknown key(s) 'cpu' at 'limits'"


def test_it_reports_where_invalid_json_breaks(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text('{"name": "x",\n "version": }\n')

    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)

    assert str(caught.value) == (
        "manifest.json is not valid JSON: Expecting value (line 2 column 13)"
    )


def test_it_reports_a_manifest_that_is_not_utf8(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_bytes(b'{"name": "\xff"}')

    with pytest.raises(ManifestError) as caught:
        read_manifest(tmp_path)

    assert str(caught.value).startswith(
        f"cannot read {tmp_path / 'manifest.json'}: UnicodeDecodeError: "
    )


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ("missing_version", "Invalid manifest: 'version' is a required property at '/'"),
        ("unknown_key", "Invalid manifest: unknown key(s) 'colour' at '/'"),
        (
            "bad_json",
            "Invalid manifest: manifest.json is not valid JSON: Expecting property name enclosed "
            "in double quotes (line 6 column 1)",
        ),
        (
            "bad_entrypoint",
            "Invalid manifest: 'entrypoint': 'plugin.Plugin' does not match "
            "'^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_]*$'",
        ),
    ],
)
def test_it_marks_a_plugin_with_a_broken_manifest_failed(
    sync_plugins: Any, tmp_path: Path, fault: str, reason: str
) -> None:
    copy_plugins(tmp_path, fault, "healthy")

    outcomes = sync_plugins(tmp_path)

    record = record_at(tmp_path / fault)
    assert record.name == fault  # kept from the manifest, or the folder name when unreadable
    assert (record.state, record.reason, record.hint) == (PluginState.FAILED, reason, MANIFEST_HINT)
    assert record.fault_origin == FaultOrigin.LOAD
    assert record.manifest is None
    assert record.tools == []
    assert record.loaded_at is None
    assert record.probed_at is not None
    assert record.probe_traceback == ""
    assert record.accepting_jobs is False
    assert f"warden_plugins.{fault}" not in sys.modules
    assert sorted((o.name, o.state) for o in outcomes) == sorted(
        [(fault, "FAILED"), ("healthy", "INITIALIZED")]
    )
    assert_neighbour_unaffected(tmp_path)


def test_it_marks_a_folder_without_manifest_failed(sync_plugins: Any, tmp_path: Path) -> None:
    copy_plugins(tmp_path, "no_manifest", "healthy")

    sync_plugins(tmp_path)

    record = record_at(tmp_path / "no_manifest")
    assert record.name == "no_manifest"
    assert record.state == PluginState.FAILED
    assert record.reason == (
        f"Invalid manifest: no manifest.json in {(tmp_path / 'no_manifest').resolve()}"
    )
    assert record.loaded_at is None
    assert_neighbour_unaffected(tmp_path)


def test_it_fixes_a_manifest_failure_on_the_next_sync(sync_plugins: Any, tmp_path: Path) -> None:
    copy_plugins(tmp_path, "unknown_key", "healthy")
    sync_plugins(tmp_path)
    manifest_path = tmp_path / "unknown_key" / "manifest.json"
    data = json.loads(manifest_path.read_text())
    del data["colour"]
    manifest_path.write_text(json.dumps(data))

    sync_plugins(tmp_path)

    record = record_at(tmp_path / "unknown_key")
    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert record.fault_origin == FaultOrigin.NONE
    assert record.manifest == data
    assert record.version == "1.0.0"
    assert_neighbour_unaffected(tmp_path)


def test_it_rejects_a_manifest_with_nul_characters() -> None:
    manifest = {
        "name": "nul",
        "version": "1",
        "entrypoint": "plugin:Plugin",
        "description": "a\x00b",
        "tools": [{"name": "t"}],
    }
    with pytest.raises(ManifestError) as caught:
        validate_manifest(manifest)
    assert str(caught.value) == "contains NUL characters (\\u0000) or unpaired surrogates"
