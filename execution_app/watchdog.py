"""The memory watchdog: stops a job the moment its worker child grows past the job's limit.

A daemon thread polls the child's RSS. On a breach it first writes a small JSON marker with one
`os.write` to a file opened in advance, then SIGKILLs its own process: database I/O before the kill
would let the plugin keep allocating for hundreds of MB (see shared/notes/celery-isolation.md).
The worker's main process turns the marker into the job's MemoryLimitExceeded record. For
CPU-only plugins an RLIMIT_AS backstop also makes allocations past the limit fail outright.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

MB = 2**20
SWITCH_INTERVAL_S = 0.001


PAGE = os.sysconf("SC_PAGE_SIZE")


def _read_rss(statm_fd: int) -> int:
    """RSS in bytes from an open /proc/self/statm: a few microseconds, far cheaper than psutil."""
    return int(os.pread(statm_fd, 64, 0).split()[1]) * PAGE


def marker_path(run_dir: Path, job_id: str) -> Path:
    """Return where the watchdog leaves its marker for `job_id`."""
    return run_dir / f"memkill-{job_id}.json"


def read_marker(run_dir: Path, job_id: str) -> dict[str, Any] | None:
    """Return and delete the watchdog's marker for `job_id`, or None if there is none."""
    path = marker_path(run_dir, job_id)
    try:
        data = json.loads(path.read_text() or "null")
    except (OSError, ValueError):
        return None
    path.unlink(missing_ok=True)
    return data if isinstance(data, dict) else None


class MemoryWatch:
    """Context manager that enforces `limit_mb` of RSS growth on the current process."""

    def __init__(
        self, *, job_id: str, limit_mb: int, run_dir: Path, poll_s: float, address_limit: bool
    ) -> None:
        self.job_id = job_id
        self.limit_mb = limit_mb
        self.run_dir = run_dir
        self.poll_s = poll_s
        self.address_limit = address_limit
        self.process = psutil.Process()
        self.baseline_rss = 0
        self.peak_rss = 0
        self.rlimit_hit = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None
        self._saved_rlimit: tuple[int, int] | None = None
        self._saved_switch = sys.getswitchinterval()
        self._statm: int | None = None

    @property
    def peak_growth_mb(self) -> float:
        """Peak RSS growth over the job's start, in MB."""
        return max(0, self.peak_rss - self.baseline_rss) / MB

    def _sample(self) -> int:
        rss = _read_rss(self._statm) if self._statm is not None else self.process.memory_info().rss
        self.peak_rss = max(self.peak_rss, rss)
        return rss

    def _watch(self) -> None:
        limit = self.limit_mb * MB
        while not self._stop.wait(self.poll_s):
            rss = self._sample()
            if rss - self.baseline_rss > limit:
                self._kill(rss)

    def _kill(self, rss: int) -> None:
        marker = {
            "limit_mb": self.limit_mb,
            "peak_mb": round((rss - self.baseline_rss) / MB, 1),
            "rss_mb": round(rss / MB, 1),
        }
        if self._fd is not None:
            os.write(self._fd, json.dumps(marker).encode())
        os.kill(os.getpid(), signal.SIGKILL)

    def __enter__(self) -> MemoryWatch:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(
            marker_path(self.run_dir, self.job_id), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600
        )
        try:
            self._statm = os.open("/proc/self/statm", os.O_RDONLY)
        except OSError:
            self._statm = None  # not Linux: psutil instead
        self.baseline_rss = self.peak_rss = self._sample()
        # A thread allocating in a loop holds the GIL for a whole switch interval (5 ms by
        # default); a shorter one lets the watchdog in sooner, so it stops the job closer to the
        # limit.
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        self._thread = threading.Thread(target=self._watch, name="warden-memwatch", daemon=True)
        self._thread.start()
        if self.address_limit:
            # Backstop: address space may grow by the limit plus 10 %, never more. Breaks CUDA,
            # so GPU plugins rely on the polling thread alone.
            vms = self.process.memory_info().vms
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
            self.rlimit_hit = exc_type is MemoryError
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=1)
        sys.setswitchinterval(self._saved_switch)
        self._sample()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None
        marker_path(self.run_dir, self.job_id).unlink(missing_ok=True)
