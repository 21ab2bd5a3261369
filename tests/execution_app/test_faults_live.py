"""Every plugin fault against a real prefork worker and Redis: right terminal state, right
error type and details, right plugin health, and the worker keeps serving."""

from __future__ import annotations

import psutil
import pytest

from execution_app.models import Job
from tests.harness import wait_until

pytestmark = pytest.mark.slow


def analyze(client, tool, args=None, plugin="faulty", **extra):
    body = {"plugin": plugin, "tool": tool, "args": args or {}, **extra}
    response = client.post("/v1/analyze-execution", body, format="json")
    assert response.status_code != 500
    return response


def health(client, name="faulty"):
    return client.get(f"/v1/plugins/{name}/health").json()


def assert_serving(client):
    """The worker still runs the next job, and the plugin recovers to INITIALIZED."""
    response = analyze(client, "ok", {"n": 1})
    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"ok": True, "n": 1}


def error_of(response):
    body = response.json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"type", "message", "details", "plugin", "job_id", "timestamp"}
    return body["error"]


def test_it_returns_the_result_and_counts_a_success(live, auth_client):
    response = analyze(auth_client, "ok", {"n": 3})

    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "SUCCESS"
    assert body["plugin"] == "faulty" and body["tool"] == "ok"
    assert body["result"] == {"ok": True, "n": 3}
    assert body["execution_time_ms"] >= 0
    job = Job.objects.get(pk=body["job_id"])
    assert job.status == "SUCCESS" and job.started_at and job.finished_at
    record = health(auth_client)
    assert (record["state"], record["success_count"], record["error_count"]) == (
        "INITIALIZED",
        1,
        0,
    )
    assert record["last_execution_time_ms"] == job.execution_time_ms


def test_it_marks_plugin_failed_when_the_tool_raises(live, auth_client):
    response = analyze(auth_client, "raise")

    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "PluginError"
    assert error["message"] == "Tool 'raise' of plugin 'faulty' raised ValueError: boom"
    assert error["plugin"] == "faulty"
    assert "Traceback" not in response.content.decode()
    job = Job.objects.get(pk=error["job_id"])
    assert job.status == "FAILED" and job.error_type == "PluginError"
    assert "ValueError: boom" in job.traceback
    record = health(auth_client)
    assert record["state"] == "FAILED"
    # The exception's text (often the client's input echoed) stays on the job, out of health.
    assert record["reason"] == "PluginError: Tool 'raise' of plugin 'faulty' raised ValueError"
    assert (record["error_count"], record["consecutive_failures"]) == (1, 1)
    assert record["accepting_jobs"] is True
    assert_serving(auth_client)
    after = health(auth_client)
    assert (after["state"], after["consecutive_failures"], after["success_count"]) == (
        "INITIALIZED",
        0,
        1,
    )


def test_it_stores_a_plugin_message_with_nul_and_surrogates_escaped(live, auth_client):
    response = analyze(auth_client, "raise_nul")

    error = error_of(response)
    assert error["type"] == "PluginError"
    assert error["message"] == (
        "Tool 'raise_nul' of plugin 'faulty' raised ValueError: bad\\x00byte \\ud800"
    )


def test_it_treats_invalid_input_as_a_client_error(live, auth_client):
    response = analyze(auth_client, "invalid_input")

    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "ValidationError"
    assert error["message"] == "argument 'n' must be even"
    record = health(auth_client)
    assert (record["state"], record["error_count"], record["success_count"]) == (
        "INITIALIZED",
        0,
        0,
    )


@pytest.mark.parametrize(
    ("tool", "message"),
    [
        ("return_none", "Tool 'return_none' of plugin 'faulty' returned NoneType, not a dict"),
        ("return_list", "Tool 'return_list' of plugin 'faulty' returned list, not a dict"),
        (
            "return_nul",
            "Tool 'return_nul' of plugin 'faulty' returned a string containing a NUL character "
            "(\\u0000) or an unpaired surrogate, which cannot be stored",
        ),
        (
            "return_nonjson",
            "Tool 'return_nonjson' of plugin 'faulty' returned a value that is not "
            "JSON-serialisable (Object of type object is not JSON serializable)",
        ),
        (
            "bad_output",
            "Tool 'bad_output' of plugin 'faulty' returned output violating its "
            "output_schema at value: 'not an integer' is not of type 'integer'",
        ),
    ],
)
def test_it_rejects_bad_output(live, auth_client, tool, message):
    response = analyze(auth_client, tool)

    assert response.status_code == 400
    error = error_of(response)
    assert (error["type"], error["message"]) == ("OutputValidationError", message)
    record = health(auth_client)
    assert (record["state"], record["error_count"]) == ("FAILED", 1)
    assert_serving(auth_client)


