"""Everything Warden writes has a retention rule: job rows, stored inputs and their folders,
inputs of refused jobs, inputs left without a job, plugin state history, expired sessions."""

from __future__ import annotations

import os
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.contrib.sessions.models import Session
from django.utils import timezone

from execution_app import services
from execution_app.models import Job, JobInputData
from execution_app.services import job_dispatch, jobs_purge
from plugins_app.models import PluginRecord, PluginStateTransition
from plugins_app.services import plugin_record_outcome
from project.errors import WardenError
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 32


@pytest.fixture
def make_job(sync_plugins, settings):
    """Jobs whose input is a file in storage (WARDEN_INPUT_STORAGE=storage)."""
    settings.WARDEN_INPUT_STORAGE = "storage"
    sync_plugins(RUNTIME_PLUGINS)

    def make(file_bytes: bytes | None = PNG) -> Job:
        return pending_job(tool="image" if file_bytes else "ok", file_bytes=file_bytes)

    return make


def test_it_deletes_the_input_file_of_a_purged_job(make_job) -> None:
    job = make_job()
    stored = Path(job.input_file.path)
    assert stored.read_bytes() == PNG
    Job.objects.filter(pk=job.pk).update(
        status="SUCCESS", finished_at=timezone.now() - timedelta(days=31)
    )

    assert jobs_purge(older_than_days=30) == 1

    assert not stored.exists()


def test_it_deletes_the_input_of_a_job_refused_at_dispatch(make_job, monkeypatch) -> None:
    monkeypatch.setattr(services, "queue_has_live_worker", lambda queue: False)
    job = make_job()
    stored = Path(job.input_file.path)

    with pytest.raises(WardenError) as refused:
        job_dispatch(job)

    assert refused.value.type == "ServiceUnavailable"
    assert not stored.exists()
    job.refresh_from_db()
    assert (job.status, job.input_file.name, job.input_size) == ("FAILED", "", len(PNG))


def test_it_deletes_an_input_kept_in_the_database_with_its_job(
    make_job, settings, monkeypatch
) -> None:
    settings.WARDEN_INPUT_STORAGE = "database"
    purged, refused = make_job(), make_job()
    assert JobInputData.objects.count() == 2
    Job.objects.filter(pk=purged.pk).update(
        status="SUCCESS", finished_at=timezone.now() - timedelta(days=31)
    )
    monkeypatch.setattr(services, "queue_has_live_worker", lambda queue: False)

    assert jobs_purge(older_than_days=30) == 1
    with pytest.raises(WardenError):
        job_dispatch(refused)

    assert JobInputData.objects.count() == 0
    refused.refresh_from_db()
    assert (refused.status, refused.input_size) == ("FAILED", len(PNG))


def test_it_sweeps_inputs_whose_job_row_is_gone(make_job) -> None:
    old, fresh, kept = make_job(), make_job(), make_job()
    old_file, fresh_file = Path(old.input_file.path), Path(fresh.input_file.path)
    inputs = old_file.parent
    legacy = inputs / str(uuid.uuid4())  # as earlier versions stored an input: a folder
    legacy.mkdir()
    (legacy / "input").write_bytes(PNG)
    stranger = inputs / "README"  # not a job's: left alone
    stranger.write_text("not an input")
    an_hour_ago = time.time() - 3601
    for path in (old_file, legacy / "input", stranger):
        os.utime(path, (an_hour_ago, an_hour_ago))
    Job.objects.filter(pk__in=[old.pk, fresh.pk]).delete()  # e.g. from the admin

    assert jobs_purge() == 0

    assert not old_file.exists()
    assert not legacy.exists()
    assert fresh_file.exists()  # may belong to a job whose row is not committed yet
    assert Path(kept.input_file.path).exists()
    assert stranger.exists()


def test_it_deletes_expired_sessions(db) -> None:
    live, expired = SessionStore(), SessionStore()
    live.create()
    expired.set_expiry(-60)
    expired.create()

    jobs_purge()

    assert list(Session.objects.values_list("session_key", flat=True)) == [live.session_key]


def test_it_keeps_a_bounded_state_history_per_plugin(sync_plugins, settings) -> None:
    settings.WARDEN_STATE_HISTORY_KEEP = 5
    sync_plugins(RUNTIME_PLUGINS)
    faulty = PluginRecord.objects.get(name="faulty")

    for n in range(12):  # FAILED and back: a state change, hence a history row, every time
        plugin_record_outcome(
            plugin_id=faulty.pk, error_type="PluginError", reason=f"boom {n}", execution_ms=1.0
        )
        plugin_record_outcome(plugin_id=faulty.pk, error_type=None, reason=None, execution_ms=1.0)

    rows = list(PluginStateTransition.objects.filter(plugin=faulty).order_by("id"))
    assert len(rows) == 5
    assert [(r.to_state, r.reason) for r in rows[-2:]] == [
        ("FAILED", "PluginError: boom 11"),
        ("INITIALIZED", None),
    ]
