"""Benchmark plugin_sync: 50 generated plugins (healthy and broken) against bare process spawns.

Usage: python bench/probe.py [--plugins 50] [--repeat 3] [--timeout 2] [--concurrency N]
                             [--without-hang] [--database-url URL] [--json FILE]

Runs the real plugin_sync (discovery, dependency checks, isolated probes, database writes) with
project.settings on a throwaway var dir and a freshly migrated database (a new SQLite file, or the
empty database `--database-url` names; `make bench` runs it on both), then spawns the
same number of bare `python -c pass` processes with the same concurrency as the floor that process
isolation cannot beat. Each sync also reports where its time went (discovery, dependency checks,
isolated probes, and the database writes around them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

HEALTHY = """
class Plugin:
    def __init__(self):
        self.ready = True

    def validate(self):
        assert self.ready

    def run(self, tool, args):
        return {"ok": True}
"""
KINDS: dict[str, tuple[dict[str, object], str]] = {
    "healthy": ({}, HEALTHY),
    "import_error": ({}, "import nonexistent_module_xyz\n" + HEALTHY),
    "init_error": (
        {},
        HEALTHY.replace("self.ready = True", 'raise ValueError("model path not configured")'),
    ),
    "missing_package": ({"dependencies": {"python": ["nonexistent_pkg_xyz"]}}, HEALTHY),
    "missing_program": ({"dependencies": {"binaries": ["nonexistent_program_xyz"]}}, HEALTHY),
    "segfault": ({}, "import ctypes\nctypes.string_at(0)\n" + HEALTHY),
    "hang": ({}, "import time\nwhile True:\n    time.sleep(0.05)\n" + HEALTHY),
}


def mix(total: int, hangs: bool = True) -> list[str]:
    """The kinds of `total` plugins: ~60% healthy, 2% hanging, the rest broken in other ways."""
    broken = {
        "import_error": 0.08,
        "init_error": 0.08,
        "missing_package": 0.06,
        "missing_program": 0.06,
        "segfault": 0.06,
        "hang": 0.02 if hangs else 0.0,
    }
    kinds = [
        kind for kind, share in broken.items() for _ in range(max(share > 0, round(total * share)))
    ]
    return kinds + ["healthy"] * (total - len(kinds))


def generate(base: Path, total: int, hangs: bool) -> Counter[str]:
    """Write `total` plugin folders under `base`; return how many of each kind."""
    kinds = mix(total, hangs)
    for index, kind in enumerate(kinds):
        extra, code = KINDS[kind]
        folder = base / f"p{index:03d}_{kind}"
        folder.mkdir(parents=True)
        manifest = {
            "name": folder.name,
            "version": "1.0.0",
            "entrypoint": "plugin:Plugin",
            "tools": [{"name": "run"}],
            **extra,
        }
        (folder / "manifest.json").write_text(json.dumps(manifest))
        (folder / "plugin.py").write_text(code)
    return Counter(kinds)


def timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def spawn_bare(count: int, concurrency: int) -> list[float]:
    """Spawn `count` bare interpreters, `concurrency` at a time, as probe_many does; return each
    spawn's duration (ms)."""

    def one(_: int) -> float:
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        return (time.perf_counter() - started) * 1000

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        return list(pool.map(one, range(count)))


