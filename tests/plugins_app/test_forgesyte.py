"""ForgeSyte packages (`forgesyte.plugins` entry points): discovery, translation, requirements,
isolated probing. The fixture packages live in tests/plugins/forgesyte (see its README)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from plugins_app.discovery import discover
from plugins_app.models import FaultOrigin, PluginRecord, PluginState
from tests.conftest import FORGESYTE_SITES


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where fixture packages that must not be imported write a file when they are."""
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("FSFIX_MARKER_DIR", str(folder))
    return folder


def fixture_modules() -> list[str]:
    return sorted(m for m in sys.modules if m.startswith("fsfix_"))


def record(name: str) -> PluginRecord:
    return PluginRecord.objects.get(name=name)


TOOLS_PACKAGE_MANIFEST = {
    "name": "forgesyte_fsfix_tools",
    "version": "2.0.0",
    "description": "Fixture plugin with a tools dict",
    "entrypoint": "fsfix_tools.plugin:Plugin",
    "dependencies": {"distributions": ["pydantic>=2", 'pytest>=1; extra == "dev"']},
    "tools": [
        {
            "name": "describe",
            "description": "Size and label of an uploaded image",
            "input_types": ["image/*"],
            "input_schema": {"type": "object", "properties": {"options": {"type": "object"}}},
            "output_schema": {
                "type": "object",
                "properties": {
                    "size": {"type": ["integer", "null"]},
                    "label": {"type": ["string", "null"]},
                    "magic": {"type": ["string", "null"]},
                },
            },
        },
        {
            "name": "shout_text",
            "description": "Upper-case a text",
            "input_schema": {"type": "object", "properties": {"text": {"type": "string"}}},
            "output_schema": {
                "type": "object",
                "properties": {"text": {"type": ["string", "null"]}},
            },
        },
    ],
}


def test_it_discovers_forgesyte_packages_without_importing_them(
    forgesyte_sites: Any, markers: Path
) -> None:
    forgesyte_sites("tools", "noman", "missing", "crashinit")

    found = {c.name: c for c in discover([])}

    assert sorted(found) == [
        "forgesyte_crashinit",
        "forgesyte_fsfix_tools",
        "forgesyte_needs_more",
        "forgesyte_noman",
    ]
    tools = found["forgesyte_fsfix_tools"]
    assert (tools.location, tools.source, tools.error) == (
        "entry-point:forgesyte.plugins:fsfix-tools=fsfix_tools.plugin:Plugin",
        "forgesyte",
        None,
    )
    assert tools.folder == FORGESYTE_SITES / "tools" / "fsfix_tools"
    assert tools.manifest == TOOLS_PACKAGE_MANIFEST
    # without manifest.json the tools are unknown until the probe reads them from the class
    assert found["forgesyte_noman"].manifest == {
        "name": "forgesyte_noman",
        "version": "0.3.0",
        "description": "ForgeSyte-format fixture without manifest.json",
        "entrypoint": "fsfix_noman.plugin:Plugin",
        "dependencies": {
            "distributions": ['Pydantic[email]>=2; python_version >= "4"', "PYDANTIC"]
        },
        "tools": [],
    }
    assert found["forgesyte_crashinit"].manifest["tools"] == [
        {
            "name": "never",
            "description": "Never",
            "input_types": ["video/*"],
            "input_schema": {"type": "object", "properties": {}},
        }
    ]
    assert list(markers.iterdir()) == []
    assert fixture_modules() == []


def test_it_fills_tools_from_the_class_after_the_probe(
    sync_plugins: Any, forgesyte_sites: Any
) -> None:
    forgesyte_sites("tools")

    sync_plugins()

    plugin = record("forgesyte_fsfix_tools")
    assert (plugin.state, plugin.reason, plugin.source) == ("INITIALIZED", None, "forgesyte")
    assert (plugin.version, plugin.description, plugin.entrypoint) == (
        "2.0.0",
        "Fixture plugin with a tools dict",
        "fsfix_tools.plugin:Plugin",
    )
    assert [t["name"] for t in plugin.tools] == ["describe", "shout_text", "spin", "crash"]
    describe, shout, spin, _ = plugin.tools
    assert describe == {
        "name": "describe",
        "description": "Size and label of an uploaded image",
        "input_types": ["image/*"],
        # the class's flat map gives `options`; `image_bytes` comes from the upload, not JSON
        "input_schema": {"type": "object", "properties": {"options": {"type": "object"}}},
        # the class's pydantic output model wins over manifest.json's flat `outputs`
        "output_schema": {
            "title": "Description",
            "type": "object",
            "properties": {
                "size": {"title": "Size", "type": "integer"},
                "label": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "default": None,
                    "title": "Label",
                },
                "magic": {"title": "Magic", "type": "string"},
            },
            "required": ["size", "magic"],
        },
    }
    assert shout == TOOLS_PACKAGE_MANIFEST["tools"][1]
    assert spin == {
        "name": "spin",
        "description": "Works until interrupted, and swallows the interruption",
        "input_schema": {"type": "object", "properties": {"seconds": {"type": "number"}}},
    }
    assert plugin.manifest["tools"] == plugin.tools
    assert fixture_modules() == []  # the class was read in the probe child only


