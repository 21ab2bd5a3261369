"""The probe-fault plugin folders and helpers to place them in a test's own plugin directory."""

from __future__ import annotations

import shutil
from pathlib import Path

from plugins_app.models import PluginRecord

FAULTS = Path(__file__).resolve().parents[1] / "plugins" / "probe_faults"


def copy_plugins(dest: Path, *names: str) -> Path:
    """Copy fault-suite plugin folders into `dest`; return `dest`."""
    for name in names:
        shutil.copytree(FAULTS / name, dest / name)
    return dest


def record_at(folder: Path) -> PluginRecord:
    """Return the record of the plugin found in `folder`."""
    return PluginRecord.objects.get(location=str(folder.resolve()))
