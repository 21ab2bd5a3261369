"""The API against a real worker: async jobs, uploads, cancel, routing, lost workers, Redis down."""

from __future__ import annotations

import io
import json
import signal
import socket
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from execution_app.models import Job
from plugins_app.models import PluginRecord
from tests.conftest import RUNTIME_PLUGINS, worker_env
from tests.harness import (
    free_port,
    start_gunicorn,
    start_redis,
    start_worker,
    unchanged_for,
    wait_until,
)
from tests.jobs import pending_job

pytestmark = pytest.mark.slow
GPU_PLUGINS = RUNTIME_PLUGINS.parent / "gpu"


def png_bytes(text: str | None = None, size=(8, 8)) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", size, "white")
    if text:
        ImageDraw.Draw(image).text(
            (20, 20), text, fill="black", font=ImageFont.load_default(size=48)
        )
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_it_runs_an_async_job_to_the_end(live, auth_client, job_done):
    response = auth_client.post(
        "/v1/analyze-execution/async",
        {"plugin": "faulty", "tool": "ok", "args": {"n": 7}},
        format="json",
    )

    assert response.status_code == 202
    accepted = response.json()
    assert accepted["status"] == "PENDING"
    assert accepted["url"] == f"/v1/jobs/{accepted['job_id']}"
    job_done(accepted["job_id"])
    body = auth_client.get(accepted["url"]).json()
    assert (body["status"], body["result"], body["error"]) == (
        "SUCCESS",
        {"ok": True, "n": 7},
        None,
    )
    assert body["attempts"] == 1
    assert "worker_host" not in body and "worker_pid" not in body  # admin-only
    assert Job.objects.get(pk=accepted["job_id"]).worker_host


def test_it_passes_an_uploaded_file_to_the_plugin(live, auth_client):
    upload = io.BytesIO(png_bytes())
    upload.name = "pixel.png"
    response = auth_client.post(
        "/v1/analyze-execution",
        {"plugin": "faulty", "tool": "image", "file": upload},
        format="multipart",
    )

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"size": len(png_bytes()), "mime_type": "image/png"}
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.args == {} and job.input_size == len(png_bytes())


def test_it_runs_ocr_end_to_end(live, auth_client, sync_plugins, samples):
    sync_plugins(samples("ocr"))
    upload = io.BytesIO(png_bytes("WARDEN", size=(400, 120)))
    upload.name = "word.png"

    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "ocr", "file": upload}, format="multipart"
    )

    assert response.status_code == 200, response.json()
    result = response.json()["result"]
    assert result["text"].strip() == "WARDEN"
    assert [w["text"] for w in result["words"]] == ["WARDEN"]


def test_it_never_raises_the_plugin_time_limit(live, auth_client):
    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "faulty", "tool": "ok", "timeout_s": 100}, format="json"
    )

    assert response.status_code == 200
    job = Job.objects.get(pk=response.json()["job_id"])
    assert (job.timeout_s, job.hard_timeout_s) == (2.0, 4.0)


def test_it_cancels_a_running_job_and_keeps_serving(live, auth_client, job_done):
    accepted = auth_client.post(
        "/v1/analyze-execution/async",
        {"plugin": "echo", "tool": "sleep", "args": {"seconds": 4}},
        format="json",
    ).json()
    wait_until(lambda: Job.objects.get(pk=accepted["job_id"]).status == "RUNNING", 20, "job to run")
    assert auth_client.get("/v1/plugins/echo/health").json()["state"] == "RUNNING"
    child = psutil.Process(Job.objects.get(pk=accepted["job_id"]).worker_pid)
    assert child.ppid() == live.pid

    response = auth_client.delete(accepted["url"])

    assert response.status_code == 200
    assert response.json()["status"] == "FAILED"
    assert response.json()["error"]["error"]["type"] == "Cancelled"
    assert response.json()["error"]["error"]["details"] == {"cancelled_while": "RUNNING"}
    wait_until(lambda: not child.is_running(), 10, "the cancelled job's process to die")
    cancelled = Job.objects.get(pk=accepted["job_id"])
    echo = PluginRecord.objects.get(name="echo")
    assert (echo.state, echo.error_count, echo.success_count) == ("INITIALIZED", 0, 0)
    assert auth_client.get("/v1/plugins/echo/health").json()["state"] == "INITIALIZED"
    follow_up = auth_client.post(
        "/v1/analyze-execution", {"plugin": "echo", "args": {"x": 1}}, format="json"
    )
    assert follow_up.status_code == 200

    # Until well past the moment the tool would have returned, nothing about the job changes.
    def snapshot():
        job = Job.objects.get(pk=accepted["job_id"])
        echo = PluginRecord.objects.get(name="echo")
        return (job.status, job.error, job.finished_at, job.result, echo.error_count)

    assert unchanged_for(snapshot, 5) == (
        "FAILED",
        cancelled.error,
        cancelled.finished_at,
        None,
        0,
    )


