"""A job owns its process tree (CONTRACT.md §5), against a real prefork worker and Redis.

The suite runs these tests with the worker's default containment (cgroups where writable, as
root in CI) and `scripts/test.sh` runs them again with WARDEN_CONTAINMENT=tree, so both mechanisms
are proven. Helpers started by the `spawner` plugin write their pids to a file; "gone" means
killed and reaped, not merely dead.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import psutil
import pytest

from execution_app.models import Job
from plugins_app.models import PluginRecord
from tests.harness import unchanged_for, wait_until

pytestmark = pytest.mark.slow

SLOW_PLUGINS = Path(__file__).resolve().parent.parent / "plugins" / "slow"
TREE_MODE = os.environ.get("WARDEN_CONTAINMENT") == "tree"
ORPHAN_DEADLINE_S = 2.0


def expected_mode() -> str:
    """The containment the test worker uses: cgroups on a root machine with cgroup v1 (CI)."""
    if TREE_MODE:
        return "tree"
    if os.geteuid() == 0 and Path("/sys/fs/cgroup/memory").is_dir():
        return "cgroup-v1"
    return "tree"


def analyze(client, tool, args=None, plugin="spawner", asynchronous=False, **extra):
    path = "/v1/analyze-execution/async" if asynchronous else "/v1/analyze-execution"
    response = client.post(
        path, {"plugin": plugin, "tool": tool, "args": args or {}, **extra}, format="json"
    )
    assert response.status_code != 500
    return response


def error_of(response):
    return response.json()["error"]


def health(client, name="spawner"):
    return client.get(f"/v1/plugins/{name}/health").json()


@pytest.fixture
def pidfile(tmp_path):
    path = tmp_path / "pids"
    path.write_text("")
    return path


def pids_in(path: Path, count: int = 1) -> list[int]:
    return wait_until(
        lambda: (
            [int(p) for p in path.read_text().split()][:count]
            if len(path.read_text().split()) >= count
            else None
        ),
        20,
        f"{count} helper pid(s) in {path}",
    )


def gone(pid: int) -> bool:
    """Killed and reaped (a zombie still counts as present)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_DEAD
    except psutil.NoSuchProcess:
        return True


def assert_gone_soon(pids: list[int]) -> float:
    """Every pid is gone within ORPHAN_DEADLINE_S of now; return how long it took."""
    started = time.monotonic()
    wait_until(lambda: all(gone(p) for p in pids), ORPHAN_DEADLINE_S, f"processes {pids} to die")
    return time.monotonic() - started


def assert_serving(client):
    response = analyze(client, "ok")
    assert response.status_code == 200, response.json()


def test_it_uses_the_expected_containment(live, auth_client):
    response = analyze(auth_client, "alloc", plugin="faulty")

    error = error_of(response)
    assert error["details"].get("measured") == expected_mode(), error


def test_it_kills_a_helper_program_at_the_hard_limit(live, auth_client, pidfile):
    accepted = analyze(
        auth_client, "helper_then_hang", {"pidfile": str(pidfile)}, asynchronous=True
    )
    helper = pids_in(pidfile)[0]
    assert psutil.pid_exists(helper)

    job = wait_until(
        lambda: Job.objects.filter(pk=accepted.json()["job_id"], status="FAILED").first(),
        15,
        "the job to be killed at its hard limit",
    )

    assert job.error["error"]["type"] == "TimeoutError"
    assert job.error["error"]["details"] == {
        "limit_s": 2.0,
        "hard_limit_s": 4.0,
        "kind": "hard",
        "client_limit": False,
    }
    assert 4.0 <= (job.finished_at - job.started_at).total_seconds() < 4.0 + 1.5
    assert_gone_soon([helper])
    assert health(auth_client)["error_count"] == 1
    assert_serving(auth_client)


def test_it_kills_a_helper_program_when_the_child_is_killed_for_memory(live, auth_client, pidfile):
    response = analyze(auth_client, "helper_then_alloc", {"pidfile": str(pidfile)})

    error = error_of(response)
    assert error["type"] == "MemoryLimitExceeded", error
    assert error["details"]["kind"] in ("rss", "address-space", "oom")
    assert_gone_soon(pids_in(pidfile))
    assert_serving(auth_client)


