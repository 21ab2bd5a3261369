"""Plugin discovery: plugin folders, and `warden.plugins` and `forgesyte.plugins` entry points."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
from typing import Any

from .dependencies import find_module_spec, module_folder
from .forgesyte import translate as forgesyte
from .manifest import ManifestError, declared_name, read_manifest

logger = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "warden.plugins"
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass
class Candidate:
    """One plugin found on disk or through an entry point, before any check or import."""

    location: str
    source: str  # "directory", "entry_point" or "forgesyte"
    folder: Path | None
    name: str
    manifest: dict[str, Any] | None = None
    error: str | None = None
    shadowed_by: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    hint: str | None = None  # how to fix `error`, when the default (fix manifest.json) is wrong


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
        module_name = ep.value.split(":")[0].strip()
        spec = find_module_spec(module_name)  # never imports the package or its parents
        if spec is None:
            yield Candidate(
                location,
                "entry_point",
                None,
                _fallback_name(ep.name),
                error=(
                    f"Entry point '{ep.name}' in group '{ENTRY_POINT_GROUP}' is broken: "
                    f"module '{module_name}' not found"
                ),
            )
            continue
        yield _from_folder(module_folder(spec), location, "entry_point", _fallback_name(ep.name))


def _forgesyte_candidate(ep: EntryPoint) -> Candidate:
    """A ForgeSyte package, translated from its metadata and manifest.json; nothing imported."""
    where = forgesyte.location(ep)
    name = forgesyte.plugin_name(ep.name)
    broken = f"Entry point '{ep.name}' in group '{forgesyte.GROUP}' is broken"
    dist = ep.dist.metadata["Name"] if ep.dist is not None else ep.name
    hint = forgesyte.BROKEN_HINT.format(distribution=dist)
    if not _NAME_RE.match(name):
        error = (
            f"{broken}: its plugin name '{name}' is not a valid Warden name (at most 54 "
            "characters after 'forgesyte_')"
        )
        return Candidate(
            where, forgesyte.SOURCE, None, _fallback_name(name), error=error, hint=hint
        )
    module_name = ep.value.partition(":")[0].strip()
    spec = find_module_spec(module_name)  # never imports the package or its parents
    if spec is None:
        error = f"{broken}: module '{module_name}' not found"
        return Candidate(where, forgesyte.SOURCE, None, name, error=error, hint=hint)
    top = find_module_spec(module_name.split(".")[0])
    top_dir = module_folder(top) if top is not None and top.submodule_search_locations else None
    try:
        package = forgesyte.package_facts(ep, module_folder(spec), top_dir)
        manifest = forgesyte.static_manifest(name, package)
    except ManifestError as exc:
        error = f"Invalid manifest: {exc}"
        folder = module_folder(spec)
        return Candidate(where, forgesyte.SOURCE, folder, name, error=error, hint=hint)
    return Candidate(
        where,
        forgesyte.SOURCE,
        module_folder(spec),
        name,
        manifest=manifest,
        extra={"forgesyte": package},
    )


def discover(plugin_dirs: Sequence[Path], *, include_entry_points: bool = True) -> list[Candidate]:
    """Return every candidate sorted by location; a later duplicate name is marked shadowed.

    Entry points: `warden.plugins` (packages holding a Warden manifest) and `forgesyte.plugins`
    (ForgeSyte packages, translated; see plugins_app.forgesyte).
    """
    found = list(_directory_candidates(plugin_dirs))
    if include_entry_points:
        found.extend(_entry_point_candidates())
        found.extend(_forgesyte_candidate(ep) for ep in entry_points(group=forgesyte.GROUP))
    found.sort(key=lambda c: c.location)
    first_by_name: dict[str, Candidate] = {}
    for candidate in found:
        winner = first_by_name.setdefault(candidate.name, candidate)
        if winner is not candidate:
            candidate.shadowed_by = winner.location
    return found


def forgesyte_probed_manifest(candidate: Candidate, facts: dict[str, Any]) -> dict[str, Any]:
    """The complete manifest of a ForgeSyte candidate once its probe reported the class's tools.

    Raises ManifestError if the translation is invalid.
    """
    return forgesyte.probed_manifest(candidate.name, candidate.extra["forgesyte"], facts)