@pytest.fixture
def gpu_plugin(live, sync_plugins, monkeypatch):
    """A requires_gpu plugin made available by mocking the GPU check (no GPU exists here)."""
    monkeypatch.setattr("plugins_app.dependencies.check_gpu", lambda: None)
    sync_plugins(GPU_PLUGINS)
    assert PluginRecord.objects.get(name="gpu_sleeper").state == "INITIALIZED"


def no_worker_on(queue: str, monkeypatch) -> None:
    """This test's precondition, whatever ran before: no worker announced on `queue` (a worker
    another test SIGKILLed stays announced for the heartbeat TTL), and no cached answer."""
    import redis

    from execution_app import workers

    redis.Redis.from_url(settings.CELERY_BROKER_URL).delete(f"{workers.KEY_PREFIX}:{queue}")
    monkeypatch.setattr(workers, "_seen_live", {})


def test_it_answers_503_when_no_worker_consumes_the_queue(gpu_plugin, auth_client, monkeypatch):
    no_worker_on("gpu", monkeypatch)
    started = time.monotonic()
    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "gpu_sleeper", "tool": "where"}, format="json"
    )

    # At once: not after the synchronous wait for a queued job (its hard limit + margin).
    record = PluginRecord.objects.get(name="gpu_sleeper")
    sync_wait = record.timeout_s + settings.WARDEN_HARD_GRACE_S + settings.WARDEN_SYNC_WAIT_MARGIN_S
    assert time.monotonic() - started < sync_wait
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "ServiceUnavailable"
    assert (
        error["message"] == "No worker is consuming queue 'gpu'; start one (see docs/operations.md)"
    )
    job = Job.objects.get(pk=error["job_id"])
    assert (job.status, job.error_type, job.queue) == ("FAILED", "ServiceUnavailable", "gpu")


def test_it_routes_gpu_plugins_and_reaps_jobs_of_a_killed_worker(
    gpu_plugin, auth_client, settings, monkeypatch
):
    gpu_worker = start_worker(
        worker_env(),
        Path(settings.VAR_DIR) / "gpu-worker.log",
        name="gpu",
        queues="gpu",
        concurrency=1,
    )
    try:
        where = auth_client.post(
            "/v1/analyze-execution", {"plugin": "gpu_sleeper", "tool": "where"}, format="json"
        )
        assert where.status_code == 200, where.json()
        import psutil

        assert psutil.Process(where.json()["result"]["pid"]).ppid() == gpu_worker.pid
        accepted = auth_client.post(
            "/v1/analyze-execution/async",
            {"plugin": "gpu_sleeper", "tool": "sleep", "args": {"seconds": 30}},
            format="json",
        ).json()
        wait_until(
            lambda: Job.objects.get(pk=accepted["job_id"]).status == "RUNNING", 20, "job to run"
        )

        gpu_worker.stop(signal.SIGKILL)  # the whole worker host dies mid-job

        job = Job.objects.get(pk=accepted["job_id"])
        assert job.status == "RUNNING"
        settings.WARDEN_REAPER_GRACE_S = 0
        from execution_app.tasks import reap_jobs

        wait_until(lambda: reap_jobs()["running"] == 1, 20, "the reaper to fail the job")
        job.refresh_from_db()
        assert (job.status, job.error_type) == ("FAILED", "ServiceUnavailable")
        assert job.error["error"]["details"]["reaped"] is True
    finally:
        gpu_worker.stop(signal.SIGKILL)
        no_worker_on("gpu", monkeypatch)  # it cannot withdraw its heartbeat itself


