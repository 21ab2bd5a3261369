"""Dependency checks that run before a plugin is imported (CONTRACT.md §3 rule 1)."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from importlib.machinery import ModuleSpec
from pathlib import Path
from typing import Any

from django.conf import settings
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

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


def _path_entry_finder(entry: str) -> Any:
    """The finder for one import-path entry, as the import system would pick it."""
    try:
        return sys.path_importer_cache[entry]
    except KeyError:
        pass
    for hook in sys.path_hooks:
        try:
            return hook(entry)
        except ImportError:
            continue
    return None


def _find_in(fullname: str, locations: list[str]) -> ModuleSpec | None:
    """Find submodule `fullname` in its parent's search locations, importing nothing."""
    namespace: list[str] = []
    for entry in locations:
        finder = _path_entry_finder(entry)
        if finder is None:
            continue
        try:
            spec = finder.find_spec(fullname)
        except (ImportError, ValueError, OSError):
            continue
        if spec is None:
            continue
        if spec.loader is not None:
            return spec
        namespace.extend(spec.submodule_search_locations or [])  # a namespace package portion
    if not namespace:
        return None
    spec = ModuleSpec(fullname, None, is_package=True)
    spec.submodule_search_locations = namespace
    return spec


def find_module_spec(name: str) -> ModuleSpec | None:
    """Return the spec of module `name` (dotted names too), or None if it cannot be found.

    Imports nothing: `importlib.util.find_spec("pkg.sub")` imports `pkg` and so runs its
    `__init__` (plugin code, in the web process or the Celery parent); this walks the import
    path level by level instead, looking for each part in its parent's search locations.
    """
    parts = name.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    spec: ModuleSpec | None = None
    for depth in range(1, len(parts) + 1):
        fullname = ".".join(parts[:depth])
        loaded = sys.modules.get(fullname)
        if loaded is not None and getattr(loaded, "__spec__", None) is not None:
            spec = loaded.__spec__  # already imported: nothing left to run
        elif spec is None:
            try:  # a top-level name: only the meta path finders are asked, nothing is imported
                spec = importlib.util.find_spec(fullname)
            except (ImportError, ValueError):
                return None
        else:
            spec = _find_in(fullname, list(spec.submodule_search_locations or []))
        if spec is None or (depth < len(parts) and not spec.submodule_search_locations):
            return None
    return spec


def module_folder(spec: ModuleSpec) -> Path:
    """Return the folder of a found module: the package's own folder, or the module file's."""
    if spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return Path(spec.origin or ".").parent


def check_python_package(module: str, manifest: dict[str, Any]) -> Missing | None:
    """Return a Missing if `module` cannot be found (without importing it or its parents)."""
    if find_module_spec(module) is not None:
        return None
    hint = _hint(manifest, module, f"pip install {module.split('.')[0]}")
    return Missing(_with_hint(f"Missing Python package '{module}'", hint), hint)


def _pip_argument(req: Requirement) -> str:
    """The requirement as one `pip install` argument, quoted for a shell when it needs it."""
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    return shlex.quote(f"{req.name}{extras}{req.specifier}")


def _applies(req: Requirement, extra: str) -> bool:
    if req.marker is None:
        return True
    try:
        return bool(req.marker.evaluate({"extra": extra}))
    except Exception:  # a marker this host cannot evaluate: check the requirement
        return True


def _check_requirement(
    req: Requirement, manifest: dict[str, Any], needed_for: str | None, seen: set[str]
) -> list[Missing]:
    key = canonicalize_name(req.name)
    if key in seen:
        return []
    seen.add(key)
    hint = _hint(manifest, req.name, f"pip install {_pip_argument(req)}")
    for_what = f" (needed by '{needed_for}')" if needed_for else ""
    try:
        dist = importlib.metadata.distribution(req.name)
    except importlib.metadata.PackageNotFoundError:
        return [Missing(_with_hint(f"Missing Python package '{req.name}'{for_what}", hint), hint)]
    if req.specifier and not req.specifier.contains(dist.version, prereleases=True):
        reason = (
            f"Python package '{req.name}' is version {dist.version}, but "
            f"'{req.name}{req.specifier}' is required{for_what}"
        )
        return [Missing(_with_hint(reason, hint), hint)]
    missing: list[Missing] = []
    for extra in sorted(req.extras):  # what `pip install name[extra]` adds
        for line in dist.requires or []:
            try:
                sub = Requirement(line)
            except InvalidRequirement:
                continue
            if sub.marker is not None and _applies(sub, extra) and not _applies(sub, ""):
                missing += _check_requirement(sub, manifest, f"{req.name}[{extra}]", seen)
    return missing


def check_distribution(requirement: str, manifest: dict[str, Any]) -> list[Missing]:
    """Return what is missing for one PEP 508 requirement (`Pillow>=10`, `celery[redis]`):
    the distribution, a version that satisfies it, and the requirements its extras add.

    Reads installed distributions' metadata with importlib.metadata; imports nothing. A
    requirement whose environment marker is false on this host (`extra == "dev"` included) is
    skipped.
    """
    try:
        req = Requirement(requirement)
    except InvalidRequirement as exc:
        problem = (str(exc).splitlines() or ["invalid"])[0]
        return [Missing(f"Cannot check requirement '{requirement}': {problem}", None)]
    if not _applies(req, ""):
        return []
    return _check_requirement(req, manifest, None, set())


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
    """Return a Missing unless both torch and nvidia-smi see a CUDA GPU (or the test-only
    setting WARDEN_FAKE_GPU says this host has one)."""
    if settings.WARDEN_FAKE_GPU:
        return None
    problems = [p for p in (torch_cuda_status(), nvidia_smi_status()) if p]
    if not problems:
        return None
    return Missing(f"No CUDA GPU ({'; '.join(problems)}); this plugin requires a GPU", GPU_HINT)


def model_file_path(entry: dict[str, Any], folder: Path | None) -> Path | None:
    """Return where a `models` entry points: relative to its package or the plugin folder."""
    package = entry.get("package")
    if package:
        spec = find_module_spec(package)
        if spec is None:
            return None
        return module_folder(spec) / entry["path"]
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
    for requirement in deps.get("distributions", []):
        missing += check_distribution(requirement, manifest)
    missing += [check_program(p, manifest) for p in deps.get("binaries", [])]
    if manifest.get("requires_gpu"):
        missing.append(check_gpu())
    missing += [check_model(entry, folder, manifest) for entry in manifest.get("models", [])]
    return [m for m in missing if m is not None]