def test_it_interrupts_a_tool_at_the_soft_limit(live, auth_client):
    response = analyze(auth_client, "sleep", {"seconds": 30})

    error = error_of(response)
    assert response.status_code == 400
    assert error["type"] == "TimeoutError"
    assert error["details"] == {"limit_s": 2.0, "kind": "soft", "client_limit": False}
    assert error["message"] == "Tool 'sleep' of plugin 'faulty' exceeded its 2 s time limit"
    job = Job.objects.get(pk=error["job_id"])
    assert 2000 <= job.execution_time_ms < 2500  # the limit counts from the tool's start
    record = health(auth_client)
    assert (record["state"], record["error_count"]) == ("FAILED", 1)
    assert_serving(auth_client)


def test_it_interrupts_a_tool_at_a_client_limit_without_blaming_the_plugin(live, auth_client):
    response = analyze(auth_client, "sleep", {"seconds": 30}, timeout_s=0.5)

    error = error_of(response)
    assert error["type"] == "TimeoutError"
    assert error["details"] == {"limit_s": 0.5, "kind": "soft", "client_limit": True}
    assert error["message"] == (
        "Tool 'sleep' of plugin 'faulty' exceeded its 0.5 s time limit "
        "(a limit lowered by the request's timeout_s)"
    )
    record = health(auth_client)
    assert (record["state"], record["error_count"], record["consecutive_failures"]) == (
        "INITIALIZED",
        0,
        0,
    )


@pytest.mark.parametrize("tool", ["spin_native", "ignore_soft"])
def test_it_kills_a_tool_stuck_past_the_hard_limit(live, auth_client, tool):
    response = analyze(auth_client, tool, {"seconds": 30})

    error = error_of(response)
    assert response.status_code == 400
    assert error["type"] == "TimeoutError"
    assert error["details"] == {
        "limit_s": 2.0,
        "hard_limit_s": 4.0,
        "kind": "hard",
        "client_limit": False,
    }
    assert error["message"] == (
        f"Tool '{tool}' of plugin 'faulty' exceeded its 2 s time limit and did not stop; its "
        "worker process was killed at the 4 s hard limit"
    )
    job = Job.objects.get(pk=error["job_id"])
    assert job.status == "FAILED"
    assert 4.0 <= (job.finished_at - job.started_at).total_seconds() < 4.0 + 1.5
    record = health(auth_client)
    assert (record["state"], record["error_count"]) == ("FAILED", 1)
    assert_serving(auth_client)


def test_it_stops_a_tool_that_allocates_past_its_memory_limit(live, auth_client):
    response = analyze(auth_client, "alloc")

    error = error_of(response)
    assert response.status_code == 400
    assert error["type"] == "MemoryLimitExceeded"
    assert error["details"]["limit_mb"] == 200
    # Fast 8 MB allocations: the watchdog usually wins; on a loaded machine a backstop may (the
    # job cgroup's kernel limit or RLIMIT_AS, both at 110 %).
    assert error["details"]["kind"] in ("rss", "oom", "address-space")
    job = Job.objects.get(pk=error["job_id"])
    if error["details"]["measured"].startswith("cgroup"):
        # The kernel bounds the cgroup exactly. Without cgroups RLIMIT_AS bounds address space,
        # not RSS: a child reusing address space freed by earlier jobs can overshoot when the
        # watchdog thread is starved (docs/operations.md).
        assert job.peak_memory_mb is None or job.peak_memory_mb <= 220
    assert health(auth_client)["state"] == "FAILED"
    assert_serving(auth_client)


def test_it_stops_a_slowly_growing_tool_with_the_watchdog(live, auth_client):
    response = analyze(auth_client, "alloc_slowly")

    error = error_of(response)
    assert error["type"] == "MemoryLimitExceeded"
    assert error["details"]["kind"] == "rss"
    assert 200 <= error["details"]["peak_mb"] <= 210
    assert Job.objects.get(pk=error["job_id"]).peak_memory_mb == error["details"]["peak_mb"]
    assert_serving(auth_client)


