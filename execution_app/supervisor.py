"""The worker main process's supervisor: hard time limits, stopping jobs on request, orphans.

A thread in the main process reads the running slots of its own children (slots.py) every 50 ms
and stops a job whose hard deadline (soft limit + WARDEN_HARD_GRACE_S, counted from the tool's
start) has passed; the same thread sweeps orphans (containment.OrphanSweeper). The remote-control
command `warden_stop_job`, broadcast by a cancel, stops a job the same guarded way. Stopping kills
the job's process tree and its worker child only while that child is verifiably still running the
job; the pool then reports the lost child and the failure hooks record the end from the marker.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from celery.worker.control import control_command

from .containment import Containment, OrphanSweeper
from .slots import slot_files_sweep, slot_stop, slots_running

logger = logging.getLogger(__name__)
TICK_S = 0.05
SWEEP_EVERY = 5  # ticks
FILE_SWEEP_EVERY = 1200  # ticks: once a minute
FILE_MAX_AGE_S = 600.0


def _alive(pid: int) -> bool:
    return os.path.exists(f"/proc/{pid}")


class Supervisor:
    """Enforces hard limits and stops jobs for one worker's pool."""

    def __init__(
        self,
        *,
        containment: Containment,
        run_dir: Path,
        pool_pids: Callable[[], set[int]],
        tick_s: float = TICK_S,
    ) -> None:
        self.containment = containment
        self.run_dir = run_dir
        self.pool_pids = pool_pids
        self.tick_s = tick_s
        self.sweeper = OrphanSweeper(pool_pids)
        # Off until the worker's own start-up work (plugin sync, which starts probe processes)
        # is done: until then its children are not all pool children or orphans.
        self.sweeping = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-supervisor", daemon=True)

    def start(self) -> None:
        """Start the supervising thread."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the supervising thread."""
        self._stop.set()

    def _owned(self, pid: int) -> bool:
        try:
            return pid in self.pool_pids()
        except Exception:
            return False

    def stop_job(self, job_id: str, marker: dict[str, Any]) -> bool:
        """Kill `job_id`'s tree and child if one of this pool's children is running it; return
        whether it was."""
        stopped: list[int] = []

        def kill(pid: int) -> None:
            self.containment.kill(job_id, pid)
            stopped.append(pid)

        slot_stop(
            self.run_dir,
            job_id,
            marker=marker,
            kill=kill,
            owns=self._owned,
            mark_first=marker.get("cause") == "cancel",
        )
        if stopped:
            logger.warning(
                "stopped job %s (%s): killed worker child %d", job_id, marker, stopped[0]
            )
        return bool(stopped)

    def check_deadlines(self, running: list[tuple[str, dict[str, Any]]]) -> None:
        """Stop every job of `running` (slots_running) that is past its hard deadline."""
        now = time.monotonic()  # CLOCK_MONOTONIC: the same for every process of this host
        for job_id, info in running:
            if now >= float(info.get("hard_deadline", float("inf"))) and self._owned(
                int(info.get("pid", 0))
            ):
                self.stop_job(job_id, {"cause": "hard"})

    def release_dead_slots(self, running: list[tuple[str, dict[str, Any]]] | None = None) -> None:
        """Release the cgroup slots of dead children, except those of children that died during
        a job whose end is not recorded yet (in `running`, default: slots_running now): their
        slot still holds what that record needs (the kernel's OOM-kill count), and the record
        releases it (services._job_end_after_kill)."""
        unrecorded = set()
        for _, info in slots_running(self.run_dir) if running is None else running:
            try:
                unrecorded.add(int(info.get("pid", 0)))
            except (TypeError, ValueError):
                continue
        self.containment.sweep_slots(self.pool_pids() | unrecorded)

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(self.tick_s):
            ticks += 1
            try:
                running = list(slots_running(self.run_dir))  # read once per tick
                self.check_deadlines(running)
                if self.sweeping and ticks % SWEEP_EVERY == 0:
                    self.sweeper.sweep()
                    self.release_dead_slots(running)
                if ticks % FILE_SWEEP_EVERY == 0:
                    slot_files_sweep(self.run_dir, alive=_alive, max_age_s=FILE_MAX_AGE_S)
            except Exception:
                logger.exception("worker supervision failed")


_supervisor: Supervisor | None = None


def supervisor_set(supervisor: Supervisor | None) -> None:
    """Install this worker's supervisor (worker main process)."""
    global _supervisor
    _supervisor = supervisor


@control_command(args=[("job_id", str)], signature="<job_id>")
def warden_stop_job(state: Any, job_id: str) -> dict[str, Any]:
    """Remote control (broadcast by a cancel): stop `job_id` if this worker is running it."""
    if _supervisor is None:
        return {"ok": False}
    return {"ok": _supervisor.stop_job(job_id, {"cause": "cancel"})}
