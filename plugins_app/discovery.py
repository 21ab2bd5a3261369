"""Plugin discovery: folders under WARDEN_PLUGIN_DIRS and the `warden.plugins` entry points."""

from __future__ import annotations

import importlib.util
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from .manifest import ManifestError, declared_name, read_manifest

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "warden.plugins"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass
class Candidate:
    """One plugin found on disk or through an entry point, before any check or import."""

    location: str
    source: str  # "directory" or "entry_point"
    folder: Path | None
    name: str
    manifest: dict[str, Any] | None = None
    error: str | None = None
    shadowed_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _fallback_name(text: str) -> str:
    """A plausible plugin name for a folder whose manifest gives none."""
    cleaned = re.sub(r"[^a-z0-9_]", "_", text.lower()).strip("_") or "plugin"
    if not cleaned[0].isalpha():
        cleaned = f"p_{cleaned}"
    return cleaned[:64]


def _from_folder(folder: Path, location: str, source: str, hinted_name: str) -> Candidate:
    try:
        manifest = read_manifest(folder)
    except ManifestError as exc:
        # Keep the manifest's own name in the record when it is readable and valid.
        name = declared_name(folder) or ""
        if not _NAME_RE.match(name):
            name = hinted_name
        return Candidate(location, source, folder, name, error=f"Invalid manifest: {exc}")
    return Candidate(location, source, folder, manifest["name"], manifest=manifest)


def _directory_candidates(plugin_dirs: Sequence[Path]) -> Iterable[Candidate]:
    for base in plugin_dirs:
        try:
            folders = sorted(base.iterdir()) if base.is_dir() else []
        except OSError as exc:  # an unreadable plugin directory must not abort discovery
            logger.warning("plugin directory %s cannot be listed: %s", base, exc)
            continue
        for folder in folders:
            if not folder.is_dir() or folder.name.startswith((".", "_")):
                continue
            yield _from_folder(
                folder.resolve(), str(folder.resolve()), "directory", _fallback_name(folder.name)
            )


def _entry_point_candidates() -> Iterable[Candidate]:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        location = f"entry-point:{ep.name}={ep.value}"
        module_name = ep.value.split(":")[0]
        try:
            spec = importlib.util.find_spec(module_name)
        except (ImportError, ValueError) as exc:
            spec, error = None, f"{type(exc).__name__}: {exc}"
        else:
            error = f"module '{module_name}' not found"
        if spec is None:
            yield Candidate(
                location,
                "entry_point",
                None,
                _fallback_name(ep.name),
                error=f"Entry point '{ep.name}' in group '{ENTRY_POINT_GROUP}' is broken: {error}",
            )
            continue
        if spec.submodule_search_locations:
            folder = Path(next(iter(spec.submodule_search_locations)))
        else:
            folder = Path(spec.origin or ".").parent
        yield _from_folder(folder, location, "entry_point", _fallback_name(ep.name))


def discover(plugin_dirs: Sequence[Path], *, include_entry_points: bool = True) -> list[Candidate]:
    """Return every candidate sorted by location; a later duplicate name is marked shadowed."""
    found = list(_directory_candidates(plugin_dirs))
    if include_entry_points:
        found.extend(_entry_point_candidates())
    found.sort(key=lambda c: c.location)
    first_by_name: dict[str, Candidate] = {}
    for candidate in found:
        winner = first_by_name.setdefault(candidate.name, candidate)
        if winner is not candidate:
            candidate.shadowed_by = winner.location
    return found
