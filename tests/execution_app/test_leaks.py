"""What clients and the public health API may read: no echoed input, hosts or driver errors."""

from __future__ import annotations

import pytest
from rest_framework.test import APIClient

from execution_app.models import Job
from execution_app.services import (
    job_claim,
    job_finish,
    memory_error,
)
from execution_app.validation import output_validate
from plugins_app.models import PluginRecord, PluginStateTransition
from project.errors import WardenError
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job

SECRET = "client-secret-4711"


@pytest.fixture
def running_job(sync_plugins):
    sync_plugins(RUNTIME_PLUGINS)

    def make(tool: str = "ok") -> Job:
        job = pending_job(tool=tool)
        return job_claim(job_id=str(job.pk), hard_timeout_s=4.0)

    return make


def public_reason(api_client: APIClient) -> str:
    return api_client.get("/v1/plugins/faulty/health").json()["reason"]


def test_it_keeps_echoed_output_out_of_the_health_reason(running_job, api_client) -> None:
    job = running_job("bad_output")
    tool = job.plugin.tool("bad_output")
    with pytest.raises(WardenError) as caught:
        output_validate(job.plugin, tool, {"value": SECRET}, max_mb=16)

    job_finish(job_id=str(job.pk), error=caught.value, plugin=job.plugin)

    assert SECRET in Job.objects.get(pk=job.pk).error["error"]["message"]  # the caller's own job
    assert public_reason(api_client) == (
        "OutputValidationError: Tool 'bad_output' of plugin 'faulty' returned output violating "
        "its output_schema ('type')"
    )
    assert SECRET not in str(PluginRecord.objects.get(name="faulty").reason)


def test_it_keeps_a_plugin_exception_text_out_of_the_health_reason(running_job, api_client) -> None:
    job = running_job("raise")
    error = WardenError(
        "PluginError",
        f"Tool 'raise' of plugin 'faulty' raised ValueError: bad input {SECRET}",
        reason="Tool 'raise' of plugin 'faulty' raised ValueError",
    )

    job_finish(job_id=str(job.pk), error=error, plugin=job.plugin)

    assert (
        public_reason(api_client)
        == "PluginError: Tool 'raise' of plugin 'faulty' raised ValueError"
    )
    assert not PluginStateTransition.objects.filter(reason__contains=SECRET).exists()


def test_it_words_repeated_memory_kills_the_same(running_job, api_client) -> None:
    for peak in (204.3, 211.9):
        job = running_job("alloc")
        error = memory_error(job, kind="rss", peak_mb=peak)
        job_finish(job_id=str(job.pk), error=error, plugin=job.plugin)
        assert f"grew by {peak} MB" in Job.objects.get(pk=job.pk).error["error"]["message"]

    assert public_reason(api_client) == (
        "MemoryLimitExceeded: Tool 'alloc' of plugin 'faulty' exceeded its 200 MB memory limit; "
        "its process tree was killed"
    )
    faulty = PluginRecord.objects.get(name="faulty")
    assert [(t.from_state, t.to_state) for t in faulty.transitions.order_by("id")] == [
        ("LOADED", "INITIALIZED"),
        ("INITIALIZED", "FAILED"),
    ]


def test_it_shows_no_worker_host_to_clients(running_job, auth_client) -> None:
    job = running_job()

    body = auth_client.get(f"/v1/jobs/{job.pk}").json()

    assert Job.objects.get(pk=job.pk).worker_host  # recorded, for the admin
    assert "worker_host" not in body and "worker_pid" not in body
