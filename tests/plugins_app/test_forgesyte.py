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
from tests.plugins_app.faults import PluginView, plugin_view


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where fixture packages that must not be imported write a file when they are."""
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("FSFIX_MARKER_DIR", str(folder))
    return folder


def fixture_modules() -> list[str]:
    return sorted(m for m in sys.modules if m.startswith("fsfix_"))


def record(name: str) -> PluginView:
    return plugin_view(name)


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


def test_it_keeps_the_last_probed_tools_through_a_failing_reprobe(
    sync_plugins: Any, forgesyte_sites: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    forgesyte_sites("noman")
    sync_plugins()
    probed = record("forgesyte_noman").tools
    monkeypatch.setenv("FSFIX_NOMAN_BROKEN", "1")

    sync_plugins(names=["forgesyte_noman"])

    plugin = record("forgesyte_noman")
    assert (plugin.state, plugin.reason) == (
        PluginState.FAILED,
        "InitError: RuntimeError: the model is gone",
    )
    assert plugin.tools == probed
    assert [t["name"] for t in probed] == ["read_b64", "count"]


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


# --- broken packages, each failing alone with a reason ----------------------------------------


def lay_out(site: Path, dist: str, entry_point: str, files: dict[str, str]) -> None:
    """An installed distribution in `site`: .dist-info registering `entry_point`, plus files."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[forgesyte.plugins]\n{entry_point}\n")
    for rel, text in files.items():
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(text)


def test_it_fails_each_broken_package_alone_with_its_reason(
    sync_plugins: Any, forgesyte_sites: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    plugin = "class Plugin:\n    tools = {'Go': {'handler': 'go'}, 'go': {'handler': 'go'}}\n"
    plugin += "    def go(self):\n        return {}\n"
    lay_out(
        site,
        "bad-json",
        "bad-json = bad_json.plugin:Plugin",
        {
            "bad_json/__init__.py": "",
            "bad_json/plugin.py": "class Plugin: ...\n",
            "bad_json/manifest.json": "{not json",
        },
    )
    lay_out(
        site,
        "attr-path",
        "attr-path = attr_path.plugin:make.plugin",
        {
            "attr_path/__init__.py": "",
            "attr_path/plugin.py": "",
        },
    )
    lay_out(
        site,
        "twins",
        "twins = twins.plugin:Plugin",
        {
            "twins/__init__.py": "",
            "twins/plugin.py": plugin,
        },
    )
    lay_out(site, "gone", "gone = not_there.plugin:Plugin", {})
    lay_out(
        site,
        "factory",
        "factory = factory.plugin:create_plugin",
        {
            "factory/__init__.py": "",
            "factory/plugin.py": "def create_plugin():\n    return None\n",
        },
    )
    forgesyte_sites("legacy")
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", f"{site}{os.pathsep}{os.environ['PYTHONPATH']}")

    sync_plugins()

    reasons = {
        p.name: (p.state, p.reason, p.hint)
        for p in (
            plugin_view(name)
            for name in PluginRecord.objects.exclude(name="forgesyte_legacy").values_list(
                "name", flat=True
            )
        )
    }
    assert reasons == {
        "forgesyte_bad_json": (
            "FAILED",
            f"Invalid manifest: {site / 'bad_json' / 'manifest.json'} is not valid JSON: "
            "Expecting property name enclosed in double quotes (line 1 column 2)",
            "the installed package 'bad-json' is broken or not in ForgeSyte's format: reinstall "
            "it (pip install --force-reinstall bad-json) or report it to its author, then "
            "re-probe",
        ),
        "forgesyte_attr_path": (
            "FAILED",
            "Invalid manifest: entry point value 'attr_path.plugin:make.plugin' is not "
            "'module.path:ClassName'; Warden loads a class defined at module level",
            "the installed package 'attr-path' is broken or not in ForgeSyte's format: "
            "reinstall it (pip install --force-reinstall attr-path) or report it to its author, "
            "then re-probe",
        ),
        "forgesyte_twins": (
            "FAILED",
            "Invalid manifest: translated from ForgeSyte plugin twins.plugin.Plugin: duplicate "
            "tool names in ['go', 'go']",
            "the translated manifest of this ForgeSyte plugin is invalid; see docs/plugins.md "
            "'Running ForgeSyte plugins' for what maps to what",
        ),
        "forgesyte_gone": (
            "FAILED",
            "Entry point 'gone' in group 'forgesyte.plugins' is broken: module "
            "'not_there.plugin' not found",
            "the installed package 'gone' is broken or not in ForgeSyte's format: reinstall it "
            "(pip install --force-reinstall gone) or report it to its author, then re-probe",
        ),
        "forgesyte_factory": (
            "FAILED",
            "EntrypointError: entrypoint 'factory.plugin:create_plugin': module "
            "'factory.plugin' has no class 'create_plugin'",
            "this ForgeSyte plugin's class must set `tools` (a dict of tool id to handler or "
            "{'handler': ...}) with run_tool(tool_name, args), or implement analyze(image_bytes, "
            "options); check the entry point in the package's pyproject.toml",
        ),
    }
    assert plugin_view("forgesyte_legacy").state == PluginState.INITIALIZED
