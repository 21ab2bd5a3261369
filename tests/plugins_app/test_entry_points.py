"""Plugins installed as packages, registered under the `warden.plugins` entry-point group."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plugins_app.discovery import discover
from tests.plugins_app.faults import plugin_view, record_at_location


def install(site: Path, entry_points: str, package: str | None = None) -> None:
    """Lay out an installed distribution (dist-info + package) in `site`."""
    dist = site / "wardenplug_demo-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: wardenplug-demo\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(f"[warden.plugins]\n{entry_points}\n")
    if package:
        folder = site / package
        folder.mkdir()
        (folder / "__init__.py").write_text("")
        (folder / "manifest.json").write_text(
            json.dumps(
                {
                    "name": "demo_installed",
                    "version": "1.0.0",
                    "entrypoint": f"{package}.plugin:Plugin",
                    "tools": [{"name": "hello"}],
                }
            )
        )
        (folder / "plugin.py").write_text(
            textwrap.dedent("""
            class Plugin:
                def run(self, tool, args):
                    return {"hello": "world"}
        """)
        )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("PYTHONPATH", str(site))  # the probe child imports the package too
    return site


def test_it_discovers_and_probes_an_installed_plugin(sync_plugins: Any, site: Path) -> None:
    install(site, "demo = wardenplug_demo", package="wardenplug_demo")

    sync_plugins()

    record = plugin_view("demo_installed")
    assert (record.state, record.reason, record.source) == ("INITIALIZED", None, "entry_point")
    assert record.location == "entry-point:demo=wardenplug_demo"


def test_it_fails_a_broken_entry_point_with_its_reason(sync_plugins: Any, site: Path) -> None:
    install(site, "ghost = nope_not_installed")

    sync_plugins()

    record = record_at_location("entry-point:ghost=nope_not_installed")
    assert (record.name, record.state) == ("ghost", "FAILED")
    assert record.reason == (
        "Entry point 'ghost' in group 'warden.plugins' is broken: module 'nope_not_installed' "
        "not found"
    )


def test_it_locates_a_dotted_entry_point_without_running_its_package_init(
    sync_plugins: Any, site: Path
) -> None:
    install(site, "boom = boom_ep.plugin")
    package = site / "boom_ep"
    package.mkdir()
    (package / "__init__.py").write_text(
        "import os\nfrom pathlib import Path\n"
        "Path(__file__).with_name('IMPORTED').write_text(str(os.getpid()))\n"
        "raise RuntimeError('boom_ep/__init__.py ran')\n"
    )
    (package / "plugin.py").write_text(
        "class Plugin:\n    def run(self, tool, args):\n        return {}\n"
    )
    (package / "manifest.json").write_text(
        json.dumps(
            {
                "name": "boom",
                "version": "1",
                "entrypoint": "boom_ep.plugin:Plugin",
                "tools": [{"name": "t"}],
            }
        )
    )

    [candidate] = [c for c in discover([]) if c.location.startswith("entry-point:boom=")]

    assert (candidate.name, candidate.folder, candidate.error) == ("boom", package, None)
    assert not (package / "IMPORTED").exists()
    assert "boom_ep" not in sys.modules

    sync_plugins()

    record = plugin_view("boom")
    assert (record.state, record.reason) == (
        "FAILED",
        "ImportError: RuntimeError: boom_ep/__init__.py ran",
    )
    assert (package / "IMPORTED").read_text() != str(os.getpid())  # the probe child ran it
    assert "boom_ep" not in sys.modules
