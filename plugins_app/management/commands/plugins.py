"""`manage.py plugins sync|list|check NAME`: probe plugins and show their health."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from execution_app.workers import live_hosts_or_none
from plugins_app.models import PluginRecord
from plugins_app.selectors import plugin_get, plugin_health, plugin_list
from plugins_app.services import plugin_sync


class Command(BaseCommand):
    help = "Sync (discover, check, probe), list or inspect plugins."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sync = sub.add_parser("sync", help="Discover plugins and probe them in isolated processes")
        sync.add_argument("names", nargs="*", help="Only re-probe these plugins")
        sub.add_parser("list", help="Print a table of plugins, states and reasons")
        check = sub.add_parser("check", help="Print one plugin's full record")
        check.add_argument("name")

    def handle(self, *args: Any, **options: Any) -> None:
        getattr(self, f"_{options['action']}")(**options)

    def _sync(self, names: list[str], **_: Any) -> None:
        if names:
            known = set(PluginRecord.objects.filter(name__in=names).values_list("name", flat=True))
            unknown = sorted(set(names) - known)
            if unknown:
                raise CommandError(f"Unknown plugin(s): {', '.join(unknown)}")
        started = time.monotonic()
        outcomes = plugin_sync(names=names or None, progress=self.stdout.write)
        elapsed = time.monotonic() - started
        self._table()
        ready = sum(o.state == "INITIALIZED" for o in outcomes)
        self.stdout.write(
            f"Synced {len(outcomes)} plugin(s) in {elapsed:.2f} s: {ready} ready, "
            f"{len(outcomes) - ready} not ready"
        )

    def _list(self, **_: Any) -> None:
        self._table()

    def _table(self) -> None:
        live = live_hosts_or_none()
        rows = [plugin_health(p, live) for p in plugin_list()]
        if not rows:
            self.stdout.write(
                "No plugins found (WARDEN_PLUGIN_DIRS, entry points 'warden.plugins' and "
                "'forgesyte.plugins')"
            )
            return
        width = max(len(r["name"]) for r in rows) + 2
        self.stdout.write(f"{'NAME':<{width}}{'VERSION':<10}{'STATE':<13}REASON")
        for r in rows:
            style = {
                "INITIALIZED": self.style.SUCCESS,
                "RUNNING": self.style.SUCCESS,
                "FAILED": self.style.ERROR,
            }.get(r["state"], self.style.WARNING)
            self.stdout.write(
                f"{r['name']:<{width}}{(r['version'] or '-'):<10}"
                + style(f"{r['state']:<13}")
                + (r["reason"] or "")
            )

    def _check(self, name: str, **_: Any) -> None:
        plugin = plugin_get(name=name)
        if plugin is None:
            raise CommandError(f"No plugin named '{name}'")
        record = plugin_health(plugin, live_hosts_or_none())
        entries = list(plugin.hosts.all())
        for view, entry in zip(record["hosts"], entries, strict=True):
            view.update(location=entry.location, probe_duration_ms=entry.probe_duration_ms)
        record.update(
            source=plugin.source,
            quarantined=plugin.quarantined,
            limits={"timeout_s": plugin.timeout_s, "memory_mb": plugin.memory_mb},
            probed_at=plugin.probed_at,
        )
        self.stdout.write(json.dumps(record, indent=2, default=str))
        for entry in entries:
            if entry.probe_traceback:
                self.stdout.write(
                    f"\nProbe output / traceback on {entry.host} ({entry.location}):\n"
                    + entry.probe_traceback
                )
        history = plugin.transitions.all()[:10]
        if history:
            self.stdout.write("\nState history (newest first):")
            for t in history:
                self.stdout.write(
                    f"  {t.at:%Y-%m-%d %H:%M:%S} {t.from_state or '-'} -> "
                    f"{t.to_state}: {t.reason or ''}"
                )