def test_it_stops_one_huge_allocation_with_a_backstop(live, auth_client):
    response = analyze(auth_client, "alloc_at_once", {"mb": 600})

    error = error_of(response)
    assert error["type"] == "MemoryLimitExceeded"
    # The watchdog thread cannot run during one C call holding the GIL: with cgroups the kernel
    # stops it at the cgroup limit; without, RLIMIT_AS fails the allocation.
    cgroup = error["details"]["measured"].startswith("cgroup")
    assert error["details"]["kind"] == ("oom" if cgroup else "address-space")
    assert health(auth_client)["state"] == "FAILED"
    assert_serving(auth_client)


@pytest.mark.parametrize(
    ("tool", "expected"),
    [
        ("segfault", {"signal": "SIGSEGV", "signal_number": 11}),
        ("exit", {"exit_code": 3}),
    ],
)
def test_it_survives_a_tool_that_kills_its_process(live, auth_client, tool, expected):
    assert analyze(auth_client, "pid").status_code == 200

    response = analyze(auth_client, tool)

    error = error_of(response)
    assert response.status_code == 400
    assert error["type"] == "PluginCrashed"
    assert {k: error["details"][k] for k in expected} == expected
    how = "signal SIGSEGV" if tool == "segfault" else "exit code 3"
    assert error["message"] == (
        f"Tool '{tool}' of plugin 'faulty' crashed its worker process ({how}); "
        "the worker replaced it"
    )
    record = health(auth_client)
    assert (record["state"], record["error_count"], record["success_count"]) == ("FAILED", 1, 1)
    assert live.alive()
    # The crashed child is gone and a new one took its place; the worker itself stayed.
    crashed = Job.objects.get(pk=error["job_id"]).worker_pid
    worker = psutil.Process(live.pid)

    def replaced():
        children = {c.pid for c in worker.children()}
        return crashed not in children and len(children) == 2

    wait_until(replaced, 10, "the pool to replace the crashed child")
    assert not psutil.pid_exists(crashed)
    assert_serving(auth_client)
    served_by = {analyze(auth_client, "pid").json()["result"]["pid"] for _ in range(4)}
    assert crashed not in served_by
    assert served_by <= {c.pid for c in worker.children()}


@pytest.mark.parametrize(
    ("tool", "message", "code"),
    [
        ("system_exit", "Tool 'system_exit' of plugin 'faulty' raised SystemExit (exit code 4)", 4),
        (
            "keyboard_interrupt",
            "Tool 'keyboard_interrupt' of plugin 'faulty' raised KeyboardInterrupt",
            None,
        ),
    ],
)
def test_it_reports_system_exit_and_keyboard_interrupt_as_crashes(
    live, auth_client, tool, message, code
):
    response = analyze(auth_client, tool)

    error = error_of(response)
    assert (error["type"], error["message"]) == ("PluginCrashed", message)
    assert error["details"]["exit_code"] == code
    assert health(auth_client)["state"] == "FAILED"
    assert_serving(auth_client)


def test_it_quarantines_after_consecutive_crashes(live, auth_client, settings):
    for _ in range(3):
        assert error_of(analyze(auth_client, "exit"))["type"] == "PluginCrashed"

    record = health(auth_client)
    assert record["state"] == "FAILED"
    assert record["accepting_jobs"] is False
    assert record["reason"].startswith(
        "Quarantined after 3 consecutive crashes/timeouts/memory kills"
    )
    response = analyze(auth_client, "ok")
    error = error_of(response)
    assert (response.status_code, error["type"]) == (400, "PluginUnavailable")
    assert "quarantined" in error["message"]
    assert Job.objects.filter(tool="ok").count() == 0  # rejected before a job was queued

    from plugins_app.services import plugin_sync

    plugin_sync(names=["faulty"])
    assert health(auth_client)["accepting_jobs"] is True
    assert_serving(auth_client)


def test_it_runs_a_redelivered_message_only_once(live, auth_client, job_done):
    from execution_app.tasks import run_job

    response = auth_client.post(
        "/v1/analyze-execution/async",
        {"plugin": "faulty", "tool": "ok", "args": {"n": 5}},
        format="json",
    )
    assert response.status_code == 202
    job_id = response.json()["job_id"]
    job = job_done(job_id)
    # The same message again, as a broker redelivery would send it.
    duplicate = run_job.apply_async(
        kwargs={"job_id": job_id, "hard_timeout_s": job.hard_timeout_s}, queue="cpu"
    )

    assert duplicate.get(timeout=20)["status"] == "SKIPPED"
    job.refresh_from_db()
    assert job.status == "SUCCESS"
    assert health(auth_client)["success_count"] == 1
