"""Structured logs: JSON lines or readable text, the request id on web requests, one line per job
end carrying job id, plugin, tool, status, error type and duration, correlated across processes."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from django.conf import settings

from execution_app.models import Job
from execution_app.services import job_finish
from project.errors import WardenError
from project.logs import (
    ContextFilter,
    JsonFormatter,
    TextFormatter,
    bound,
    logging_config,
)
from tests.conftest import RUNTIME_PLUGINS, worker_env
from tests.harness import start_worker, wait_until
from tests.jobs import pending_job

GPU_PLUGINS = RUNTIME_PLUGINS.parent / "gpu"


def record(message: str = "hello %s", *args: object, **extra: object) -> logging.LogRecord:
    rec = logging.LogRecord("warden.jobs", logging.INFO, __file__, 1, message, args, None)
    rec.__dict__.update(extra)
    ContextFilter().filter(rec)
    return rec


def test_it_writes_one_json_object_per_line_with_every_extra_field():
    with bound(request_id="req-1"):
        line = JsonFormatter().format(record("job %s done", "j1", job_id="j1", duration_ms=1.5))

    entry = json.loads(line)
    assert "\n" not in line
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", entry.pop("ts"))
    assert entry == {
        "level": "INFO",
        "logger": "warden.jobs",
        "message": "job j1 done",
        "job_id": "j1",
        "duration_ms": 1.5,
        "request_id": "req-1",
    }


def test_it_keeps_text_lines_readable_with_the_context_at_the_end():
    with bound(request_id="req-2", job_id="j2"):
        line = TextFormatter().format(record("GET /v1/plugins 200"))
    plain = TextFormatter().format(record("no context"))

    assert line.endswith(" INFO warden.jobs: GET /v1/plugins 200 [request_id=req-2 job_id=j2]")
    assert plain.endswith(" INFO warden.jobs: no context")


def test_it_refuses_an_unknown_log_format():
    with pytest.raises(ValueError, match="WARDEN_LOG_FORMAT must be one of text, json, not 'xml'"):
        logging_config(fmt="xml", level="INFO")


def test_it_echoes_the_request_id_and_logs_it_with_the_access_line(api_client, db, caplog):
    caplog.set_level(logging.DEBUG, logger="warden.access")

    given = api_client.get("/v1/plugins", HTTP_X_REQUEST_ID="client-id.42")
    unsafe = api_client.get("/v1/plugins", HTTP_X_REQUEST_ID="bad id\nforged line")
    probe = api_client.get("/health/live")

    assert given["X-Request-ID"] == "client-id.42"
    assert re.fullmatch(r"[0-9a-f]{32}", unsafe["X-Request-ID"])
    lines = [r for r in caplog.records if r.name == "warden.access"]
    assert [(r.levelno, r.getMessage().rsplit(" ", 2)[0]) for r in lines] == [
        (logging.INFO, "GET /v1/plugins 200"),
        (logging.INFO, "GET /v1/plugins 200"),
        (logging.DEBUG, "GET /health/live 200"),
    ]
    assert [r.request_id for r in lines] == [
        "client-id.42",
        unsafe["X-Request-ID"],
        probe["X-Request-ID"],
    ]
    assert (lines[0].route, lines[0].status, lines[0].method) == ("v1/plugins", 200, "GET")


def test_it_keeps_a_forged_newline_in_the_url_out_of_the_access_line(api_client, db, caplog):
    caplog.set_level(logging.INFO, logger="warden.access")

    api_client.get("/v1/nope%0A2026-01-01 INFO forged")

    [line] = [r for r in caplog.records if r.name == "warden.access"]
    assert "\n" not in line.getMessage()
    assert line.path == "/v1/nope?2026-01-01 INFO forged"


def test_it_writes_no_access_lines_when_turned_off(api_client, db, caplog, settings):
    settings.WARDEN_ACCESS_LOG = False
    caplog.set_level(logging.DEBUG, logger="warden.access")

    response = api_client.get("/v1/plugins")

    assert response.status_code == 200 and "X-Request-ID" in response
    assert [r for r in caplog.records if r.name == "warden.access"] == []


def test_it_logs_every_job_end_once_with_its_fields(
    sync_plugins, caplog, django_capture_on_commit_callbacks
):
    sync_plugins(RUNTIME_PLUGINS)
    job = pending_job(tool="raise")
    caplog.set_level(logging.INFO, logger="warden.jobs")

    with django_capture_on_commit_callbacks(execute=True):
        first = job_finish(
            job_id=str(job.pk),
            error=WardenError("PluginError", "Tool 'raise' of plugin 'faulty' raised boom"),
            execution_ms=12.34567,
            peak_memory_mb=3.21,
        )
        second = job_finish(job_id=str(job.pk), error=WardenError("Cancelled", "late"))

    ends = [r for r in caplog.records if r.name == "warden.jobs"]
    assert (first, second) == (True, False)
    assert len(ends) == 1
    end = ends[0]
    assert end.levelno == logging.WARNING  # a plugin fault
    assert end.getMessage() == (
        f"job {job.pk} faulty.raise FAILED PluginError in 12.3 ms: "
        "Tool 'raise' of plugin 'faulty' raised boom"
    )
    assert {
        k: getattr(end, k)
        for k in (
            "event",
            "job_id",
            "plugin",
            "tool",
            "status",
            "error_type",
            "duration_ms",
            "peak_memory_mb",
            "queue",
        )
    } == {
        "event": "job_end",
        "job_id": str(job.pk),
        "plugin": "faulty",
        "tool": "raise",
        "status": "FAILED",
        "error_type": "PluginError",
        "duration_ms": 12.346,
        "peak_memory_mb": 3.2,
        "queue": "cpu",
    }


@pytest.mark.slow
def test_it_correlates_web_and_worker_json_lines_by_request_and_job_id(
    live, auth_client, sync_plugins, samples, monkeypatch, caplog
):
    monkeypatch.setattr("plugins_app.dependencies.check_gpu", lambda: None)
    sync_plugins(samples("echo"), RUNTIME_PLUGINS, GPU_PLUGINS)
    log = Path(settings.VAR_DIR) / "json-worker.log"
    worker = start_worker(
        worker_env(WARDEN_LOG_FORMAT="json"), log, name="jsonlog", queues="gpu", concurrency=1
    )
    caplog.set_level(logging.INFO, logger="warden.access")
    try:
        response = auth_client.post(
            "/v1/analyze-execution",
            {"plugin": "gpu_sleeper", "tool": "where"},
            format="json",
            HTTP_X_REQUEST_ID="req-json-1",
        )
        assert response.status_code == 200, response.json()
        job_id = response.json()["job_id"]

        def job_end_line() -> dict | None:
            for line in log.read_text().splitlines():
                if line.startswith("{") and f'"job_id": "{job_id}"' in line:
                    entry = json.loads(line)
                    if entry.get("event") == "job_end":
                        return entry
            return None

        end = wait_until(job_end_line, 10, "the worker's job_end line")
    finally:
        worker.stop()

    assert {
        k: end[k]
        for k in (
            "level",
            "logger",
            "job_id",
            "plugin",
            "tool",
            "status",
            "error_type",
            "request_id",
            "queue",
        )
    } == {
        "level": "INFO",
        "logger": "warden.jobs",
        "job_id": job_id,
        "plugin": "gpu_sleeper",
        "tool": "where",
        "status": "SUCCESS",
        "error_type": None,
        "request_id": "req-json-1",
        "queue": "gpu",
    }
    assert end["duration_ms"] == pytest.approx(Job.objects.get(pk=job_id).execution_time_ms)
    # Every line the worker logged is one JSON object (its start-up banner is not a log line).
    logged = [line for line in log.read_text().splitlines() if line.startswith("{")]
    assert len(logged) >= 3 and all(json.loads(line)["level"] for line in logged)
    access = [r for r in caplog.records if r.name == "warden.access"]
    assert [(r.request_id, r.job_id) for r in access] == [("req-json-1", job_id)]