def test_it_reads_the_tools_of_a_package_without_manifest_json_in_the_probe(
    sync_plugins: Any, forgesyte_sites: Any
) -> None:
    forgesyte_sites("noman")

    sync_plugins()

    plugin = record("forgesyte_noman")
    assert (plugin.state, plugin.reason, plugin.version) == ("INITIALIZED", None, "0.3.0")
    assert plugin.tools == [
        {
            "name": "read_b64",
            "description": "Decode base64 image text and report its length.",
            "input_schema": {
                "type": "object",
                "properties": {"image_base64": {}, "prefix": {}},
            },
        },
        {
            "name": "count",
            "description": "Count characters",
            "input_schema": {
                "type": "object",
                "properties": {"text": {"type": "string"}},
                "required": ["text"],
            },
            "output_schema": {"type": "object", "required": ["count"]},
        },
    ]


def test_it_offers_analyze_for_an_older_plugin(sync_plugins: Any, forgesyte_sites: Any) -> None:
    forgesyte_sites("legacy")

    sync_plugins()

    plugin = record("forgesyte_legacy")
    assert (plugin.state, plugin.reason) == ("INITIALIZED", None)
    assert plugin.tools == [
        {
            "name": "analyze",
            "input_types": ["image/*"],
            "input_schema": {"type": "object", "properties": {"options": {"type": "object"}}},
        }
    ]


def test_it_marks_missing_requirements_unavailable_naming_each_and_never_imports(
    sync_plugins: Any, forgesyte_sites: Any, markers: Path
) -> None:
    forgesyte_sites("missing", "legacy")

    sync_plugins()

    plugin = record("forgesyte_needs_more")
    assert (plugin.state, plugin.fault_origin, plugin.accepting_jobs) == (
        PluginState.UNAVAILABLE,
        FaultOrigin.LOAD,
        False,
    )
    assert plugin.reason == (
        "Missing Python package 'fsfix-not-installed' (install with: pip install "
        "'fsfix-not-installed>=1.5'); Python package 'Pillow' is version 13.0.0, but "
        "'Pillow>=999' is required (install with: pip install 'Pillow>=999'); Missing Python "
        "package 'fsfix-also-missing' (install with: pip install fsfix-also-missing)"
    )
    assert plugin.hint == (
        "pip install 'fsfix-not-installed>=1.5'; pip install 'Pillow>=999'; "
        "pip install fsfix-also-missing"
    )
    assert (plugin.probe_duration_ms, plugin.loaded_at) == (None, None)  # never probed
    assert list(markers.iterdir()) == []
    assert record("forgesyte_legacy").state == PluginState.INITIALIZED


def test_it_fails_a_plugin_that_imports_forgesyte_app_with_an_actionable_reason(
    sync_plugins: Any, forgesyte_sites: Any
) -> None:
    forgesyte_sites("hostapp", "hostapp_fallback")

    sync_plugins()

    plugin = record("forgesyte_hostapp")
    assert (plugin.state, plugin.fault_origin) == (PluginState.FAILED, FaultOrigin.LOAD)
    assert plugin.reason == (
        "ImportError: ForgeSyte plugin imports host module 'app' (ModuleNotFoundError: No "
        "module named 'app'); Warden does not provide ForgeSyte's app package, so the plugin "
        "needs a standalone fallback (try: from app... except ImportError: ...) in "
        "fsfix_hostapp.plugin"
    )
    assert plugin.hint == (
        "plugin 'forgesyte_hostapp' only runs inside the ForgeSyte server: ask its author for a "
        "release with a fallback for its `app` imports (or patch them), then re-probe"
    )
    assert "from app.plugins.base import BasePlugin" in plugin.probe_traceback
    fallback = record("forgesyte_hostapp_fallback")
    assert (fallback.state, fallback.reason) == (PluginState.INITIALIZED, None)
    assert [t["name"] for t in fallback.tools] == ["hello"]


def test_it_runs_a_crashing_package_init_only_in_the_probe(
    sync_plugins: Any, forgesyte_sites: Any, markers: Path
) -> None:
    forgesyte_sites("crashinit", "legacy")

    sync_plugins()

    plugin = record("forgesyte_crashinit")
    assert (plugin.state, plugin.reason) == (
        PluginState.FAILED,
        "ImportError: SystemExit: fsfix_crashinit/__init__.py was imported",
    )
    assert [t["name"] for t in plugin.tools] == ["never"]  # read from manifest.json, statically
    importer = int((markers / "crashinit-imported").read_text())
    assert importer != os.getpid()
    assert fixture_modules() == []
    assert record("forgesyte_legacy").state == PluginState.INITIALIZED


def test_it_marks_an_uninstalled_forgesyte_package_unavailable(
    sync_plugins: Any, forgesyte_sites: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgesyte_sites("legacy")
    sync_plugins()
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "forgesyte" not in p])

    sync_plugins()

    plugin = record("forgesyte_legacy")
    assert (plugin.state, plugin.missing, plugin.accepting_jobs) == (
        PluginState.UNAVAILABLE,
        True,
        False,
    )
    assert plugin.reason == (
        "Plugin entry point entry-point:forgesyte.plugins:legacy=fsfix_legacy.plugin:Plugin no "
        "longer exists (removed since the last sync)"
    )
    assert plugin.hint == (
        "reinstall its package on this host and re-probe, or delete this record in the admin"
    )
