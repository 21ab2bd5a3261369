"""The memory watchdog: stops a job the moment its process tree grows past the job's limit.

A daemon thread in the worker child (one per process, armed for each job) polls the memory of the
job's whole tree (its cgroup's charge, or the child's RSS growth plus its descendants', see
containment.py). On a breach it first writes a small JSON marker, then SIGKILLs the job's other
processes and its own: database I/O before the kill would let the plugin keep allocating for
hundreds of MB (see shared/notes/celery-isolation.md). The worker's main process turns the marker
into the job's MemoryLimitExceeded record. Backstops bound what the thread cannot see in time: the
job cgroup's kernel limit at 110 % and, for CPU-only plugins, RLIMIT_AS on the child itself.

The same thread keeps the job's captured output bounded (output.py).
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

from .containment import JobTree
from .output import OutputCapture
from .slots import marker_path

MB = 2**20
SWITCH_INTERVAL_S = 0.001
OUTPUT_TRIM_EVERY = 10  # polls
PEAK_EVERY = 10  # polls between exact samples of the peak (cgroup mode)
CONFIRM_EVERY = 5  # polls between exact re-reads while only page cache is past the limit
CONFIRM_GROWTH = 4 * MB


class _Watcher:
    """The one watchdog thread of a worker child, parked while no job runs.

    Starting and joining a thread per job cost milliseconds on a busy machine; this thread is
    started once per process and armed with each job's MemoryWatch. Ticks and disarming share a
    lock, so once `disarm()` returns the thread never touches that job again.
    """

    def __init__(self) -> None:
        self.pid = os.getpid()
        self._lock = threading.Lock()
        self._armed = threading.Event()
        self._watch: MemoryWatch | None = None
        self._thread = threading.Thread(target=self._run, name="warden-memwatch", daemon=True)
        self._thread.start()

    def arm(self, watch: MemoryWatch) -> None:
        with self._lock:
            self._watch = watch
            self._armed.set()

    def disarm(self) -> None:
        with self._lock:
            self._watch = None
            self._armed.clear()

    def _run(self) -> None:
        while True:
            self._armed.wait()
            watch = self._watch
            time.sleep(watch.poll_s if watch is not None else 0.001)
            with self._lock:
                if self._watch is not None:
                    self._watch.tick()


_watcher: _Watcher | None = None
PAGE = os.sysconf("SC_PAGE_SIZE")


def _vm_size() -> int:
    """This process's virtual size in bytes (first field of /proc/self/statm)."""
    with open("/proc/self/statm", "rb") as handle:
        return int(handle.read().split()[0]) * PAGE


def _the_watcher() -> _Watcher:
    global _watcher
    if _watcher is None or _watcher.pid != os.getpid():  # threads do not survive a fork
        _watcher = _Watcher()
    return _watcher


class MemoryWatch:
    """Context manager that enforces `limit_mb` on the memory of a job's process tree."""

    def __init__(
        self,
        *,
        job_id: str,
        limit_mb: int,
        run_dir: Path,
        poll_s: float,
        address_limit: bool,
        tree: JobTree,
        measured: str,
        output: OutputCapture | None = None,
    ) -> None:
        self.job_id = job_id
        self.limit_mb = limit_mb
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.address_limit = address_limit
        self.tree = tree
        self.measured = measured
        self.output = output
        self.peak_bytes = 0
        self.peak_confirmed = 0
        self.rlimit_hit = False
        self._polls = 0
        self._confirmed_at = (0, 0)
        self._saved_rlimit: tuple[int, int] | None = None
        self._saved_switch = sys.getswitchinterval()

    @property
    def peak_growth_mb(self) -> float:
        """Peak memory of the job's tree over its start, in MB (without page cache)."""
        return (self.peak_bytes if self.tree.precise else self.peak_confirmed) / MB

    def _sample(self) -> int:
        used = self.tree.memory_bytes()
        self.peak_bytes = max(self.peak_bytes, used)
        return used

    def _confirm(self) -> int:
        """The job's memory without reclaimable page cache (a heavier read): the figure a kill
        and the reported peak are based on."""
        confirmed = self.tree.confirmed_memory_bytes()
        self.peak_confirmed = max(self.peak_confirmed, confirmed)
        self._confirmed_at = (self._polls, self.peak_bytes)
        return confirmed

    def tick(self) -> None:
        """One poll (watchdog thread): kill the job past its limit; keep its output bounded."""
        try:
            used = self._sample()
            self._polls += 1
            limit = self.limit_mb * MB
            if used > limit:
                if self.tree.precise:
                    self._kill(used)
                # Past the limit only with page cache counted: re-read the exact figure every
                # few polls, or at once when the cheap figure grew by a few MB since.
                polls, at = self._confirmed_at
                if self._polls - polls >= CONFIRM_EVERY or used - at > CONFIRM_GROWTH:
                    confirmed = self._confirm()
                    if confirmed > limit:
                        self._kill(confirmed)
            elif not self.tree.precise and self._polls % PEAK_EVERY == 0:
                self._confirm()
            if self.output is not None and self._polls % OUTPUT_TRIM_EVERY == 0:
                self.output.trim()
        except OSError:
            pass  # a process or cgroup file vanished between two reads

    def _kill(self, used: int) -> None:
        marker = {
            "cause": "memory",
            "limit_mb": self.limit_mb,
            "peak_mb": round(used / MB, 1),
            "kind": "rss",
            "measured": self.measured,
        }
        path = marker_path(self.run_dir, self.job_id, "mem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.write(fd, json.dumps(marker).encode())
        self.tree.kill_others()
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self) -> MemoryWatch:
        self.peak_bytes = self.peak_confirmed = 0
        self._sample()
        # A thread allocating in a loop holds the GIL for a whole switch interval (5 ms by
        # default); a shorter one lets the watchdog in sooner, so it stops the job closer to the
        # limit.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        _the_watcher().arm(self)
        if self.address_limit:
            # Backstop: address space may grow by the limit plus 10 %, never more. Breaks CUDA,
            # so GPU plugins rely on the polling thread (and the job cgroup) alone.
            vms = _vm_size()
            self._saved_rlimit = resource.getrlimit(resource.RLIMIT_AS)
            cap = vms + int(self.limit_mb * MB * 1.1)
            hard = self._saved_rlimit[1]
            if hard == resource.RLIM_INFINITY or cap <= hard:
                resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
            else:
                self._saved_rlimit = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._saved_rlimit is not None:
            resource.setrlimit(resource.RLIMIT_AS, self._saved_rlimit)
            self.rlimit_hit = exc_type is not None and issubclass(exc_type, MemoryError)
        _the_watcher().disarm()
        sys.setswitchinterval(self._saved_switch)
        try:
            self._sample()
            if not self.tree.precise:
                self._confirm()
        except OSError:
            pass
