"""/metrics: the registry's numbers after known jobs on a real worker, HTTP request metrics summed
over several gunicorn processes, bounded queries, and the access rule."""

from __future__ import annotations

import socket
import threading
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from prometheus_client.parser import text_string_to_metric_families

from execution_app.models import Job
from tests.conftest import worker_env
from tests.harness import free_port, start_gunicorn, wait_until

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of an exposition, keyed by (name, labels)."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def scrape(client) -> Samples:
    response = client.get("/metrics")
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"].startswith("text/plain")
    return parse(response.content.decode())


def run(auth_client, tool: str, expect: int) -> str:
    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "faulty", "tool": tool}, format="json"
    )
    assert response.status_code == expect, response.json()
    body = response.json()
    return body.get("job_id") or body["error"]["job_id"]


@pytest.mark.slow
def test_it_exports_exact_metrics_after_known_jobs(live, auth_client, api_client):
    for _ in range(3):
        run(auth_client, "ok", 200)
    for _ in range(2):
        run(auth_client, "raise", 400)
    run(auth_client, "invalid_input", 400)

    samples = scrape(api_client)

    host = socket.gethostname()
    faulty = {"plugin": "faulty"}
    expected = {
        ("warden_up", (("component", "database"),)): 1,
        ("warden_up", (("component", "broker"),)): 1,
        ("warden_plugin_success_total", (("plugin", "faulty"),)): 3,
        ("warden_plugin_errors_total", (("plugin", "faulty"),)): 2,  # ValidationError: no fault
        ("warden_plugin_consecutive_failures", (("plugin", "faulty"),)): 2,
        ("warden_plugin_accepting_jobs", (("plugin", "faulty"),)): 1,
        ("warden_plugin_quarantined", (("plugin", "faulty"),)): 0,
        ("warden_plugin_memory_limit_megabytes", (("plugin", "faulty"),)): 200,
        ("warden_plugin_state", (("plugin", "faulty"), ("state", "FAILED"))): 1,
        ("warden_plugin_state", (("plugin", "faulty"), ("state", "INITIALIZED"))): 0,
        ("warden_plugin_state", (("plugin", "echo"), ("state", "INITIALIZED"))): 1,
        ("warden_plugin_success_total", (("plugin", "echo"),)): 0,
        ("warden_plugins", (("state", "INITIALIZED"),)): 2,  # echo and spawner
        ("warden_plugins", (("state", "FAILED"),)): 1,
        ("warden_plugins", (("state", "UNAVAILABLE"),)): 0,
        ("warden_plugins_quarantined", ()): 0,
        (
            "warden_jobs_finished_total",
            (("plugin", "faulty"), ("status", "SUCCESS"), ("error_type", "")),
        ): 3,
        (
            "warden_jobs_finished_total",
            (("plugin", "faulty"), ("status", "FAILED"), ("error_type", "PluginError")),
        ): 2,
        (
            "warden_jobs_finished_total",
            (("plugin", "faulty"), ("status", "FAILED"), ("error_type", "ValidationError")),
        ): 1,
        ("warden_job_duration_seconds_count", (("plugin", "faulty"),)): 6,
        ("warden_job_duration_seconds_bucket", (("plugin", "faulty"), ("le", "+Inf"))): 6,
        ("warden_job_peak_memory_megabytes_count", (("plugin", "faulty"),)): 6,
        ("warden_jobs_active", (("status", "RUNNING"),)): 0,
        ("warden_jobs_active", (("status", "PENDING"),)): 0,
        ("warden_queue_depth", (("queue", "cpu"),)): 0,
        ("warden_queue_workers", (("queue", "cpu"),)): 1,
        ("warden_workers_live", (("queue", "cpu"), ("host", host))): 1,
    }
    actual = {key: value(samples, key[0], **dict(key[1])) for key in expected}
    assert actual == expected
    # The duration histogram matches the jobs' own recorded times.
    times = [j.execution_time_ms for j in Job.objects.all()]
    recorded = value(samples, "warden_job_duration_seconds_sum", **faulty)
    assert recorded == pytest.approx(sum(times) / 1000, abs=1e-9)
    for le in ("0.01", "0.05", "0.1"):
        in_bucket = value(samples, "warden_job_duration_seconds_bucket", **faulty, le=le)
        assert in_bucket == sum(t <= float(le) * 1000 for t in times)


