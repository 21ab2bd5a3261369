"""Which worker child runs which job, on this host, and stopping one safely.

While a worker child runs a tool it holds an exclusive lock on `<run dir>/jobs/<job id>.run`,
which also holds its pid and deadlines. Whoever wants to stop that job (the main process at the
hard limit, a cancel) first takes the job's gate lock, then checks the run lock: only if the child
still holds it is the child killed. A child that has finished the tool must take the gate before it
releases the run lock, so it can never move on to another job between the check and the kill:
cancelling or timing out one job never kills a process that is running another job.

Why a job ended, when its child was killed on purpose, is left as a small JSON "end marker" next
to it, read by the main process's failure hooks.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SLOT_DIR = "jobs"


_made: set[Path] = set()


def _ensure_dir(folder: Path) -> None:
    """Create `folder` once per process (not a stat per job)."""
    if folder not in _made:
        folder.mkdir(parents=True, exist_ok=True)
        _made.add(folder)


def _slot_paths(run_dir: Path, job_id: str) -> tuple[Path, Path]:
    folder = run_dir / SLOT_DIR
    return folder / f"{job_id}.run", folder / f"{job_id}.gate"


def marker_path(run_dir: Path, job_id: str, kind: str) -> Path:
    """Where the reason a job's child was killed on purpose is left: kind "mem" is written by the
    child's memory watchdog before it kills itself, kind "stop" by whoever stopped the job."""
    return run_dir / SLOT_DIR / f"{job_id}.{kind}"


def marker_read(run_dir: Path, job_id: str) -> dict[str, Any] | None:
    """Return the job's end marker (the watchdog's first), or None if there is none."""
    for kind in ("mem", "stop"):
        try:
            data = json.loads(marker_path(run_dir, job_id, kind).read_text() or "null")
        except (OSError, ValueError):
            continue
        if isinstance(data, dict):
            return data
    return None


def marker_write(run_dir: Path, job_id: str, marker: dict[str, Any]) -> None:
    """Leave `marker` as the reason the job's child is being stopped (first writer wins)."""
    path = marker_path(run_dir, job_id, "stop")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    try:
        os.write(fd, json.dumps(marker).encode())
    finally:
        os.close(fd)


def slot_files_remove(run_dir: Path, job_id: str) -> None:
    """Remove what a job left in the run directory (after its end is recorded)."""
    for path in (
        *_slot_paths(run_dir, job_id),
        marker_path(run_dir, job_id, "mem"),
        marker_path(run_dir, job_id, "stop"),
    ):
        path.unlink(missing_ok=True)


class RunningSlot:
    """Held by a worker child while it runs a job's tool (context manager)."""

    def __init__(self, run_dir: Path, job_id: str, info: dict[str, Any]) -> None:
        self.run_path, self.gate_path = _slot_paths(run_dir, job_id)
        self.info = info
        self._fd: int | None = None

    def __enter__(self) -> RunningSlot:
        _ensure_dir(self.run_path.parent)
        fd = os.open(self.run_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps({"pid": os.getpid(), **self.info}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        gate = os.open(self.gate_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(gate, fcntl.LOCK_EX)  # waits while someone decides to kill this child
            self.run_path.unlink(missing_ok=True)
            os.close(self._fd)
            self._fd = None
            self.gate_path.unlink(missing_ok=True)
        finally:
            os.close(gate)


def slot_info(run_dir: Path, job_id: str) -> dict[str, Any]:
    """What a job's slot file says (pid, deadlines, containment details), or {} if there is none
    (read by the main process after the child died, when nobody holds it any more)."""
    run_path, _ = _slot_paths(run_dir, job_id)
    try:
        info = json.loads(run_path.read_text() or "null")
    except (OSError, ValueError):
        return {}
    return info if isinstance(info, dict) else {}


def slots_running(run_dir: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (job id, slot info) for each job a child on this host appears to be running."""
    folder = run_dir / SLOT_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        if not name.endswith(".run"):
            continue
        try:
            info = json.loads((folder / name).read_text() or "null")
        except (OSError, ValueError):
            continue  # being written or removed
        if isinstance(info, dict):
            yield name[: -len(".run")], info


def _slot_pid(fd: int) -> int | None:
    """The pid in a held slot file (the child writes it just after taking the lock)."""
    deadline = time.monotonic() + 1.0
    while True:
        try:
            return int(json.loads(os.pread(fd, 4096, 0))["pid"])
        except (ValueError, KeyError, TypeError):
            if time.monotonic() > deadline:
                return None
            time.sleep(0.001)


def slot_stop(
    run_dir: Path,
    job_id: str,
    *,
    marker: dict[str, Any],
    kill: Callable[[int], None],
    owns: Callable[[int], bool] = lambda _pid: True,
) -> bool:
    """If a worker child on this host (one that `owns` accepts) is still running `job_id`, leave
    `marker` and call `kill(child pid)` while that child cannot move on. Returns whether it was
    killed."""
    run_path, gate_path = _slot_paths(run_dir, job_id)
    if not run_path.exists():
        return False
    gate = os.open(gate_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(gate, fcntl.LOCK_EX)
        try:
            fd = os.open(run_path, os.O_RDONLY)
        except FileNotFoundError:
            gate_path.unlink(missing_ok=True)  # the child finished; nobody waits on this gate
            return False
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _slot_pid(fd)
                if pid is None or not owns(pid):
                    return False
                marker_write(run_dir, job_id, marker)
                kill(pid)
                return True
            return False  # the lock was free: its child died without cleaning up
        finally:
            os.close(fd)
    finally:
        os.close(gate)
