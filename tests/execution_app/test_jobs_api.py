"""Jobs API and job services without a worker: get, list, cancel, reaper, retention."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from execution_app.models import Job, JobInputData
from execution_app.services import (
    job_claim,
    job_input_read,
    jobs_purge,
    jobs_reap,
)
from plugins_app.models import PluginRecord
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job


@pytest.fixture
def make_job(sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)

    def make(tool="ok", args=None, file_bytes=None):
        return pending_job(tool=tool, args=args, file_bytes=file_bytes)

    return make


def test_it_returns_a_job(make_job, auth_client):
    job = make_job(args={"n": 2})

    response = auth_client.get(f"/v1/jobs/{job.pk}")

    assert response.status_code == 200
    body = response.json()
    assert body["job_id"] == str(job.pk)
    assert (body["plugin"], body["tool"], body["status"], body["args"]) == (
        "faulty",
        "ok",
        "PENDING",
        {"n": 2},
    )
    assert (body["timeout_s"], body["hard_timeout_s"], body["memory_mb"], body["queue"]) == (
        2.0,
        4.0,
        200,
        "cpu",
    )
    assert body["url"] == f"/v1/jobs/{job.pk}"
    assert "traceback" not in body


@pytest.mark.parametrize("job_id", ["00000000-0000-0000-0000-000000000000", "not-a-uuid"])
def test_it_answers_404_for_an_unknown_job(make_job, auth_client, job_id):
    response = auth_client.get(f"/v1/jobs/{job_id}")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "NotFound"
    assert response.json()["error"]["message"] == f"No job with id '{job_id}'"


def test_it_requires_a_token_for_jobs(make_job, api_client):
    job = make_job()
    for response in (
        api_client.get("/v1/jobs"),
        api_client.get(f"/v1/jobs/{job.pk}"),
        api_client.delete(f"/v1/jobs/{job.pk}"),
    ):
        assert response.status_code == 401
        assert response.json()["error"]["type"] == "AuthenticationFailed"
    assert Job.objects.get(pk=job.pk).status == "PENDING"


def test_it_lists_jobs_newest_first_with_filters_and_pages(make_job, auth_client):
    jobs = [make_job() for _ in range(3)]
    Job.objects.filter(pk=jobs[0].pk).update(status="SUCCESS")

    everything = auth_client.get("/v1/jobs").json()
    successes = auth_client.get("/v1/jobs?status=SUCCESS&plugin=faulty").json()
    page = auth_client.get("/v1/jobs?limit=1&offset=1").json()
    other = auth_client.get("/v1/jobs?plugin=echo").json()

    assert [j["job_id"] for j in everything["results"]] == [str(j.pk) for j in reversed(jobs)]
    assert everything["count"] == 3
    assert [j["job_id"] for j in successes["results"]] == [str(jobs[0].pk)]
    assert [j["job_id"] for j in page["results"]] == [str(jobs[1].pk)]
    assert page["next"] and page["previous"]
    assert other["count"] == 0


def test_it_rejects_an_unknown_status_filter(make_job, auth_client):
    response = auth_client.get("/v1/jobs?status=DONE")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "ValidationError"
    assert error["message"] == "Unknown status 'DONE' (one of PENDING, RUNNING, SUCCESS, FAILED)"


def test_it_cancels_a_pending_job_once(make_job, auth_client):
    job = make_job()

    first = auth_client.delete(f"/v1/jobs/{job.pk}")
    second = auth_client.delete(f"/v1/jobs/{job.pk}")

    assert first.status_code == 200
    assert first.json()["status"] == "FAILED"
    assert first.json()["error"]["error"]["type"] == "Cancelled"
    assert first.json()["error"]["error"]["details"] == {"cancelled_while": "PENDING"}
    assert second.status_code == 409
    assert second.json()["error"]["type"] == "Conflict"
    assert second.json()["error"]["message"] == f"Job {job.pk} already finished with status FAILED"
    faulty = PluginRecord.objects.get(name="faulty")
    assert (faulty.error_count, faulty.state) == (0, "INITIALIZED")  # a cancel is no plugin fault
    assert (
        job_claim(job_id=str(job.pk), hard_timeout_s=4.0) is None
    )  # a late delivery never runs it


def test_it_claims_a_job_only_once(make_job, settings):
    settings.WARDEN_LOAD_TIMEOUT_S = 6.5
    job = make_job()

    first = job_claim(job_id=str(job.pk), hard_timeout_s=4.0)
    second = job_claim(job_id=str(job.pk), hard_timeout_s=4.0)

    assert first is not None and first.status == "RUNNING"
    assert second is None
    job.refresh_from_db()
    assert job.attempts == 2
    # The reaper's deadline leaves room for loading the plugin on first use.
    assert job.deadline_at == job.started_at + timedelta(seconds=4 + 6.5)


def test_it_reaps_stale_pending_and_running_jobs(make_job, settings):
    settings.WARDEN_PENDING_TTL_S = 60
    settings.WARDEN_REAPER_GRACE_S = 30
    old_pending, fresh_pending, old_running, fresh_running = (make_job() for _ in range(4))
    Job.objects.filter(pk=old_pending.pk).update(created_at=timezone.now() - timedelta(seconds=61))
    for job in (old_running, fresh_running):
        job_claim(job_id=str(job.pk), hard_timeout_s=4.0)
    Job.objects.filter(pk=old_running.pk).update(
        deadline_at=timezone.now() - timedelta(seconds=31), worker_host="lost-host"
    )

    counts = jobs_reap()

    assert counts == {"running": 1, "pending": 1}
    statuses = {j.pk: (j.status, j.error_type) for j in Job.objects.all()}
    assert statuses[old_pending.pk] == ("FAILED", "ServiceUnavailable")
    assert statuses[old_running.pk] == ("FAILED", "ServiceUnavailable")
    assert statuses[fresh_pending.pk] == ("PENDING", "")
    assert statuses[fresh_running.pk] == ("RUNNING", "")
    reaped = Job.objects.get(pk=old_running.pk).error["error"]
    assert reaped["message"] == (
        "Job of plugin 'faulty' was still RUNNING past its 4 s hard deadline; "
        "its worker died or lost contact"
    )
    assert "lost-host" not in str(Job.objects.get(pk=old_running.pk).error)  # admin-only
    assert Job.objects.get(pk=old_running.pk).traceback == (
        "reaped: worker host lost-host died or lost contact"
    )
    assert PluginRecord.objects.get(name="faulty").error_count == 0
    assert jobs_reap() == {"running": 0, "pending": 0}


@pytest.mark.parametrize("storage", ["database", "storage"])
def test_it_purges_old_finished_jobs_and_their_inputs(make_job, settings, storage):
    settings.WARDEN_INPUT_STORAGE = storage
    png = b"\x89PNG\r\n\x1a\n" + b"\0" * 32
    old = make_job(tool="image", file_bytes=png)
    recent = make_job(tool="image", file_bytes=png)
    active = make_job(tool="image", file_bytes=png)
    long_ago = timezone.now() - timedelta(days=31)
    Job.objects.filter(pk__in=[old.pk, recent.pk]).update(
        status="SUCCESS", finished_at=timezone.now()
    )
    Job.objects.filter(pk=old.pk).update(finished_at=long_ago)
    Job.objects.filter(pk=active.pk).update(created_at=long_ago)
    assert [job_input_read(j) for j in (old, recent, active)] == [png] * 3
    old_path = old.input_file.path if storage == "storage" else None

    assert jobs_purge(older_than_days=30) == 1

    assert set(Job.objects.values_list("pk", flat=True)) == {recent.pk, active.pk}
    assert set(JobInputData.objects.values_list("job_id", flat=True)) == (
        {recent.pk, active.pk} if storage == "database" else set()
    )
    if old_path is not None:
        import os

        assert not os.path.exists(old_path)
        assert os.path.exists(recent.input_file.path) and os.path.exists(active.input_file.path)
    assert [job_input_read(j) for j in (recent, active)] == [png] * 2


def test_it_renders_a_job_as_the_model_serializer_would(make_job) -> None:
    from rest_framework import serializers

    from execution_app.serializers import JobSerializer

    job = make_job()
    Job.objects.filter(pk=job.pk).update(
        status="SUCCESS",
        started_at=timezone.now() - timedelta(seconds=2),
        finished_at=timezone.now(),
        result={"text": "é", "n": [1, 2.5]},
        execution_time_ms=12.345,
        peak_memory_mb=3,
    )
    job.refresh_from_db()

    fast = JobSerializer(job).data
    walked = serializers.ModelSerializer.to_representation(JobSerializer(), job)

    assert dict(fast) == dict(walked)
    assert fast["finished_at"].endswith("Z") and fast["peak_memory_mb"] == 3.0
