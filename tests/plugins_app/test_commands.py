"""`manage.py plugins sync|list|check`: probe from the command line and show health."""

from __future__ import annotations

import io
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from plugins_app.models import PluginRecord, PluginState
from tests.plugins_app.faults import copy_plugins, plugin_view

INIT_REASON = "InitError: ValueError: model path not configured"


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("plugins", *args, stdout=out, no_color=True)
    return out.getvalue()


@pytest.fixture
def plugin_dir(tmp_path: Path, settings: Any, db: None) -> Path:
    settings.WARDEN_PLUGIN_DIRS = [tmp_path]
    copy_plugins(tmp_path, "healthy", "init_error")
    return tmp_path


def test_it_syncs_and_prints_the_table(plugin_dir: Path) -> None:
    output = run("sync")

    lines = output.splitlines()
    assert lines[:2] == ["Discovered 2 plugin(s)", "Probing 2 plugin(s) in isolated processes"]
    assert sorted(re.sub(r" \(\d+ ms\)$", "", line) for line in lines[2:4]) == [
        "  healthy: ok",
        f"  init_error: {INIT_REASON}",
    ]
    assert lines[4:7] == [
        "NAME        VERSION   STATE        REASON",
        "healthy     1.0.0     INITIALIZED  ",
        f"init_error  1.0.0     FAILED       {INIT_REASON}",
    ]
    assert re.fullmatch(r"Synced 2 plugin\(s\) in \d+\.\d\d s: 1 ready, 1 not ready", lines[7])
    assert len(lines) == 8
    assert plugin_view("healthy").state == PluginState.INITIALIZED


def test_it_re_probes_only_the_named_plugins(plugin_dir: Path) -> None:
    run("sync")
    healthy_probed_at = plugin_view("healthy").probed_at
    shutil.copy(plugin_dir / "healthy" / "plugin.py", plugin_dir / "init_error" / "plugin.py")

    output = run("sync", "init_error")

    assert "Discovered 1 plugin(s)" in output.splitlines()
    assert output.splitlines()[-1].endswith(": 1 ready, 0 not ready")
    assert plugin_view("init_error").state == PluginState.INITIALIZED
    assert plugin_view("healthy").probed_at == healthy_probed_at


def test_it_rejects_unknown_names_to_sync(plugin_dir: Path) -> None:
    run("sync")
    before = list(PluginRecord.objects.values_list("name", "probed_at"))

    with pytest.raises(CommandError) as caught:
        run("sync", "healthy", "nope", "ghost")

    assert str(caught.value) == "Unknown plugin(s): ghost, nope"
    assert list(PluginRecord.objects.values_list("name", "probed_at")) == before


def test_it_lists_states_and_reasons(plugin_dir: Path) -> None:
    run("sync")

    assert run("list").splitlines() == [
        "NAME        VERSION   STATE        REASON",
        "healthy     1.0.0     INITIALIZED  ",
        f"init_error  1.0.0     FAILED       {INIT_REASON}",
    ]


@pytest.mark.django_db
def test_it_says_when_there_are_no_plugins() -> None:
    assert run("list") == (
        "No plugins found (WARDEN_PLUGIN_DIRS, entry points 'warden.plugins' and "
        "'forgesyte.plugins')\n"
    )


def test_it_prints_one_plugin_with_its_traceback_and_history(plugin_dir: Path) -> None:
    run("sync")
    record = plugin_view("init_error")

    output = run("check", "init_error")

    data, end = json.JSONDecoder().raw_decode(output)
    assert data["name"] == "init_error"
    assert (data["state"], data["reason"]) == ("FAILED", INIT_REASON)
    [host] = data["hosts"]
    assert host["location"] == str((plugin_dir / "init_error").resolve())
    assert (host["state"], host["reason"]) == ("FAILED", INIT_REASON)
    assert (data["source"], data["quarantined"]) == ("directory", False)
    assert data["limits"] == {"timeout_s": 60.0, "memory_mb": 1024}
    rest = output[end:]
    assert rest.startswith(
        f"\n\nProbe output / traceback on {host['host']} ({host['location']}):\n"
        + record.probe_traceback
    )
    transition = record.transitions.get()
    assert rest.endswith(
        "\nState history (newest first):\n"
        f"  {transition.at:%Y-%m-%d %H:%M:%S} LOADED -> FAILED: {INIT_REASON}\n"
    )


def test_it_rejects_an_unknown_name_to_check(plugin_dir: Path) -> None:
    with pytest.raises(CommandError) as caught:
        run("check", "nope")

    assert str(caught.value) == "No plugin named 'nope'"
    assert PluginRecord.objects.count() == 0
