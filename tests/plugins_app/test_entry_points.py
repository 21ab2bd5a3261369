"""Plugins installed as packages, registered under the `warden.plugins` entry-point group."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

import pytest

from plugins_app.models import PluginRecord


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

    record = PluginRecord.objects.get(name="demo_installed")
    assert (record.state, record.reason, record.source) == ("INITIALIZED", None, "entry_point")
    assert record.location == "entry-point:demo=wardenplug_demo"


def test_it_fails_a_broken_entry_point_with_its_reason(sync_plugins: Any, site: Path) -> None:
    install(site, "ghost = nope_not_installed")

    sync_plugins()

    record = PluginRecord.objects.get(location="entry-point:ghost=nope_not_installed")
    assert (record.name, record.state) == ("ghost", "FAILED")
    assert record.reason == (
        "Entry point 'ghost' in group 'warden.plugins' is broken: module 'nope_not_installed' "
        "not found"
    )
