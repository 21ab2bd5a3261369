"""Per-job capture of what a plugin (and every process it starts) writes to stdout and stderr.

During the run of a tool the worker child's file descriptors 1 and 2 point at
`<run dir>/jobs/<job id>.out` (opened with O_APPEND, inherited by helper programs), and
`sys.stdout`/`sys.stderr` write there too, so plugin output never floods the worker log. The file is
trimmed to its last `cap` bytes whenever it grows past four times that; the tail is stored on the
Job for the admin. If the child dies, the main process reads the tail from the file instead.
"""

from __future__ import annotations

import io
import os
import sys
from pathlib import Path
from typing import TextIO

from project.storable import storable_text

from .slots import SLOT_DIR, _ensure_dir

DROPPED = b"[... earlier output dropped ...]\n"


def output_path(run_dir: Path, job_id: str) -> Path:
    """Where the job's output is captured."""
    return run_dir / SLOT_DIR / f"{job_id}.out"


def _tail(fd: int, cap: int) -> bytes:
    size = os.fstat(fd).st_size
    if size <= cap:
        return os.pread(fd, size, 0)
    return DROPPED + os.pread(fd, cap, size - cap)


def _text(data: bytes) -> str:
    return storable_text(data.decode("utf-8", "replace"))


def output_tail(run_dir: Path, job_id: str, cap: int) -> str:
    """The last `cap` bytes a job wrote (main process side, after its child died), then remove the
    file. Empty if nothing was captured."""
    path = output_path(run_dir, job_id)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return ""
    try:
        return _text(_tail(fd, cap))
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


class OutputCapture:
    """Context manager: capture fds 1 and 2 and sys.stdout/sys.stderr into the job's file."""

    def __init__(self, run_dir: Path, job_id: str, cap_bytes: int) -> None:
        self.path = output_path(run_dir, job_id)
        self.cap = cap_bytes
        self.text = ""
        self._fd: int | None = None
        self._saved_fds: tuple[int, int] | None = None
        self._saved_streams: tuple[TextIO, TextIO] | None = None
        self._stream: TextIO | None = None

    def __enter__(self) -> OutputCapture:
        _ensure_dir(self.path.parent)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND, 0o600)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        self._saved_fds = (os.dup(1), os.dup(2))
        os.dup2(self._fd, 1)
        os.dup2(self._fd, 2)
        self._saved_streams = (sys.stdout, sys.stderr)
        self._stream = io.TextIOWrapper(
            io.FileIO(os.dup(self._fd), "w"),
            encoding="utf-8",
            errors="backslashreplace",
            line_buffering=True,
            write_through=True,
        )
        sys.stdout = sys.stderr = self._stream
        return self

    def trim(self) -> None:
        """Keep only the last `cap` bytes once the file passed four times that (watchdog thread)."""
        fd = self._fd
        if fd is None or os.fstat(fd).st_size <= 4 * self.cap:
            return
        tail = _tail(fd, self.cap)
        os.ftruncate(fd, 0)
        os.write(fd, tail if tail.startswith(DROPPED) else DROPPED + tail)

    def __exit__(self, *exc: object) -> None:
        if self._fd is None:
            return
        if self._stream is not None:
            try:
                self._stream.flush()
                self._stream.close()
            except (OSError, ValueError):
                pass
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
        if self._saved_fds is not None:
            os.dup2(self._saved_fds[0], 1)
            os.dup2(self._saved_fds[1], 2)
            for fd in self._saved_fds:
                os.close(fd)
        read_fd = os.open(self.path, os.O_RDONLY)
        try:
            self.text = _text(_tail(read_fd, self.cap))
        finally:
            os.close(read_fd)
        os.close(self._fd)
        self._fd = None
        self.path.unlink(missing_ok=True)
