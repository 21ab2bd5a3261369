"""The probe-fault plugin folders, helpers to place them in a test's own plugin directory, and a
view of a plugin as this host sees it."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from plugins_app.models import FaultOrigin, PluginHost, PluginRecord, PluginState
from plugins_app.selectors import plugin_availability

FAULTS = Path(__file__).resolve().parents[1] / "plugins" / "probe_faults"


def copy_plugins(dest: Path, *names: str) -> Path:
    """Copy fault-suite plugin folders into `dest`; return `dest`."""
    for name in names:
        shutil.copytree(FAULTS / name, dest / name)
    return dest


class PluginView:
    """One plugin location as the health API and this host's entry report it: `state`, `reason`,
    `hint` and `accepting_jobs` as the health record has them (the entry's own for a duplicate),
    `location`, `missing`, `shadowed` and the probe fields from the host entry, anything else from
    the PluginRecord."""

    def __init__(self, entry: PluginHost) -> None:
        self._load(entry)

    def refresh_from_db(self) -> None:
        """Read the record and the host entry again."""
        self._load(PluginHost.objects.get(pk=self.entry.pk))

    def _load(self, entry: PluginHost) -> None:
        self.entry = entry
        self.record = PluginRecord.objects.get(pk=entry.plugin_id)
        availability = plugin_availability(self.record, live=None)
        if entry.shadowed or (entry.state != availability.state and not self._only_entry()):
            self.state, self.reason, self.hint = entry.state, entry.reason, entry.hint
            self.accepting_jobs = False
        else:
            self.state, self.reason = availability.state, availability.reason
            self.hint, self.accepting_jobs = availability.hint, availability.accepting_jobs
        self.location = entry.location
        self.shadowed = entry.shadowed
        self.missing = entry.state == PluginState.UNAVAILABLE and "no longer exists" in (
            entry.reason or ""
        )
        self.probe_traceback = entry.probe_traceback
        self.probe_duration_ms = entry.probe_duration_ms
        self.probed_at = entry.probed_at
        self.fault_origin = (
            self.record.fault_origin
            if self.accepting_jobs or self.record.quarantined
            else FaultOrigin.LOAD
        )

    def _only_entry(self) -> bool:
        return PluginHost.objects.filter(plugin_id=self.entry.plugin_id).count() == 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self.record, name)


def record_at(folder: Path) -> PluginView:
    """The plugin found in `folder`, as this host sees it."""
    return record_at_location(str(folder.resolve()))


def record_at_location(location: str) -> PluginView:
    """The plugin found at `location` (a folder, or "entry-point:<name>=<value>")."""
    return PluginView(PluginHost.objects.get(location=location))


def plugin_view(name: str) -> PluginView:
    """The plugin called `name` (its active location on the host that synced it last)."""
    entry = PluginHost.objects.filter(plugin__name=name).order_by("shadowed", "-updated_at").first()
    assert entry is not None, f"no host has synced plugin {name!r}"
    return PluginView(entry)
