"""plugin_sync over time: removed and re-added folders, history, selective re-probe, quarantine."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from rest_framework.test import APIClient

from plugins_app.models import FaultOrigin, PluginRecord, PluginState, PluginStateTransition
from plugins_app.services import SyncOutcome, plugin_record_outcome
from tests.plugins_app.faults import FAULTS, record_at

BROKEN = 'raise RuntimeError("broken on purpose")\n'


def make_plugin(dest: Path, name: str) -> Path:
    """Write a healthy plugin called `name` into `dest`/`name`; return its folder."""
    folder = dest / name
    shutil.copytree(FAULTS / "healthy", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "name": name}))
    return folder


def history(record: Any) -> list[tuple[str, str, str | None]]:
    rows = PluginStateTransition.objects.filter(plugin_id=record.pk).order_by("id")
    return [(t.from_state, t.to_state, t.reason) for t in rows]


def test_it_keeps_a_removed_plugin_as_unavailable(
    sync_plugins: Any, tmp_path: Path, api_client: APIClient
) -> None:
    keep, gone = make_plugin(tmp_path, "keep"), make_plugin(tmp_path, "gone")
    sync_plugins(tmp_path)
    shutil.rmtree(gone)

    outcomes = sync_plugins(tmp_path)

    reason = f"Plugin folder {gone.resolve()} no longer exists (removed since the last sync)"
    assert sorted((o.name, o.state, o.reason) for o in outcomes) == [
        ("gone", "UNAVAILABLE", reason),
        ("keep", "INITIALIZED", None),
    ]
    record = record_at(gone)
    assert (record.state, record.reason, record.missing) == (PluginState.UNAVAILABLE, reason, True)
    assert (
        record.hint == "restore the plugin folder and re-probe, or delete this record in the admin"
    )
    assert record.accepting_jobs is False
    assert record_at(keep).state == PluginState.INITIALIZED
    listed = {p["name"]: p for p in api_client.get("/v1/plugins").json()}
    assert (listed["gone"]["state"], listed["gone"]["reason"]) == ("UNAVAILABLE", reason)
    assert listed["gone"]["accepting_jobs"] is False
    assert listed["keep"]["state"] == "INITIALIZED"


def test_it_brings_a_re_added_plugin_back_and_records_the_history(
    sync_plugins: Any, tmp_path: Path
) -> None:
    folder = make_plugin(tmp_path, "flaky")
    sync_plugins(tmp_path)
    shutil.move(folder, tmp_path.parent / f"{tmp_path.name}-aside")
    sync_plugins(tmp_path)
    shutil.move(tmp_path.parent / f"{tmp_path.name}-aside", folder)

    sync_plugins(tmp_path)

    record = record_at(folder)
    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert (record.missing, record.fault_origin) == (False, FaultOrigin.NONE)
    assert record.loaded_at is not None
    assert history(record) == [
        ("LOADED", "INITIALIZED", None),
        (
            "INITIALIZED",
            "UNAVAILABLE",
            f"Plugin folder {folder.resolve()} no longer exists (removed since the last sync)",
        ),
        ("UNAVAILABLE", "INITIALIZED", None),
    ]


def test_it_records_no_transition_when_nothing_changed(sync_plugins: Any, tmp_path: Path) -> None:
    make_plugin(tmp_path, "steady")
    shutil.copytree(FAULTS / "init_error", tmp_path / "init_error")
    sync_plugins(tmp_path)
    before = {r.name: r.probed_at for r in PluginRecord.objects.all()}

    sync_plugins(tmp_path)

    assert PluginStateTransition.objects.count() == 2
    for record in PluginRecord.objects.all():
        assert record.probed_at > before[record.name]
    assert history(record_at(tmp_path / "init_error")) == [
        ("LOADED", "FAILED", "InitError: ValueError: model path not configured")
    ]


def test_it_records_a_new_reason_as_a_transition(sync_plugins: Any, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path, "evolving")
    (folder / "plugin.py").write_text(BROKEN)
    sync_plugins(tmp_path)
    (folder / "plugin.py").write_text('raise OSError("disk on fire")\n')

    sync_plugins(tmp_path)

    assert history(record_at(folder)) == [
        ("LOADED", "FAILED", "ImportError: RuntimeError: broken on purpose"),
        ("FAILED", "FAILED", "ImportError: OSError: disk on fire"),
    ]


def test_it_re_probes_only_the_selected_plugins(sync_plugins: Any, tmp_path: Path) -> None:
    chosen, other = make_plugin(tmp_path, "chosen"), make_plugin(tmp_path, "other")
    sync_plugins(tmp_path)
    other_before = record_at(other)
    for folder in (chosen, other):
        (folder / "plugin.py").write_text(BROKEN)

    outcomes = sync_plugins(tmp_path, names=["chosen"])

    assert outcomes == [
        SyncOutcome(
            "chosen",
            str(chosen.resolve()),
            "FAILED",
            "ImportError: RuntimeError: broken on purpose",
        )
    ]
    assert record_at(chosen).state == PluginState.FAILED
    untouched = record_at(other)
    assert (untouched.state, untouched.reason) == (PluginState.INITIALIZED, None)
    assert untouched.probed_at == other_before.probed_at
    assert untouched.updated_at == other_before.updated_at
    assert history(untouched) == [("LOADED", "INITIALIZED", None)]


def test_it_does_not_mark_unselected_plugins_missing_on_a_selective_re_probe(
    sync_plugins: Any, tmp_path: Path
) -> None:
    make_plugin(tmp_path, "chosen")
    other = make_plugin(tmp_path, "other")
    sync_plugins(tmp_path)
    shutil.rmtree(other)

    sync_plugins(tmp_path, names=["chosen"])

    record = record_at(other)
    assert (record.state, record.missing) == (PluginState.INITIALIZED, False)


def test_it_marks_a_selected_plugin_missing_when_its_folder_is_gone(
    sync_plugins: Any, tmp_path: Path
) -> None:
    gone = make_plugin(tmp_path, "gone")
    sync_plugins(tmp_path)
    shutil.rmtree(gone)

    outcomes = sync_plugins(tmp_path, names=["gone"])

    reason = f"Plugin folder {gone.resolve()} no longer exists (removed since the last sync)"
    assert outcomes == [SyncOutcome("gone", str(gone.resolve()), "UNAVAILABLE", reason)]
    record = record_at(gone)
    assert (record.state, record.missing, record.accepting_jobs) == (
        PluginState.UNAVAILABLE,
        True,
        False,
    )


def test_it_clears_runtime_failure_and_quarantine_on_re_probe(
    sync_plugins: Any, tmp_path: Path, settings: Any
) -> None:
    settings.WARDEN_QUARANTINE_AFTER = 3
    folder = make_plugin(tmp_path, "crashy")
    sync_plugins(tmp_path)
    record = record_at(folder)
    for _ in range(3):
        plugin_record_outcome(
            plugin_id=record.pk,
            error_type="PluginCrashed",
            reason="Plugin process crashed (signal SIGSEGV)",
            execution_ms=12.0,
        )
    record.refresh_from_db()
    quarantine_reason = (
        "Quarantined after 3 consecutive crashes/timeouts/memory kills; "
        "last: PluginCrashed: Plugin process crashed (signal SIGSEGV)"
    )
    assert (record.state, record.reason, record.quarantined) == (
        PluginState.FAILED,
        quarantine_reason,
        True,
    )
    assert (record.fault_origin, record.accepting_jobs) == (FaultOrigin.RUNTIME, False)

    sync_plugins(tmp_path, names=[record.name])

    record.refresh_from_db()
    assert (record.state, record.reason, record.hint) == (PluginState.INITIALIZED, None, None)
    assert (record.quarantined, record.fault_origin, record.accepting_jobs) == (
        False,
        FaultOrigin.NONE,
        True,
    )
    assert (record.consecutive_failures, record.consecutive_severe) == (0, 0)
    # The history of executions survives the re-probe.
    assert (record.error_count, record.success_count) == (3, 0)
    assert record.recent_execution_ms == [12.0, 12.0, 12.0]
    assert history(record) == [
        ("LOADED", "INITIALIZED", None),
        ("INITIALIZED", "FAILED", "PluginCrashed: Plugin process crashed (signal SIGSEGV)"),
        ("FAILED", "FAILED", quarantine_reason),
        ("FAILED", "INITIALIZED", None),
    ]


def test_it_clears_the_traceback_once_a_plugin_is_fixed(sync_plugins: Any, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path, "mended")
    original = (folder / "plugin.py").read_text()
    (folder / "plugin.py").write_text(BROKEN)
    sync_plugins(tmp_path)
    assert record_at(folder).probe_traceback.endswith("RuntimeError: broken on purpose\n")
    (folder / "plugin.py").write_text(original)

    sync_plugins(tmp_path)

    record = record_at(folder)
    assert (record.state, record.reason, record.probe_traceback) == (
        PluginState.INITIALIZED,
        None,
        "",
    )
    assert record.loaded_at is not None


def test_it_refreshes_the_record_from_a_changed_manifest(sync_plugins: Any, tmp_path: Path) -> None:
    folder = make_plugin(tmp_path, "growing")
    sync_plugins(tmp_path)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest.update(
        version="2.0.0",
        limits={"timeout_s": 7, "memory_mb": 300},
        tools=[{"name": "first"}, {"name": "second"}],
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))

    sync_plugins(tmp_path)

    record = record_at(folder)
    assert (record.version, record.timeout_s, record.memory_mb) == ("2.0.0", 7.0, 300)
    assert record.tools == [{"name": "first"}, {"name": "second"}]
    assert record.state == PluginState.INITIALIZED
