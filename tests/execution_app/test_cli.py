"""`manage.py analyze` and `manage.py jobs`: the API's service path on the command line, exit
codes scripts can use, clear one-line errors (never a traceback), and a real stack end to end."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from execution_app.models import Job
from tests.conftest import RUNTIME_PLUGINS, worker_env
from tests.harness import ROOT, free_port
from tests.jobs import pending_job
from tests.plugins_app.faults import copy_plugins

GPU_PLUGINS = RUNTIME_PLUGINS.parent / "gpu"
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000001e221bc330000000049454e44ae426082"
)


def analyze(*args: str) -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("analyze", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def exit_of(*args: str, command: str = "analyze") -> tuple[int, str]:
    with pytest.raises(CommandError) as caught:
        call_command(command, *args, stdout=io.StringIO(), stderr=io.StringIO())
    return caught.value.returncode, str(caught.value)


def manage(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run manage.py as a user would, against this test run's database and Redis."""
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env or worker_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def faulty(sync_plugins, tmp_path):
    sync_plugins(RUNTIME_PLUGINS, copy_plugins(tmp_path / "faults", "missing_package"))


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "pixel.png"
    path.write_bytes(PNG)
    return path


def test_it_refuses_bad_input_before_queueing_anything(faulty, png, tmp_path):
    (tmp_path / "args.json").write_text("[1, 2]")
    cases = {
        ("faulty", str(tmp_path / "nope.png")): f"File not found: {tmp_path / 'nope.png'}",
        ("faulty", str(tmp_path)): f"Not a file: {tmp_path} is a directory",
        ("faulty", "--args", "{lang: eng}"): "--args is not valid JSON (Expecting property name "
        """enclosed in double quotes at line 1 column 2); expected an object such as """
        """'{"lang": "eng"}'""",
        ("faulty", "--args", "[1]"): "--args must be a JSON object, not list",
        ("faulty", "--args", f"@{tmp_path / 'args.json'}"): f"{tmp_path / 'args.json'} must be "
        "a JSON object, not list",
        ("faulty", "--args", "@/no/such.json"): "Cannot read --args file /no/such.json: No such "
        "file or directory",
        ("nope", str(png)): "No plugin named 'nope'",
        (
            "faulty",
            "--tool",
            "nope",
        ): "Plugin 'faulty' has no tool 'nope' (tools: ok, image, raise, "
        "raise_nul, invalid_input, return_none, return_list, return_nonjson, return_nul, "
        "bad_output, sleep, ignore_soft, spin_native, alloc, alloc_slowly, alloc_at_once, "
        "segfault, exit, system_exit, keyboard_interrupt, pid)",
        ("faulty", "--tool", "ok", "--args", '{"n": -1}'): "args of tool 'ok' do not match its "
        "input_schema: n: -1 is less than the minimum of 0",
        (
            "faulty",
            "--tool",
            "image",
            str(png),
            str(tmp_path / "args.json"),
        ): f"{tmp_path / 'args.json'}: "
        "Tool 'image' accepts image/png, not application/octet-stream",
    }
    for args, message in cases.items():
        assert exit_of(*args) == (2, message), args
    assert exit_of("missing_package") == (
        3,
        "Plugin 'missing_package' is not accepting jobs (UNAVAILABLE: Missing Python package "
        "'nonexistent_pkg_xyz' (install with: pip install nonexistent_pkg_xyz))",
    )
    assert Job.objects.count() == 0


def test_it_exits_4_when_no_worker_consumes_the_queue(
    sync_plugins, monkeypatch, redis_proc, png, tmp_path
):
    from execution_app import workers

    monkeypatch.setattr(workers, "KEY_PREFIX", "warden-cli-test:workers")
    monkeypatch.setattr(workers, "_seen_live", {})
    monkeypatch.setattr("plugins_app.dependencies.check_gpu", lambda: None)
    sync_plugins(GPU_PLUGINS)

    code, message = exit_of("gpu_sleeper", "--tool", "where")

    assert (code, message) == (
        4,
        "No worker is consuming queue 'gpu'; start one (see docs/operations.md)",
    )
    job = Job.objects.get()
    assert (job.status, job.error_type) == ("FAILED", "ServiceUnavailable")


