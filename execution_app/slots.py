"""Which worker child runs which job, on this host, and stopping one safely.

While a worker child runs a tool it holds an exclusive lock on `<run dir>/jobs/<job id>.run`,
which also holds its pid and deadlines. Whoever wants to stop that job (the main process at the
hard limit, a cancel) first takes the job's gate lock, then checks the run lock: only if the child
still holds it is the child killed. A child that has finished the tool must take the gate before it
releases the run lock, so it can never move on to another job between the check and the kill:
cancelling or timing out one job never kills a process that is running another job.

The locks are POSIX record locks (`fcntl.lockf`), which belong to a process and are not inherited
by `fork()`: a pool child forked while the main process holds a gate does not hold it too (a
`flock` would be shared through the inherited descriptor, and the gate would never open again).
They do not exclude threads of one process, so the main process also serialises its stoppers with
a thread lock. Every wait is bounded.

Why a job ended, when its child was killed on purpose, is left as a small JSON "end marker" next
to it, read by the main process's failure hooks. A cancel leaves its marker before it looks for
the slot, and a child checks for one after taking its slot: one of the two always sees the other,
so a job cancelled while its child was still loading the plugin does not run.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

SLOT_DIR = "jobs"
LOCK_WAIT_S = 5.0
_stoppers = threading.Lock()  # POSIX locks do not exclude the threads of one process


def _lock(fd: int, operation: int, timeout_s: float = LOCK_WAIT_S) -> bool:
    """Take a POSIX record lock on `fd`, waiting at most `timeout_s`; return whether it was
    taken."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            fcntl.lockf(fd, operation | fcntl.LOCK_NB)
            return True
        except OSError:  # EACCES or EAGAIN: held by another process
            if time.monotonic() > deadline:
                return False
            time.sleep(0.001)


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
        fd = os.open(self.run_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        fcntl.lockf(fd, fcntl.LOCK_EX)  # a new file: nobody else holds it
        os.write(fd, json.dumps({"pid": os.getpid(), **self.info}).encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        gate = os.open(self.gate_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            # Waits while someone decides to kill this child (a stopper holds the gate briefly).
            _lock(gate, fcntl.LOCK_EX, timeout_s=4 * LOCK_WAIT_S)
            self.run_path.unlink(missing_ok=True)
            os.close(self._fd)  # releases the run lock
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
    mark_first: bool = False,
) -> bool:
    """If a worker child on this host (one that `owns` accepts) is still running `job_id`, leave
    `marker` and call `kill(child pid)` while that child cannot move on. Returns whether it was
    killed. With `mark_first` (a cancel) the marker is left even when no child runs the job yet,
    so a child that takes the job's slot later sees it and does not run the tool."""
    run_path, gate_path = _slot_paths(run_dir, job_id)
    if mark_first:
        _ensure_dir(run_path.parent)
        marker_write(run_dir, job_id, marker)
    if not run_path.exists():
        return False
    with _stoppers:
        gate = os.open(gate_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not _lock(gate, fcntl.LOCK_EX):
                return False  # a child stuck at its gate for seconds: leave it to the backstops
            try:
                fd = os.open(run_path, os.O_RDONLY | os.O_CLOEXEC)
            except FileNotFoundError:
                gate_path.unlink(missing_ok=True)  # the child finished; nobody waits on this gate
                return False
            try:
                if _lock(fd, fcntl.LOCK_SH, timeout_s=0):
                    return False  # the lock was free: its child died without cleaning up
                pid = _slot_pid(fd)
                if pid is None or not owns(pid):
                    return False
                marker_write(run_dir, job_id, marker)
                kill(pid)
                return True
            finally:
                os.close(fd)
        finally:
            os.close(gate)


def slot_cancelled(run_dir: Path, job_id: str) -> bool:
    """Whether a cancel left its marker for `job_id` (a child checks after taking the slot)."""
    return (marker_read(run_dir, job_id) or {}).get("cause") == "cancel"


def slot_files_sweep(run_dir: Path, *, alive: Callable[[int], bool], max_age_s: float) -> int:
    """Remove what dead children and other hosts' cancels left in the run directory: slot files
    whose child is gone, and markers, gates and outputs older than `max_age_s` with no slot.
    Returns how many files were removed."""
    folder = run_dir / SLOT_DIR
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        return 0
    running = {n[: -len(".run")] for n in names if n.endswith(".run")}
    removed = 0
    now = time.time()
    for name in names:
        job_id, _, kind = name.rpartition(".")
        path = folder / name
        try:
            if kind == "run":
                pid = int(json.loads(path.read_text() or "null")["pid"])
                stale = not alive(pid) and now - path.stat().st_mtime > max_age_s
            else:
                stale = job_id not in running and now - path.stat().st_mtime > max_age_s
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if stale:
            path.unlink(missing_ok=True)
            removed += 1
    return removed