def test_it_answers_503_when_redis_is_down_and_fails_the_job(live, auth_client, redis_proc):
    port = int(settings.CELERY_BROKER_URL.rsplit(":", 1)[1].split("/")[0])
    redis_proc.stop()
    try:
        started = time.monotonic()
        response = auth_client.post(
            "/v1/analyze-execution", {"plugin": "faulty", "tool": "ok"}, format="json"
        )
        elapsed = time.monotonic() - started
    finally:
        restarted = start_redis(port, Path(settings.VAR_DIR) / "redis")
        redis_proc.popen, redis_proc.log = restarted.popen, restarted.log

    # At once: not after the synchronous wait for a queued job (its hard limit + margin).
    assert elapsed < 2 + settings.WARDEN_HARD_GRACE_S + settings.WARDEN_SYNC_WAIT_MARGIN_S
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "ServiceUnavailable"
    job = Job.objects.get(pk=error["job_id"])
    assert (job.status, job.error_type) == ("FAILED", "ServiceUnavailable")

    def serving() -> bool:
        r = auth_client.post(
            "/v1/analyze-execution", {"plugin": "faulty", "tool": "ok"}, format="json"
        )
        return r.status_code == 200

    wait_until(serving, 60, "the worker to reconnect to Redis", interval=0.5)


def test_it_serves_health_while_sync_calls_wait(live, auth_client):
    from rest_framework.authtoken.models import Token

    port = free_port()
    web = start_gunicorn(worker_env(), Path(settings.VAR_DIR) / "gunicorn.log", port)
    token = Token.objects.get().key
    base = f"http://127.0.0.1:{port}"

    def slow_call(results: list) -> None:
        request = urllib.request.Request(
            f"{base}/v1/analyze-execution",
            data=json.dumps({"plugin": "echo", "tool": "sleep", "args": {"seconds": 5}}).encode(),
            headers={"Content-Type": "application/json", "Authorization": f"Token {token}"},
        )
        with urllib.request.urlopen(request, timeout=120) as reply:
            results.append(reply.status)

    try:
        results: list[int] = []
        # Two run, two wait in the queue: the last ends after about 10 s, well inside the
        # synchronous wait (echo's hard limit 12 s + 10 s margin) even on a loaded machine.
        callers = [threading.Thread(target=slow_call, args=(results,)) for _ in range(4)]
        for caller in callers:
            caller.start()
        wait_until(lambda: Job.objects.filter(status="RUNNING").count() == 2, 20, "jobs to run")
        first_two = set(Job.objects.filter(status="RUNNING").values_list("pk", flat=True))
        for _ in range(10):
            with urllib.request.urlopen(f"{base}/v1/plugins", timeout=60) as reply:
                assert reply.status == 200
        # Ordering, not a stopwatch: every health call was answered while the first two sync
        # calls were still waiting for their 5 s jobs (and two more queued behind them).
        returned_meanwhile = list(results)
        still_running = set(Job.objects.filter(status="RUNNING").values_list("pk", flat=True))
        for caller in callers:
            caller.join(timeout=120)
    finally:
        web.stop()

    assert returned_meanwhile == []
    assert still_running == first_two
    assert results == [200] * 4


