"""Dependency checks that run before a plugin is imported (CONTRACT.md §3 rule 1)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

DEFAULT_MIN_BYTES = 16
GPU_CHECK_TIMEOUT_S = 20.0
GPU_HINT = (
    "run this plugin on a worker host with an NVIDIA GPU, its driver (nvidia-smi) and a "
    "CUDA build of torch; GPU jobs go to the 'gpu' queue"
)


@dataclass(frozen=True)
class Missing:
    """One thing the host lacks, with an actionable reason and install hint."""

    reason: str
    hint: str | None


def _hint(manifest: dict[str, Any], key: str, default: str | None) -> str | None:
    hints = manifest.get("hints", {})
    return str(hints[key]) if key in hints else default


def _with_hint(text: str, hint: str | None) -> str:
    return f"{text} (install with: {hint})" if hint else text


def check_python_package(module: str, manifest: dict[str, Any]) -> Missing | None:
    """Return a Missing if `module` cannot be found (without importing it)."""
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if found:
        return None
    hint = _hint(manifest, module, f"pip install {module}")
    return Missing(_with_hint(f"Missing Python package '{module}'", hint), hint)


def check_program(program: str, manifest: dict[str, Any]) -> Missing | None:
    """Return a Missing if `program` is not on PATH."""
    if shutil.which(program):
        return None
    hint = _hint(manifest, program, None)
    return Missing(_with_hint(f"Missing program '{program}' on PATH", hint), hint)


@cache
def torch_cuda_status() -> str | None:
    """Return None if torch sees a CUDA device, else why not.

    Runs in a child process: importing torch costs ~1.5 s and must never happen in a web process
    or a Celery parent that forks afterwards.
    """
    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    try:
        done = subprocess.run(
            [sys.executable, "-c", "import torch; print(torch.cuda.is_available())"],
            capture_output=True,
            text=True,
            timeout=GPU_CHECK_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"torch.cuda.is_available() did not answer within {GPU_CHECK_TIMEOUT_S:.0f} s"
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return f"importing torch failed: {last}"
    if done.stdout.strip() != "True":
        return "torch.cuda.is_available() is False"
    return None


@cache
def nvidia_smi_status() -> str | None:
    """Return None if nvidia-smi lists a GPU, else why not."""
    program = shutil.which("nvidia-smi")
    if program is None:
        return "nvidia-smi not found"
    try:
        done = subprocess.run(
            [program, "-L"], capture_output=True, text=True, timeout=10, check=False
        )
    except subprocess.TimeoutExpired:
        return "nvidia-smi did not answer within 10 s"
    if done.returncode != 0 or "GPU" not in done.stdout:
        return f"nvidia-smi found no GPU (exit code {done.returncode})"
    return None


def check_gpu() -> Missing | None:
    """Return a Missing unless both torch and nvidia-smi see a CUDA GPU."""
    problems = [p for p in (torch_cuda_status(), nvidia_smi_status()) if p]
    if not problems:
        return None
    return Missing(f"No CUDA GPU ({'; '.join(problems)}); this plugin requires a GPU", GPU_HINT)


def model_file_path(entry: dict[str, Any], folder: Path | None) -> Path | None:
    """Return where a `models` entry points: relative to its package or the plugin folder."""
    package = entry.get("package")
    if package:
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        if spec is None:
            return None
        if spec.submodule_search_locations:
            base = Path(next(iter(spec.submodule_search_locations)))
        else:
            base = Path(spec.origin or ".").parent
        return base / entry["path"]
    return (folder or Path(".")) / entry["path"]


def _magic_bytes(magic: str) -> bytes:
    if magic.startswith("hex:"):
        return bytes.fromhex(magic[4:])
    return magic.encode()


def check_model(
    entry: dict[str, Any], folder: Path | None, manifest: dict[str, Any]
) -> Missing | None:
    """Return a Missing if the model file is absent, unreadable, too short or of the wrong kind."""
    rel = entry["path"]
    hint = _hint(manifest, rel, None)
    path = model_file_path(entry, folder)
    if path is None:
        package = entry["package"]
        pkg_hint = _hint(manifest, package, f"pip install {package}")
        return Missing(
            _with_hint(
                f"Missing Python package '{package}' that ships model file '{rel}'", pkg_hint
            ),
            pkg_hint,
        )
    min_bytes = int(entry.get("min_bytes", DEFAULT_MIN_BYTES))
    magic = _magic_bytes(entry["magic"]) if entry.get("magic") else b""
    try:
        # O_NONBLOCK: opening a FIFO put where the model should be must not hang the sync.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise IsADirectoryError(path)
            if not stat.S_ISREG(info.st_mode):
                return Missing(f"Model file '{rel}' is not a regular file ({path})", hint)
            size = info.st_size
            head = handle.read(max(len(magic), 16))
    except FileNotFoundError:
        return Missing(_with_hint(f"Missing model file '{rel}' (expected at {path})", hint), hint)
    except IsADirectoryError:
        return Missing(f"Model file '{rel}' is a directory, not a file ({path})", hint)
    except OSError as exc:
        return Missing(f"Model file '{rel}' cannot be read: {type(exc).__name__}: {exc}", hint)
    if size < min_bytes:
        return Missing(
            _with_hint(
                f"Model file '{rel}' is truncated: {size} bytes, expected at least {min_bytes} "
                f"({path})",
                hint,
            ),
            hint,
        )
    if magic and not head.startswith(magic):
        return Missing(
            _with_hint(
                f"Model file '{rel}' is not the expected format: starts with "
                f"{head[: len(magic)]!r}, expected {magic!r} ({path})",
                hint,
            ),
            hint,
        )
    return None


def check_dependencies(manifest: dict[str, Any], folder: Path | None) -> list[Missing]:
    """Return everything the host lacks for this plugin, in manifest order (empty when ready)."""
    deps = manifest.get("dependencies", {})
    missing = [check_python_package(m, manifest) for m in deps.get("python", [])]
    missing += [check_program(p, manifest) for p in deps.get("binaries", [])]
    if manifest.get("requires_gpu"):
        missing.append(check_gpu())
    missing += [check_model(entry, folder, manifest) for entry in manifest.get("models", [])]
    return [m for m in missing if m is not None]