def test_it_kills_a_helper_program_when_the_child_crashes(live, auth_client, pidfile):
    response = analyze(auth_client, "helper_then_crash", {"pidfile": str(pidfile)})

    error = error_of(response)
    assert (error["type"], error["details"]["exit_code"]) == ("PluginCrashed", 3)
    assert_gone_soon(pids_in(pidfile))
    assert_serving(auth_client)


def test_it_kills_a_helper_program_on_cancel(live, auth_client, pidfile, job_done):
    accepted = analyze(
        auth_client,
        "helper_then_sleep",
        {"pidfile": str(pidfile), "seconds": 1.5},
        asynchronous=True,
    )
    job_id = accepted.json()["job_id"]
    helper = pids_in(pidfile)[0]

    response = auth_client.delete(f"/v1/jobs/{job_id}")

    assert response.status_code == 200
    assert response.json()["error"]["error"]["type"] == "Cancelled"
    assert_gone_soon([helper])
    job = Job.objects.get(pk=job_id)
    assert (job.status, job.error_type) == ("FAILED", "Cancelled")
    record = health(auth_client)
    assert (record["state"], record["error_count"]) == ("INITIALIZED", 0)
    assert_serving(auth_client)
    # Nothing rewrote the cancelled job once its child was gone.
    assert Job.objects.get(pk=job_id).error_type == "Cancelled"


@pytest.mark.parametrize("tool", ["fork_and_return", "daemon_and_return"])
def test_it_kills_what_a_successful_job_left_behind(live, auth_client, pidfile, tool):
    response = analyze(auth_client, tool, {"pidfile": str(pidfile)})

    assert response.status_code == 200, response.json()
    assert_gone_soon(pids_in(pidfile))
    assert health(auth_client)["success_count"] == 1


def test_it_counts_a_helper_process_toward_the_memory_limit(live, auth_client, pidfile):
    response = analyze(auth_client, "helper_alloc", {"pidfile": str(pidfile), "chunks": 250})

    error = error_of(response)
    assert error["type"] == "MemoryLimitExceeded", error
    details = error["details"]
    assert details["limit_mb"] == 200
    assert details["kind"] in ("rss", "oom")
    if details["kind"] == "rss":
        assert 200 <= details["peak_mb"] <= 220  # within 10 % of the limit
    assert_gone_soon(pids_in(pidfile))
    record = health(auth_client)
    assert (record["state"], record["error_count"]) == ("FAILED", 1)
    assert_serving(auth_client)


def test_it_fails_a_tool_that_swallows_the_soft_limit_and_returns_late(live, auth_client):
    response = analyze(auth_client, "swallow_soft", {"seconds": 3})

    error = error_of(response)
    assert error["type"] == "TimeoutError"
    assert error["details"] == {"limit_s": 2.0, "kind": "soft", "client_limit": False, "late": True}
    job = Job.objects.get(pk=error["job_id"])
    assert job.result is None
    assert 2000 <= job.execution_time_ms < 3000
    assert health(auth_client)["state"] == "FAILED"


def test_it_refuses_a_100_mb_result_and_keeps_serving(live, auth_client):
    response = analyze(auth_client, "big_result", {"mb": 100})

    error = error_of(response)
    assert error["type"] == "OutputValidationError"
    assert error["details"]["limit_mb"] == 16
    assert error["details"]["size_mb"] >= 100
    assert Job.objects.get(pk=error["job_id"]).result is None
    assert_serving(auth_client)


def test_it_captures_and_caps_plugin_output(live, auth_client):
    log_before = os.path.getsize(live.log_path)

    response = analyze(auth_client, "print_flood", {"lines": 200_000})

    assert response.status_code == 200, response.json()
    job = Job.objects.get(pk=response.json()["job_id"])
    assert job.output.startswith("[... earlier output dropped ...]\n")
    assert len(job.output.encode()) <= 64 * 1024 + 64
    assert job.output.endswith("the last line\n")
    assert "helper-stdout\n" in job.output and "helper-stderr\n" in job.output
    assert "stderr from the plugin\n" in job.output
    assert os.path.getsize(live.log_path) - log_before < 64 * 1024  # the worker log is not flooded
    assert "output" not in response.json()


def test_it_keeps_a_segfault_traceback_in_the_job_output(live, auth_client):
    response = analyze(auth_client, "segfault", plugin="faulty")

    job = Job.objects.get(pk=error_of(response)["job_id"])
    assert "Fatal Python error: Segmentation fault" in job.output
    assert "tool_segfault" in job.output