def test_it_reads_a_fixed_number_of_queries_whatever_the_job_count(
    db, api_client, redis_proc, sync_plugins, samples
):
    from execution_app.services import job_finish
    from plugins_app.models import PluginRecord

    sync_plugins(samples("echo"))
    plugin = PluginRecord.objects.get(name="echo")

    def make(n: int) -> None:
        jobs = Job.objects.bulk_create(
            Job(
                plugin=plugin,
                plugin_name="echo",
                tool="echo",
                timeout_s=1,
                hard_timeout_s=2,
                memory_mb=10,
            )
            for _ in range(n)
        )
        for job in jobs:
            job_finish(job_id=str(job.pk), result={}, execution_ms=3.0, peak_memory_mb=1.0)

    make(3)
    with CaptureQueriesContext(connection) as few:
        first = scrape(api_client)
    make(200)
    with CaptureQueriesContext(connection) as many:
        second = scrape(api_client)

    # plugins, state counts, job outcomes, jobs in flight: 4, however many jobs exist.
    assert len(few) == len(many) == 4
    key = {"plugin": "echo", "status": "SUCCESS", "error_type": ""}
    assert value(first, "warden_jobs_finished_total", **key) == 3
    assert value(second, "warden_jobs_finished_total", **key) == 203
    # Purging finished jobs leaves the counters alone (counters never go down).
    Job.objects.all().delete()
    assert value(scrape(api_client), "warden_jobs_finished_total", **key) == 203


def test_it_reports_a_dead_redis_as_down_not_as_an_error(db, api_client, settings):
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"

    samples = scrape(api_client)

    assert value(samples, "warden_up", component="broker") == 0
    assert value(samples, "warden_up", component="database") == 1
    assert value(samples, "warden_queue_depth", queue="cpu") is None


def test_it_requires_a_token_or_staff_when_metrics_are_not_public(db, api_client, settings):
    from rest_framework.authtoken.models import Token

    settings.WARDEN_PUBLIC_METRICS = False
    staff = User.objects.create_user("ops", password="pw", is_staff=True)
    plain = User.objects.create_user("bob", password="pw")
    token = Token.objects.create(user=plain)

    anonymous = api_client.get("/metrics")
    api_client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    with_token = api_client.get("/metrics")
    api_client.credentials()
    api_client.force_login(plain)
    plain_session = api_client.get("/metrics")
    api_client.force_login(staff)
    staff_session = api_client.get("/metrics")

    assert anonymous.status_code == 401
    assert anonymous.json()["error"]["type"] == "AuthenticationFailed"
    assert with_token.status_code == 200
    assert plain_session.status_code == 403
    assert plain_session.json()["error"]["type"] == "PermissionDenied"
    assert staff_session.status_code == 200


@pytest.mark.slow
def test_it_sums_http_requests_over_every_gunicorn_process(transactional_db, tmp_path):
    metrics_dir = tmp_path / "prometheus"
    port = free_port()
    web = start_gunicorn(
        worker_env(PROMETHEUS_MULTIPROC_DIR=str(metrics_dir)),
        Path(settings.VAR_DIR) / "gunicorn-metrics.log",
        port,
    )
    base = f"http://127.0.0.1:{port}"
    sent = 0
    lock = threading.Lock()

    def hammer(n: int) -> None:
        nonlocal sent
        for _ in range(n):
            with urllib.request.urlopen(f"{base}/health/live", timeout=10) as reply:
                assert reply.status == 200
            with lock:
                sent += 1

    def both_processes_served() -> bool:
        threads = [threading.Thread(target=hammer, args=(10,)) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return len(list(metrics_dir.glob("counter_*.db"))) >= 2

    try:
        wait_until(both_processes_served, 60, "both gunicorn workers to serve requests")
        with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
            samples = parse(reply.read().decode())
    finally:
        web.stop()

    labels = {"method": "GET", "route": "health/live", "status": "200"}
    assert value(samples, "warden_http_requests_total", **labels) == sent
    assert (
        value(
            samples, "warden_http_request_duration_seconds_count", method="GET", route="health/live"
        )
        == sent
    )
    assert (
        value(samples, "warden_http_requests_total", method="GET", route="metrics", status="200")
        is None
    )  # the scrape counts itself only after answering