def test_it_lists_shows_and_refuses_to_cancel_finished_jobs(faulty):
    from execution_app.services import job_finish

    job = pending_job(tool="ok", args={"n": 2})
    job_finish(job_id=str(job.pk), result={"ok": True, "n": 2}, execution_ms=1.25)
    listing, shown = io.StringIO(), io.StringIO()

    call_command("jobs", "list", "--json", stdout=listing)
    call_command("jobs", "show", str(job.pk), stdout=shown)

    assert [(j["job_id"], j["status"], j["result"]) for j in json.loads(listing.getvalue())] == [
        (str(job.pk), "SUCCESS", {"ok": True, "n": 2})
    ]
    text = shown.getvalue()
    assert f"Job {job.pk}" in text and "SUCCESS" in text and '"n": 2' in text
    assert exit_of("cancel", str(job.pk), command="jobs") == (6, "a job had already finished")
    assert exit_of("show", "not-a-job", command="jobs") == (2, "No job with id 'not-a-job'")
    assert exit_of("list", "--status", "DONE", command="jobs")[0] == 2


def test_it_says_database_unavailable_without_a_traceback(db, png):
    env = worker_env(DATABASE_URL=f"postgres://warden@127.0.0.1:{free_port()}/warden")

    done = manage("analyze", "faulty", str(png), env=env)

    assert done.returncode == 4, done.stderr
    assert done.stderr.startswith("CommandError: Database unavailable: OperationalError: ")
    assert "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
def test_it_runs_files_on_a_real_stack_with_a_summary_and_exit_codes(live, png, tmp_path):
    second = tmp_path / "second.png"
    second.write_bytes(PNG)

    ok = manage("analyze", "faulty", str(png), str(second), "--tool", "image")
    failed = manage("analyze", "faulty", "--tool", "raise")
    queued = manage("analyze", "faulty", "--tool", "ok", "--args", '{"n": 5}', "--async", "--json")
    missing = manage("analyze", "faulty", str(tmp_path / "absent.png"))
    bad_timeout = manage("analyze", "faulty", "--timeout", "-3")

    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count("SUCCESS") == 2
    assert "pixel.png" in ok.stdout and "second.png" in ok.stdout
    assert all(str(job.pk) in ok.stdout for job in Job.objects.filter(tool="image"))
    assert '{"size":67,"mime_type":"image/png"}' in ok.stdout
    assert "2 succeeded, 0 did not" in ok.stdout
    assert failed.returncode == 1
    assert "PluginError: Tool 'raise' of plugin 'faulty' raised ValueError: boom" in failed.stdout
    assert failed.stderr.strip() == "CommandError: a job failed"
    assert queued.returncode == 0, queued.stderr
    [accepted] = json.loads(queued.stdout)
    assert accepted["status"] in ("PENDING", "RUNNING", "SUCCESS")
    assert missing.returncode == 2
    assert missing.stderr.strip() == f"CommandError: File not found: {tmp_path / 'absent.png'}"
    assert bad_timeout.returncode == 2
    assert (
        "argument --timeout: must be a positive number of seconds, not '-3'" in bad_timeout.stderr
    )

    shown = manage("jobs", "show", accepted["job_id"], "--wait", "--json")
    cancel = manage("jobs", "cancel", accepted["job_id"])
    listing = manage("jobs", "list", "--plugin", "faulty", "--status", "failed")

    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["result"] == {"ok": True, "n": 5}
    assert cancel.returncode == 6
    assert cancel.stderr.splitlines()[0] == (
        f"{accepted['job_id']}: Job {accepted['job_id']} already finished with status SUCCESS"
    )
    assert listing.returncode == 0
    assert listing.stdout.count("faulty.raise") == 1 and "faulty.image" not in listing.stdout
    for done in (ok, failed, queued, missing, bad_timeout, shown, cancel, listing):
        assert "Traceback" not in done.stdout + done.stderr
    assert Job.objects.filter(plugin_name="faulty").count() == 4
