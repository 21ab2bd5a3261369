"""Stopping a job never kills a process that has moved on to another job (slots.slot_stop), with
real processes racing a real killer."""

from __future__ import annotations

import fcntl
import os
import random
import signal
import time
from pathlib import Path

import pytest

from execution_app.slots import (
    RunningSlot,
    _slot_pid,
    marker_read,
    slot_cancelled,
    slot_files_remove,
    slot_stop,
    slots_running,
)

ITERATIONS = 150


def _child(run_dir: Path, first_s: float, started_b: Path) -> None:
    """A worker child: job A for `first_s`, then at once job B (noted in `started_b`)."""
    try:
        with RunningSlot(run_dir, "A", {"hard_deadline": 0}):
            time.sleep(first_s)
        with RunningSlot(run_dir, "B", {}):
            started_b.write_text("B")
            time.sleep(0.01)
    finally:
        os._exit(0)


def _naive_stop(run_dir: Path, job_id: str, kill) -> bool:
    """The unsafe way: check that the child holds the job, then kill it (no gate)."""
    try:
        fd = os.open(run_dir / "jobs" / f"{job_id}.run", os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.lockf(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return False
    except OSError:
        kill(_slot_pid(fd))
        return True
    finally:
        os.close(fd)


def _race(tmp_path: Path, stop) -> tuple[int, int]:
    """Run the race ITERATIONS times; return (kills, kills that hit job B)."""
    rng = random.Random(11)
    kills = wrong = 0
    for i in range(ITERATIONS):
        run_dir = tmp_path / f"run{i}"
        (run_dir / "jobs").mkdir(parents=True)
        started_b = run_dir / "started-b"
        first_s = rng.uniform(0.0, 0.004)
        pid = os.fork()
        if pid == 0:
            _child(run_dir, first_s, started_b)
        time.sleep(rng.uniform(0.0, 0.004))

        def kill(child: int) -> None:
            time.sleep(rng.uniform(0.0, 0.003))  # the killer is descheduled between check and kill
            os.kill(child, signal.SIGKILL)

        killed = stop(run_dir, "A", kill)
        _, status = os.waitpid(pid, 0)
        if killed:
            kills += 1
            wrong += started_b.exists()
        else:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    return kills, wrong


def test_it_never_kills_a_child_that_moved_on_to_another_job(tmp_path):
    def stop(run_dir, job_id, kill):
        return slot_stop(run_dir, job_id, marker={"cause": "cancel"}, kill=kill)

    kills, wrong = _race(tmp_path, stop)

    assert kills > 0  # the race was really run: some stops found the child still in job A
    assert wrong == 0


def test_it_shows_the_race_the_gate_prevents(tmp_path):
    # Control: without the gate, the same race kills the child while it runs job B.
    _, wrong = _race(tmp_path, _naive_stop)

    assert wrong > 0


def _holder(run_dir: Path, job_id: str) -> tuple[int, int]:
    """Fork a child that holds `job_id`'s slot until the returned pipe is written to (or
    closed); return (its pid, the pipe's write end)."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            with RunningSlot(run_dir, job_id, {"hard_deadline": 12.5}):
                os.write(ready_w, b"x")
                os.read(go_r, 1)
        finally:
            os._exit(0)
    os.read(ready_r, 1)
    for fd in (ready_r, ready_w, go_r):
        os.close(fd)
    return pid, go_w


def test_it_kills_only_a_child_it_owns_and_leaves_a_marker(tmp_path):
    pid, go = _holder(tmp_path, "J")
    killed: list[int] = []
    assert dict(slots_running(tmp_path)) == {"J": {"pid": pid, "hard_deadline": 12.5}}

    not_mine = slot_stop(
        tmp_path, "J", marker={"cause": "hard"}, kill=killed.append, owns=lambda p: False
    )
    mine = slot_stop(tmp_path, "J", marker={"cause": "hard"}, kill=killed.append)

    assert (not_mine, mine, killed) == (False, True, [pid])
    assert marker_read(tmp_path, "J") == {"cause": "hard"}
    os.write(go, b"x")
    os.close(go)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status)
    assert slot_stop(tmp_path, "J", marker={"cause": "cancel"}, kill=killed.append) is False
    assert killed == [pid]
    assert list(slots_running(tmp_path)) == []


def test_it_does_not_pass_a_held_gate_on_to_a_forked_process(tmp_path):
    # A pool child forked while the main process decides to stop a job must not hold the gate
    # too (flock locks are shared through inherited descriptors; POSIX record locks are not).
    pid, go = _holder(tmp_path, "J")
    forked: list[int] = []

    def kill(child: int) -> None:
        grandchild = os.fork()  # forked while the gate is held
        if grandchild == 0:
            time.sleep(30)
            os._exit(0)
        forked.append(grandchild)

    assert slot_stop(tmp_path, "J", marker={"cause": "cancel"}, kill=kill) is True
    try:
        os.write(go, b"x")  # the slot holder finishes: it must get through its gate at once
        os.close(go)
        started = time.monotonic()
        _, status = os.waitpid(pid, 0)
        assert time.monotonic() - started < 2.0
        assert os.WIFEXITED(status)
    finally:
        for child in forked:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)


def test_it_leaves_a_cancel_marker_for_a_child_that_takes_the_slot_later(tmp_path):
    stopped = slot_stop(
        tmp_path, "J", marker={"cause": "cancel"}, kill=lambda p: None, mark_first=True
    )

    assert stopped is False
    assert slot_cancelled(tmp_path, "J") is True
    assert slot_cancelled(tmp_path, "K") is False


def test_the_slot_sweep_leaves_a_dead_childs_slot_to_the_record_of_its_job(tmp_path):
    """A child that died during a job keeps its cgroup slot (and the kernel's OOM-kill count in
    it) until the main process has recorded the job's end; then the sweep may release it."""
    from execution_app.containment import Containment, _cgroup_v1, _cgroup_v2
    from execution_app.supervisor import Supervisor

    layout = None
    for make in (_cgroup_v1, _cgroup_v2):
        try:
            layout = make(f"warden-test-{os.getpid()}")
        except OSError:
            continue
        if layout is not None:
            break
    if layout is None:
        pytest.skip("no writable cgroup memory controller here")
    containment = Containment(f"cgroup-v{layout.version}", layout)
    try:
        pid = os.fork()
        if pid == 0:  # a worker child: holds the job's slot file, then dies mid-job
            RunningSlot(tmp_path, "J", {"oom_base": 0}).__enter__()
            os._exit(0)
        os.waitpid(pid, 0)
        slot = layout.slot_dirs(pid)[layout.memory]
        os.makedirs(slot)
        supervisor = Supervisor(containment=containment, run_dir=tmp_path, pool_pids=set)

        supervisor.release_dead_slots()
        assert os.path.isdir(slot)  # the job's end is not recorded yet

        slot_files_remove(tmp_path, "J")  # what recording the end does last
        supervisor.release_dead_slots()
        assert not os.path.isdir(slot)
    finally:
        containment.shutdown()