def instrument(services: Any) -> dict[str, Any]:
    """Wrap the phases plugin_sync calls so that each sync reports where its time went."""
    phases: dict[str, Any] = {}

    def wrap(label: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed_call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                phases[label] = phases.get(label, 0.0) + time.perf_counter() - started

        return timed_call

    original_probe_many = services.probe_many

    def probe_many(*args: Any, **kwargs: Any) -> Any:
        results = original_probe_many(*args, **kwargs)
        phases["probe durations"] = [r.duration_ms for r in results.values()]
        return results

    services.discover = wrap("discovery", services.discover)
    services.check_dependencies = wrap("dependency checks", services.check_dependencies)
    services.probe_many = wrap("probes", probe_many)
    return phases


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--plugins", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=2.0, help="probe timeout (s)")
    parser.add_argument(
        "--concurrency",
        type=int,
        default=None,
        help="probe concurrency (default: Warden's, max(4, 2 x CPUs))",
    )
    parser.add_argument(
        "--without-hang",
        action="store_true",
        help="make the hanging plugin healthy (shows the cost without a timeout)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="an empty database to sync into (default: a fresh SQLite file in a temp dir)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    options = parser.parse_args()
    figures = measure(
        plugins=options.plugins,
        repeat=options.repeat,
        timeout=options.timeout,
        concurrency=options.concurrency,
        hang=not options.without_hang,
        database_url=options.database_url,
    )
    if options.json:
        options.json.write_text(json.dumps(figures))


def measure(
    *,
    plugins: int,
    repeat: int,
    timeout: float,
    concurrency: int | None,
    hang: bool,
    database_url: str | None,
) -> dict[str, Any]:
    """Run `repeat` syncs of `plugins` generated plugins, then the bare-spawn baseline; print
    each and return the figures (seconds, per-probe and per-spawn durations in ms)."""
    work = Path(tempfile.mkdtemp(prefix="warden-bench-"))
    folder = work / "plugins"
    counts = generate(folder, plugins, hang)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="project.settings",
        WARDEN_VAR_DIR=str(work / "var"),
        WARDEN_PLUGIN_DIRS=str(folder),
        WARDEN_PROBE_TIMEOUT_S=str(timeout),
        WARDEN_LOG_LEVEL="WARNING",
    )
    os.environ.pop("WARDEN_SQLITE_PATH", None)
    os.environ.setdefault("DJANGO_SECRET_KEY", "warden-bench-" + "s3cr3t-" * 8)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    else:
        os.environ.pop("DATABASE_URL", None)
    if concurrency:
        os.environ["WARDEN_PROBE_CONCURRENCY"] = str(concurrency)
    (work / "var").mkdir()
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    from plugins_app import services
    from plugins_app.models import PluginRecord

    call_command("migrate", verbosity=0)
    concurrency = settings.WARDEN_PROBE_CONCURRENCY
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, probe concurrency "
        f"{concurrency}, probe timeout {timeout:g} s, database {connection.vendor}"
    )
    print(f"{plugins} plugins: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))

    phases = instrument(services)
    sync_times = []
    all_probes: list[float] = []
    for run in range(1, repeat + 1):
        phases.clear()
        elapsed = timed(lambda: services.plugin_sync())
        sync_times.append(elapsed)
        probes = phases.pop("probe durations")
        all_probes += probes
        split = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in phases.items())
        rest = elapsed - sum(phases.values())
        print(
            f"sync {run}: {elapsed:.2f} s, {plugins / elapsed:.1f} plugins/s "
            f"({split}, database and the rest {rest:.2f} s; {len(probes)} probes, median "
            f"{statistics.median(probes):.0f} ms, slowest {max(probes):.0f} ms)"
        )
    states = Counter(PluginRecord.objects.values_list("state", flat=True))
    print("states after sync: " + ", ".join(f"{k} {v}" for k, v in sorted(states.items())))

    spawns: list[float] = []
    baseline = timed(lambda: spawns.extend(spawn_bare(plugins, concurrency)))
    median = statistics.median(sync_times)
    print(f"baseline: {plugins} x `python -c pass` at concurrency {concurrency}: {baseline:.2f} s")
    print(f"median sync / baseline: {median / baseline:.1f}x")
    return {
        "plugins": plugins,
        "kinds": dict(counts),
        "concurrency": concurrency,
        "sync_s": sync_times,
        "baseline_s": baseline,
        "probe_ms": all_probes,
        "spawn_ms": spawns,
    }


if __name__ == "__main__":
    main()
