"""Discovery: which folders become plugins, and how duplicate names are resolved."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from plugins_app.discovery import discover
from plugins_app.models import PluginHost, PluginState
from tests.plugins_app.faults import FAULTS, copy_plugins, record_at


def test_it_finds_folders_sorted_by_path_and_skips_hidden_and_files(tmp_path: Path) -> None:
    copy_plugins(tmp_path, "init_error", "healthy")
    shutil.copytree(FAULTS / "healthy", tmp_path / ".hidden")
    shutil.copytree(FAULTS / "healthy", tmp_path / "_private")
    (tmp_path / "README.md").write_text("not a plugin")

    found = discover([tmp_path, tmp_path / "does-not-exist"], include_entry_points=False)

    assert [(c.name, c.location, c.source) for c in found] == [
        ("healthy", str((tmp_path / "healthy").resolve()), "directory"),
        ("init_error", str((tmp_path / "init_error").resolve()), "directory"),
    ]
    assert [(c.error, c.shadowed_by) for c in found] == [(None, None), (None, None)]


def test_it_names_an_unreadable_plugin_after_its_folder(tmp_path: Path) -> None:
    (tmp_path / "9 Odd-Folder").mkdir()

    [candidate] = discover([tmp_path], include_entry_points=False)

    assert candidate.name == "p_9_odd_folder"
    assert candidate.manifest is None
    assert candidate.error == (
        f"Invalid manifest: no manifest.json in {(tmp_path / '9 Odd-Folder').resolve()}"
    )


def test_it_marks_the_later_of_two_same_named_plugins_as_shadowed(tmp_path: Path) -> None:
    copy_plugins(tmp_path, "duplicate_second", "duplicate_first")

    first, second = discover([tmp_path], include_entry_points=False)

    assert first.location == str((tmp_path / "duplicate_first").resolve())
    assert first.shadowed_by is None
    assert second.location == str((tmp_path / "duplicate_second").resolve())
    assert second.shadowed_by == first.location


def test_it_keeps_the_first_duplicate_and_fails_the_second_naming_both(
    sync_plugins: Any, tmp_path: Path, api_client: APIClient
) -> None:
    copy_plugins(tmp_path, "duplicate_first", "duplicate_second", "healthy")
    first_at = str((tmp_path / "duplicate_first").resolve())
    second_at = str((tmp_path / "duplicate_second").resolve())

    sync_plugins(tmp_path)

    winner, loser = (
        record_at(tmp_path / "duplicate_first"),
        record_at(tmp_path / "duplicate_second"),
    )
    assert (winner.state, winner.reason, winner.shadowed) == (PluginState.INITIALIZED, None, False)
    assert loser.state == PluginState.FAILED
    assert loser.reason == (
        f"Duplicate plugin name 'duplicate': {second_at} is ignored because {first_at} already "
        "provides it"
    )
    assert loser.hint == "rename one of the two plugins or remove one folder"
    assert loser.shadowed is True
    assert loser.accepting_jobs is False
    assert not (tmp_path / "duplicate_second" / "IMPORTED").exists()  # never probed
    assert "warden_plugins.duplicate" not in sys.modules
    assert record_at(tmp_path / "healthy").state == PluginState.INITIALIZED

    health = api_client.get("/v1/plugins/duplicate/health")
    assert health.status_code == 200
    assert health.json()["description"] == "First of two plugins called 'duplicate'"
    assert health.json()["state"] == "INITIALIZED"

    # One record per name; the ignored duplicate shows up in its host's entries.
    listed = api_client.get("/v1/plugins").json()
    assert [(p["name"], p["description"], p["state"]) for p in listed] == [
        ("duplicate", "First of two plugins called 'duplicate'", "INITIALIZED"),
        ("healthy", "Fault suite reference: imports, inits and validates cleanly", "INITIALIZED"),
    ]
    hosts = health.json()["hosts"]
    assert [(h["state"], h["reason"]) for h in hosts] == [
        ("INITIALIZED", None),
        ("FAILED", loser.reason),
    ]


def test_it_lets_the_duplicate_take_over_when_the_winner_is_removed(
    sync_plugins: Any, tmp_path: Path, api_client: APIClient
) -> None:
    copy_plugins(tmp_path, "duplicate_first", "duplicate_second")
    sync_plugins(tmp_path)
    shutil.rmtree(tmp_path / "duplicate_first")

    sync_plugins(tmp_path)

    heir = record_at(tmp_path / "duplicate_second")
    assert (heir.state, heir.reason, heir.shadowed) == (PluginState.INITIALIZED, None, False)
    # The plugin moved on this host: the vanished folder's entry is gone, not kept as missing.
    assert list(PluginHost.objects.values_list("location", flat=True)) == [heir.location]
    health = api_client.get("/v1/plugins/duplicate/health").json()
    assert (health["description"], health["state"]) == (
        "Second of two plugins called 'duplicate'",
        "INITIALIZED",
    )