@pytest.mark.skipif(TREE_MODE, reason="tree mode has no per-job process limit (cgroup pids)")
def test_it_stops_a_fork_bomb_at_the_job_process_limit(live, auth_client):
    if expected_mode() == "tree":
        pytest.skip("cgroups are not writable here: no per-job process limit")
    response = analyze(auth_client, "fork_bomb", {"n": 2000})

    assert response.status_code == 200, response.json()
    result = response.json()["result"]
    assert result["error"] == "BlockingIOError"
    assert result["forked"] < 64  # WARDEN_JOB_MAX_PIDS of the test settings
    assert_serving(auth_client)


def test_it_does_not_count_client_shortened_timeouts_against_the_plugin(live, auth_client):
    for _ in range(5):
        response = analyze(auth_client, "sleep", {"seconds": 30}, plugin="faulty", timeout_s=0.3)
        error = error_of(response)
        assert error["type"] == "TimeoutError"
        assert error["details"]["client_limit"] is True

    record = health(auth_client, "faulty")
    assert record["accepting_jobs"] is True
    assert (record["state"], record["error_count"], record["consecutive_failures"]) == (
        "INITIALIZED",
        0,
        0,
    )
    assert PluginRecord.objects.get(name="faulty").quarantined is False


def test_it_does_not_count_the_first_load_against_a_client_limit(live, auth_client, sync_plugins):
    # "slow_load" sleeps 1.5 s in __init__: longer than the client's 1 s limit, which must count
    # from the tool's start, not from the task's.
    sync_plugins(SLOW_PLUGINS)
    response = analyze(auth_client, "ok", plugin="slow_load", timeout_s=1)

    assert response.status_code == 200, response.json()
    assert response.json()["execution_time_ms"] < 1000


def test_it_never_kills_another_job_when_a_cancel_races_its_end(live, auth_client, pidfile):
    rng = random.Random(7)
    others: list[str] = []
    for _ in range(12):
        submitted = analyze(
            auth_client,
            "helper_then_sleep",
            {"pidfile": str(pidfile), "seconds": rng.uniform(0.02, 0.25)},
            asynchronous=True,
        )
        assert submitted.status_code == 202, submitted.json()
        target = submitted.json()["job_id"]
        others += [analyze(auth_client, "ok", asynchronous=True).json()["job_id"] for _ in range(2)]
        time.sleep(rng.uniform(0.0, 0.3))  # the race itself: cancel at an arbitrary moment
        assert auth_client.delete(f"/v1/jobs/{target}").status_code in (200, 409)

    def all_done():
        return not Job.objects.filter(pk__in=others, status__in=["PENDING", "RUNNING"]).exists()

    wait_until(all_done, 60, "the other jobs to finish")
    outcomes = list(Job.objects.filter(pk__in=others).values_list("status", "error_type"))
    assert outcomes == [("SUCCESS", "")] * len(others)
    record = health(auth_client)
    assert (record["error_count"], record["state"]) == (0, "INITIALIZED")
    assert_gone_soon([int(p) for p in pidfile.read_text().split()])


def test_it_spares_the_beat_a_worker_embeds_and_nices_its_children(live, settings):
    from tests.conftest import worker_env
    from tests.harness import start_worker

    worker = start_worker(
        worker_env(
            WARDEN_CONTAINMENT=os.environ.get("WARDEN_CONTAINMENT", "auto"),
            WARDEN_WORKER_NICE="7",
        ),
        Path(settings.VAR_DIR) / "beat-worker.log",
        name="withbeat",
        queues="gpu",
        concurrency=1,
        extra_args=("-B", "-s", str(Path(settings.VAR_DIR) / "beat-schedule")),
    )
    try:
        main = psutil.Process(worker.pid)
        children = wait_until(
            lambda: main.children() if len(main.children()) == 2 else None, 20, "pool + beat"
        )
        # Plugin code runs below the worker's priority, the worker's session group (it leads
        # its session, as under `make run`) below the web's; the worker and its beat do not.
        assert sorted(c.nice() for c in children) == [main.nice(), main.nice() + 7]
        if Path("/proc/self/autogroup").exists():
            group = Path(f"/proc/{worker.pid}/autogroup").read_text().split()
            assert group[-2:] == ["nice", "7"]
        # Two sweeps and the minimum age pass in about a second: watch for three.
        assert unchanged_for(
            lambda: all(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
            3,
        )
    finally:
        worker.stop()