def test_it_syncs_plugins_when_a_worker_starts(live, settings, tmp_path, samples):
    PluginRecord.objects.all().delete()
    plugin_dir = samples("echo")
    worker = start_worker(
        worker_env(WARDEN_SYNC_ON_WORKER_START="1", WARDEN_PLUGIN_DIRS=str(plugin_dir)),
        Path(settings.VAR_DIR) / "sync-worker.log",
        name="syncer",
        queues="gpu",
        concurrency=1,
    )
    try:
        # The worker announces itself only after its start-up sync, so the record is there now,
        # with this host's entry: the worker's host (its node name's) and the queues it consumes.
        record = PluginRecord.objects.get(name="echo")
        assert (record.state, record.reason) == ("INITIALIZED", None)
        [entry] = record.hosts.all()
        assert (entry.host, entry.queues, entry.state) == (
            socket.gethostname(),
            ["gpu"],
            "INITIALIZED",
        )
        assert entry.location == str((plugin_dir / "echo").resolve())
    finally:
        worker.stop()


def test_it_sends_a_waiting_caller_a_small_result_inline_and_keeps_it_in_the_row(live):
    from celery.result import AsyncResult

    from execution_app.services import _send

    def run(tool: str, args: dict, *, inline: bool) -> tuple[dict, Job]:
        job = pending_job("spawner", tool, args=args)
        _send(job, inline=inline)
        end = AsyncResult(str(job.pk)).get(timeout=30)
        return end, Job.objects.get(pk=job.pk)

    small, small_row = run("ok", {}, inline=True)
    large, large_row = run("big_result", {"mb": 1}, inline=True)  # over WARDEN_INLINE_RESULT_KB
    unasked, unasked_row = run("ok", {}, inline=False)

    assert small == {
        "status": "SUCCESS",
        "inline": True,
        "result": small_row.result,
        "execution_time_ms": small_row.execution_time_ms,
    }
    assert small_row.status == "SUCCESS" and small_row.result["ok"] is True
    assert large == {"status": "SUCCESS", "inline": False}
    assert large_row.status == "SUCCESS" and len(large_row.result["data"]) == 2**20
    assert unasked == {"status": "SUCCESS", "inline": False}
    assert unasked_row.status == "SUCCESS"


def test_a_second_waiter_sees_the_end_after_the_first_forgot_the_result(live):
    from celery.result import AsyncResult

    from execution_app.selectors import job_wait
    from execution_app.services import job_submit

    job = job_submit(plugin_name="echo", tool=None, args={"n": 1}, wait=True)
    waiter = Job.objects.get(pk=job.pk)  # read while still active, like `jobs show --wait`
    first = job_wait(job=job, timeout_s=30)  # the sync caller: reads the result, forgets it
    assert first.status == "SUCCESS"
    assert AsyncResult(str(job.pk)).state == "PENDING"  # nothing stored any more

    started = time.monotonic()
    second = job_wait(job=waiter, timeout_s=30)

    assert second.status == "SUCCESS" and second.result == first.result
    assert time.monotonic() - started < 15  # from the row, not after waiting out its timeout


def test_it_keeps_an_inline_result_out_of_the_worker_log(live, auth_client):
    marker = f"client-data-{uuid.uuid4().hex}"
    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "echo", "args": {"secret": marker}}, format="json"
    )
    assert response.status_code == 200 and marker in json.dumps(response.json()["result"])
    job_id = response.json()["job_id"]

    line = wait_until(
        lambda: next(
            (x for x in live.log_text().splitlines() if job_id in x and "succeeded" in x), None
        ),
        20,
        "the worker to log the task's end",
    )
    assert "'status': 'SUCCESS'" in line
    assert marker not in live.log_text()


def test_it_answers_a_sync_call_and_forgets_the_task_result(live, auth_client):
    from celery.result import AsyncResult

    response = auth_client.post(
        "/v1/analyze-execution", {"plugin": "echo", "args": {"n": 3}}, format="json"
    )

    assert response.status_code == 200, response.content
    body = response.json()
    row = Job.objects.get(pk=body["job_id"])
    assert (body["status"], body["result"], body["execution_time_ms"]) == (
        row.status,
        row.result,
        row.execution_time_ms,
    )
    assert AsyncResult(body["job_id"]).state == "PENDING"  # Celery's word for "no result stored"
