"""The scope of a tool run (runner.ToolRun) in this process: the soft-limit alarm only ever
interrupts the plugin call, and the scope always restores what it changed."""

from __future__ import annotations

import os
import resource
import signal
import sys
import time
import uuid

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from execution_app.models import Job
from execution_app.runner import ToolRun

pytestmark = pytest.mark.django_db


def _job(timeout_s: float) -> Job:
    return Job(
        id=uuid.uuid4(),
        plugin_name="scope",
        tool="t",
        timeout_s=timeout_s,
        hard_timeout_s=timeout_s + 2,
        memory_mb=200,
    )


def _busy(seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass


@pytest.fixture(autouse=True)
def run_dir(settings, tmp_path):
    settings.WARDEN_RUN_DIR = tmp_path / "run"
    return settings.WARDEN_RUN_DIR


def test_it_raises_the_soft_limit_only_inside_the_plugin_call(run_dir):
    stdout, fd1 = sys.stdout, os.fstat(1).st_ino
    handler = signal.getsignal(signal.SIGALRM)
    rlimit = resource.getrlimit(resource.RLIMIT_AS)
    interrupted = finished = 0
    # Tools that end within a fraction of a millisecond of a 1 ms limit: the alarm lands
    # anywhere in the scope's set-up, the call, or its clean-up.
    for i in range(3000):
        run = ToolRun(_job(0.001), address_limit=True)
        try:
            with run:
                run.call(_busy, 0.0003 + (i % 13) * 0.0001)
            finished += 1
        except SoftTimeLimitExceeded:
            interrupted += 1
        assert (sys.stdout, os.fstat(1).st_ino) == (stdout, fd1)
    assert interrupted + finished == 3000
    assert interrupted > 0  # the race was really run
    assert signal.getsignal(signal.SIGALRM) == handler
    assert signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    assert resource.getrlimit(resource.RLIMIT_AS) == rlimit
    assert os.listdir(run_dir / "jobs") == []


def test_it_does_not_run_a_job_cancelled_before_its_slot_was_taken(run_dir):
    from execution_app.slots import marker_write
    from project.errors import WardenError

    job = _job(5)
    (run_dir / "jobs").mkdir(parents=True)
    marker_write(run_dir, str(job.pk), {"cause": "cancel"})
    called = []

    with pytest.raises(WardenError) as raised, ToolRun(job, address_limit=False) as run:
        run.call(called.append, 1)

    assert raised.value.type == "Cancelled"
    assert called == []
    assert not (run_dir / "jobs" / f"{job.pk}.run").exists()  # the slot was released
