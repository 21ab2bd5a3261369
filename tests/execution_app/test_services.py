"""Job services racing each other: every conditional update names the exact state it expects."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from execution_app import services
from execution_app.models import Job
from execution_app.services import job_claim, jobs_reap
from plugins_app.models import PluginRecord
from project.errors import WardenError
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job


@pytest.fixture
def make_job(sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)

    return lambda tool="ok": pending_job(tool=tool)


def claim_first(monkeypatch, job):
    """Make a worker's claim of `job` land between the reaper's query and its update."""
    real_finish = services.job_finish
    claimed = []

    def finish_after_claim(**kwargs):
        if kwargs["job_id"] == str(job.pk) and not claimed:
            claimed.append(job_claim(job_id=str(job.pk), hard_timeout_s=4.0))
            assert claimed[0] is not None
        return real_finish(**kwargs)

    monkeypatch.setattr(services, "job_finish", finish_after_claim)


def test_it_never_reaps_a_pending_job_a_worker_has_just_claimed(make_job, settings, monkeypatch):
    settings.WARDEN_PENDING_TTL_S = 60
    job = make_job()
    Job.objects.filter(pk=job.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    claim_first(monkeypatch, job)

    counts = jobs_reap()

    assert counts == {"running": 0, "pending": 0}
    job.refresh_from_db()
    assert (job.status, job.error_type, job.error, job.finished_at) == ("RUNNING", "", None, None)


def test_it_finishes_a_job_only_from_the_state_named(make_job):
    job = make_job()
    error = WardenError("ServiceUnavailable", "no worker")

    assert services.job_finish(job_id=str(job.pk), error=error, expected=("RUNNING",)) is False
    assert Job.objects.get(pk=job.pk).status == "PENDING"
    assert services.job_finish(job_id=str(job.pk), error=error, expected=("PENDING",)) is True
    assert Job.objects.get(pk=job.pk).status == "FAILED"


def test_it_cancels_a_job_claimed_while_the_cancel_was_in_flight(make_job, monkeypatch):
    job = make_job()  # read as PENDING by the API ...
    claim_first(monkeypatch, job)  # ... and claimed before the cancel's update lands
    stopped = []
    monkeypatch.setattr(services, "job_stop", lambda *, job: stopped.append(job.status))

    cancelled = services.job_cancel(job=job)

    assert cancelled.status == "FAILED"
    assert cancelled.error["error"]["details"] == {"cancelled_while": "RUNNING"}
    assert cancelled.error["error"]["message"] == f"Job {job.pk} was cancelled while RUNNING"
    assert stopped == ["FAILED"]
    faulty = PluginRecord.objects.get(name="faulty")
    assert (faulty.error_count, faulty.success_count) == (0, 0)
