"""Restarts under load, each against a private stack (Redis, prefork worker, beat, gunicorn) on the
test database: a Redis restart, a SIGKILLed worker main process, a database restart. Nothing a
client queued is lost or left non-terminal, and service comes back without restarting anything
else."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from django.contrib.auth.models import User
from rest_framework.authtoken.models import Token

from execution_app.models import ACTIVE_STATUSES, Job
from plugins_app.models import PluginRecord
from tests.conftest import RUNTIME_PLUGINS, worker_env
from tests.harness import (
    Api,
    Proc,
    free_port,
    restart_postgres,
    start_beat,
    start_gunicorn,
    start_redis,
    start_worker,
    wait_until,
)

pytestmark = pytest.mark.slow


@dataclass
class Stack:
    """One Warden deployment of its own; `procs` are stopped at the end of the test."""

    var: Path
    env: dict[str, str]
    redis_port: int
    api: Api
    procs: dict[str, Proc] = field(default_factory=dict)

    def start_redis(self) -> Proc:
        self.procs["redis"] = start_redis(self.redis_port, self.var / "redis")
        return self.procs["redis"]

    def start_worker(self, name: str) -> Proc:
        self.procs[name] = start_worker(
            self.env, self.var / f"{name}.log", name=name, queues="cpu", concurrency=2
        )
        return self.procs[name]

    def logs(self) -> str:
        return "\n".join(f"--- {n}\n{p.log_text()[-4000:]}" for n, p in self.procs.items())


@pytest.fixture
def stack(
    transactional_db: None, sync_plugins: Any, samples: Any, tmp_path: Path
) -> Iterator[Stack]:
    """Redis + worker `w1` + beat (reaper every second, no grace) + gunicorn, plugins synced."""
    sync_plugins(samples("echo"), RUNTIME_PLUGINS)
    token = Token.objects.create(user=User.objects.create_user("restarter")).key
    port = free_port()
    var = tmp_path / "stack"
    var.mkdir()
    env = worker_env(
        WARDEN_REDIS_URL=f"redis://127.0.0.1:{port}/0",
        WARDEN_REAPER_INTERVAL_S="1",
        WARDEN_REAPER_GRACE_S="0",
        WARDEN_REQUEUE_AFTER_S="2",
    )
    web_port = free_port()
    stack = Stack(var, env, port, Api(f"http://127.0.0.1:{web_port}", token))
    try:
        stack.start_redis()
        stack.start_worker("w1")
        stack.procs["beat"] = start_beat(env, var / "beat.log")
        stack.procs["web"] = start_gunicorn(env, var / "web.log", web_port)
        yield stack
    finally:
        for proc in reversed(stack.procs.values()):
            proc.stop(signal.SIGKILL)


def submit(api: Api, body: dict[str, Any]) -> str:
    status, reply = api.call("POST", "/v1/analyze-execution/async", body)
    assert status == 202, reply
    return reply["job_id"]


def statuses(job_ids: list[str]) -> dict[str, str]:
    return {
        str(pk): status
        for pk, status in Job.objects.filter(pk__in=job_ids).values_list("pk", "status")
    }


def all_terminal(job_ids: list[str]) -> bool:
    return not Job.objects.filter(pk__in=job_ids, status__in=ACTIVE_STATUSES).exists()


def restart_redis(stack: Stack) -> dict[str, Any]:
    """Stop Redis, check what clients get meanwhile, start it again; return the refused call."""
    stack.procs["redis"].stop()  # the queue, unacked messages, results, heartbeats: all gone
    down_status, down = stack.api.call("POST", "/v1/analyze-execution", {"plugin": "echo"})
    health_status, _ = stack.api.call("GET", "/v1/plugins/echo/health")
    stack.start_redis()
    assert (down_status, down["error"]["type"]) == (503, "ServiceUnavailable"), down
    assert health_status == 200  # the registry lives in the database
    refused = Job.objects.get(pk=down["error"]["job_id"])
    assert (refused.status, refused.error_type) == ("FAILED", "ServiceUnavailable")
    return down


def assert_full_service(stack: Stack) -> None:
    def serving() -> bool:
        status, reply = stack.api.call("POST", "/v1/analyze-execution", {"plugin": "echo"})
        assert status in (200, 503), reply
        return status == 200

    wait_until(serving, 60, "full service after the restart", interval=0.5)


def test_it_keeps_the_worker_and_its_running_job_through_a_redis_restart(stack: Stack) -> None:
    # One child busy, the other idle: the consumer is blocked in BRPOP when Redis goes away
    # (the case that killed the worker's main process before project/kombu_fix.py).
    worker = stack.procs["w1"]
    job_id = submit(stack.api, {"plugin": "echo", "tool": "sleep", "args": {"seconds": 3}})
    wait_until(lambda: statuses([job_id]) == {job_id: "RUNNING"}, 30, "the job to run")

    restart_redis(stack)

    wait_until(lambda: all_terminal([job_id]), 60, "the job to end\n" + stack.logs())
    assert statuses([job_id]) == {job_id: "SUCCESS"}
    assert_full_service(stack)
    assert worker.alive(), worker.log_text()
    assert "Unrecoverable error" not in worker.log_text()
    echo = PluginRecord.objects.get(name="echo")
    assert (echo.success_count, echo.error_count, echo.state) == (2, 0, "INITIALIZED")


def test_it_queues_again_the_jobs_whose_messages_a_redis_restart_lost(stack: Stack) -> None:
    worker = stack.procs["w1"]
    running = [
        submit(stack.api, {"plugin": "echo", "tool": "sleep", "args": {"seconds": 3}})
        for _ in range(2)
    ]
    wait_until(lambda: set(statuses(running).values()) == {"RUNNING"}, 30, "both children busy")
    queued = [submit(stack.api, {"plugin": "echo", "args": {"n": n}}) for n in range(3)]

    restart_redis(stack)

    # The reaper (beat) finds their messages gone with Redis' data and queues them again.
    wait_until(lambda: all_terminal(running + queued), 90, "every job to end\n" + stack.logs())
    assert set(statuses(running + queued).values()) == {"SUCCESS"}, stack.logs()
    assert_full_service(stack)
    assert worker.alive(), worker.log_text()
    echo = PluginRecord.objects.get(name="echo")
    assert (echo.success_count, echo.error_count, echo.state) == (6, 0, "INITIALIZED")


def test_it_reaps_the_jobs_of_a_killed_worker_and_a_new_worker_serves(stack: Stack) -> None:
    w1 = stack.procs["w1"]
    job_id = submit(stack.api, {"plugin": "faulty", "tool": "sleep", "args": {"seconds": 30}})
    wait_until(lambda: statuses([job_id]) == {job_id: "RUNNING"}, 30, "the job to run")
    child = Job.objects.get(pk=job_id).worker_pid
    assert child in {c.pid for c in psutil.Process(w1.pid).children()}

    os.kill(w1.pid, signal.SIGKILL)  # the worker's main process only, mid-job
    w1.popen.wait()
    assert Job.objects.get(pk=job_id).status == "RUNNING"  # nobody left to record its end
    w2 = stack.start_worker("w2")  # consumes the reaper's queued runs, then new work

    job = wait_until(
        lambda: Job.objects.filter(pk=job_id).exclude(status="RUNNING").first(),
        60,
        "beat's reaper to fail the job\n" + stack.logs(),
    )
    assert (job.status, job.error_type) == ("FAILED", "ServiceUnavailable")
    assert job.error["error"]["details"]["reaped"] is True
    faulty = PluginRecord.objects.get(name="faulty")  # a lost host is not the plugin's fault
    assert (faulty.error_count, faulty.consecutive_failures, faulty.state) == (0, 0, "INITIALIZED")
    status, reply = stack.api.call(
        "POST", "/v1/analyze-execution", {"plugin": "faulty", "tool": "pid"}
    )
    assert status == 200, reply
    assert psutil.Process(reply["result"]["pid"]).ppid() == w2.pid
    assert child != reply["result"]["pid"]


def test_it_records_every_job_right_after_a_database_restart(stack: Stack) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("a database server restart needs PostgreSQL (DATABASE_URL)")
    worker = stack.procs["w1"]
    # Warm every connection: the worker's main process (it records a crash), then both children
    # (two jobs at once; the crashed child's replacement included).
    status, crash = stack.api.call(
        "POST", "/v1/analyze-execution", {"plugin": "faulty", "tool": "exit"}
    )
    assert (status, crash["error"]["type"]) == (400, "PluginCrashed")
    pair = [submit(stack.api, {"plugin": "echo", "tool": "sleep", "args": {"seconds": 1}})]
    pair.append(submit(stack.api, {"plugin": "echo", "tool": "sleep", "args": {"seconds": 1}}))
    wait_until(lambda: all_terminal(pair), 30, "two jobs")
    assert len(set(Job.objects.filter(pk__in=pair).values_list("worker_pid", flat=True))) == 2

    restart_postgres(connection.settings_dict)
    connection.close()  # this test process's own session was terminated too

    for _ in range(4):  # no job lost to the restart, on either child
        status, reply = stack.api.call("POST", "/v1/analyze-execution", {"plugin": "echo"})
        assert status == 200, f"{reply}\n{stack.logs()}"
    # A crash is recorded by the worker's main process: its connection works again too.
    status, crash = stack.api.call(
        "POST", "/v1/analyze-execution", {"plugin": "faulty", "tool": "exit"}
    )
    assert (status, crash["error"]["type"]) == (400, "PluginCrashed"), crash
    assert worker.alive()
    faulty = PluginRecord.objects.get(name="faulty")
    assert (faulty.error_count, faulty.consecutive_failures) == (2, 2)
    assert not Job.objects.filter(status__in=ACTIVE_STATUSES).exists()
