"""Prometheus metrics at /metrics: the registry read at scrape time, plus HTTP request metrics.

Two sources, so that every number is right however many processes and hosts run Warden:
- `WardenCollector` reads the shared registry when scraped: plugin rows (state, counters kept on
  PluginRecord), JobOutcome totals (one upsert per job end), jobs in flight (an index range on
  status) and Redis (queue lengths, worker heartbeats). Any web process, on any host, answers
  the same; nothing scans the jobs table.
- HTTP request metrics are counted in each gunicorn process in prometheus_client's multiprocess
  mode (one small mmap file per process under PROMETHEUS_MULTIPROC_DIR) and summed at scrape
  time over this host's processes: each web host is its own scrape target for them.

Only web processes import this module (the middleware and the /metrics view): workers never
create metric files.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

Path(settings.PROMETHEUS_MULTIPROC_DIR).mkdir(parents=True, exist_ok=True)

from prometheus_client import CollectorRegistry, Counter, Histogram  # noqa: E402
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest  # noqa: E402
from prometheus_client.metrics_core import (  # noqa: E402
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402
from prometheus_client.samples import Sample  # noqa: E402
from prometheus_client.utils import floatToGoString  # noqa: E402

from execution_app import workers  # noqa: E402
from plugins_app.models import PluginState  # noqa: E402

from . import selectors  # noqa: E402
from .models import (  # noqa: E402
    DURATION_BUCKETS_S,
    DURATION_COLUMNS,
    MEMORY_BUCKETS_MB,
    MEMORY_COLUMNS,
    OUTCOME_COLUMNS,
)

logger = logging.getLogger(__name__)
CONTENT_TYPE = CONTENT_TYPE_LATEST
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
HTTP_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

# registry=None: in multiprocess mode the values live in files, read by MultiProcessCollector.
HTTP_REQUESTS = Counter(
    "warden_http_requests",
    "HTTP requests answered by the web processes of this host",
    ["method", "route", "status"],
    registry=None,
)
HTTP_DURATION = Histogram(
    "warden_http_request_duration_seconds",
    "Time from the first middleware to the response, per route",
    ["method", "route"],
    buckets=HTTP_BUCKETS_S,
    registry=None,
)


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one HTTP request (`route` is the URL pattern, never the raw path)."""
    method = method if method in HTTP_METHODS else "OTHER"
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)


_DURATION_LE = [floatToGoString(b) for b in DURATION_BUCKETS_S]  # type: ignore[no-untyped-call]
_MEMORY_LE = [floatToGoString(b) for b in MEMORY_BUCKETS_MB]  # type: ignore[no-untyped-call]
_STATES = tuple(str(state) for state in PluginState.values)
# Positions in a selectors.job_outcomes() tuple (models.OUTCOME_COLUMNS).
_COUNT, _TIMED, _DURATION_SUM, _MEMORY_COUNT, _MEMORY_SUM = (
    OUTCOME_COLUMNS.index(name)
    for name in ("count", "timed_count", "duration_sum_s", "memory_count", "memory_sum_mb")
)


def _cells(columns: tuple[str, ...]) -> slice:
    first = OUTCOME_COLUMNS.index(columns[0])
    return slice(first, first + len(columns))


_DURATION_CELLS, _MEMORY_CELLS = _cells(DURATION_COLUMNS), _cells(MEMORY_COLUMNS)


class _Histogram:
    """A histogram summed over JobOutcome rows: per-bucket counts, count and sum."""

    __slots__ = ("buckets", "count", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size
        self.count = 0
        self.total = 0.0

    def add(self, cells: tuple[int, ...], count: int, total: float) -> None:
        """Add one row's bucket cells, count and sum."""
        self.buckets = [a + b for a, b in zip(self.buckets, cells, strict=True)]
        self.count += count
        self.total += total

    def emit(self, family: HistogramMetricFamily, plugin: str, le: list[str]) -> None:
        """Append this histogram's samples for `plugin` to `family` (what add_metric would
        append, built directly: a scrape emits a few hundred of them)."""
        bucket = family.name + "_bucket"
        for bound, value in zip(le, itertools.accumulate(self.buckets), strict=True):
            family.samples.append(Sample(bucket, {"plugin": plugin, "le": bound}, value))
        family.samples.append(Sample(bucket, {"plugin": plugin, "le": "+Inf"}, self.count))
        family.samples.append(Sample(family.name + "_count", {"plugin": plugin}, self.count))
        family.samples.append(Sample(family.name + "_sum", {"plugin": plugin}, self.total))


class WardenCollector:
    """Reads the registry (database) and the broker (Redis) at every scrape."""

    def describe(self) -> Iterable[Metric]:
        """Nothing to pre-declare (and no database access at registration)."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Yield every warden_* family; a dead database or Redis yields warden_up 0 instead of
        the families that need it, never an error."""
        started = time.perf_counter()
        up = GaugeMetricFamily(
            "warden_up", "1 when the component answered this scrape", labels=["component"]
        )
        families: list[Metric] = []
        try:
            families += self._registry_families()
            up.add_metric(["database"], 1)
        except DatabaseError as exc:
            logger.warning("metrics: database unavailable: %s", exc)
            up.add_metric(["database"], 0)
        try:
            families += self._broker_families(selectors.broker_snapshot())
            up.add_metric(["broker"], 1)
        except RedisError as exc:
            logger.warning("metrics: broker unavailable: %s", exc)
            up.add_metric(["broker"], 0)
        yield up
        yield from families
        yield GaugeMetricFamily(
            "warden_metrics_collect_seconds",
            "Time this scrape spent reading the database and Redis",
            value=time.perf_counter() - started,
        )

    @staticmethod
    def _registry_families() -> list[Metric]:
        views = selectors.plugins_active(workers.live_hosts_or_none())
        state_counts = selectors.plugin_state_counts(views)
        outcomes = selectors.job_outcomes()
        active = selectors.jobs_active_counts()

        count_by_state = GaugeMetricFamily(
            "warden_plugins",
            "Plugins per reported state (the best state among their hosts)",
            labels=["state"],
        )
        for stored in _STATES:
            count_by_state.add_metric([stored], state_counts[stored])
        quarantined_total = GaugeMetricFamily(
            "warden_plugins_quarantined", "Quarantined plugins", value=state_counts["quarantined"]
        )
        state = GaugeMetricFamily(
            "warden_plugin_state",
            "1 for the plugin's reported state, 0 for the others",
            labels=["plugin", "state"],
        )
        gauges = {
            "quarantined": GaugeMetricFamily(
                "warden_plugin_quarantined",
                "1 while the plugin is quarantined (rejects jobs until re-probed)",
                labels=["plugin"],
            ),
            "accepting": GaugeMetricFamily(
                "warden_plugin_accepting_jobs",
                "1 when the plugin admits new jobs",
                labels=["plugin"],
            ),
            "streak": GaugeMetricFamily(
                "warden_plugin_consecutive_failures",
                "Plugin faults since the plugin's last success",
                labels=["plugin"],
            ),
            "memory": GaugeMetricFamily(
                "warden_plugin_memory_limit_megabytes",
                "The plugin's memory_mb limit",
                labels=["plugin"],
            ),
        }
        success = CounterMetricFamily(
            "warden_plugin_success",
            "Successful executions (the health record's success_count)",
            labels=["plugin"],
        )
        errors = CounterMetricFamily(
            "warden_plugin_errors",
            "Executions ended by a plugin fault (the health record's error_count)",
            labels=["plugin"],
        )
        jobs_active = GaugeMetricFamily(
            "warden_jobs_active", "Jobs PENDING or RUNNING now", labels=["status"]
        )
        for status, n in active.items():
            jobs_active.add_metric([status], n)
        # Samples appended directly (add_metric's work, without its per-call overhead): a scrape
        # with 50 plugins builds ~1,700 of them.
        host_state = GaugeMetricFamily(
            "warden_plugin_host_state",
            "1 for the state a host reported for the plugin at its last sync, 0 for the others",
            labels=["plugin", "host", "state"],
        )
        state_samples = state.samples
        for view in views:
            plugin, reported = view.plugin, view.availability.state
            name = plugin.name
            for stored in _STATES:
                state_samples.append(
                    Sample(state.name, {"plugin": name, "state": stored}, int(reported == stored))
                )
            for entry in view.availability.hosts:
                for stored in _STATES:
                    host_state.samples.append(
                        Sample(
                            host_state.name,
                            {"plugin": name, "host": entry["host"], "state": stored},
                            int(entry["state"] == stored),
                        )
                    )
            labels = {"plugin": name}
            for family, value in (
                (gauges["quarantined"], plugin.quarantined),
                (gauges["accepting"], view.availability.accepting_jobs),
                (gauges["streak"], plugin.consecutive_failures),
                (gauges["memory"], plugin.memory_mb),
            ):
                family.samples.append(Sample(family.name, labels, int(value)))
            success.samples.append(
                Sample("warden_plugin_success_total", labels, plugin.success_count)
            )
            errors.samples.append(Sample("warden_plugin_errors_total", labels, plugin.error_count))

        finished = CounterMetricFamily(
            "warden_jobs_finished",
            "Jobs that ended, by plugin, status and error type (kept when old jobs are purged)",
            labels=["plugin", "status", "error_type"],
        )
        durations: dict[str, _Histogram] = {}
        memory: dict[str, _Histogram] = {}
        for row in outcomes:
            owner = row[0]
            finished.add_metric([owner, row[1], row[2]], row[_COUNT])
            durations.setdefault(owner, _Histogram(len(_DURATION_LE))).add(
                row[_DURATION_CELLS], row[_TIMED], row[_DURATION_SUM]
            )
            memory.setdefault(owner, _Histogram(len(_MEMORY_LE))).add(
                row[_MEMORY_CELLS], row[_MEMORY_COUNT], row[_MEMORY_SUM]
            )
        duration_family = HistogramMetricFamily(
            "warden_job_duration_seconds",
            "Execution time of the plugin's tool, for jobs that ran to a measured end",
            labels=["plugin"],
        )
        for owner, histogram in durations.items():
            if histogram.count:
                histogram.emit(duration_family, owner, _DURATION_LE)
        memory_family = HistogramMetricFamily(
            "warden_job_peak_memory_megabytes",
            "Peak memory growth of a job's worker process during the tool's run",
            labels=["plugin"],
        )
        for owner, histogram in memory.items():
            if histogram.count:
                histogram.emit(memory_family, owner, _MEMORY_LE)
        return [
            count_by_state,
            quarantined_total,
            state,
            host_state,
            *gauges.values(),
            success,
            errors,
            jobs_active,
            finished,
            duration_family,
            memory_family,
        ]

    @staticmethod
    def _broker_families(snapshot: selectors.BrokerSnapshot) -> list[Metric]:
        depth = GaugeMetricFamily(
            "warden_queue_depth", "Messages waiting in the queue (not yet taken)", labels=["queue"]
        )
        live = GaugeMetricFamily(
            "warden_queue_workers", "Live workers consuming the queue", labels=["queue"]
        )
        per_host = GaugeMetricFamily(
            "warden_workers_live",
            "Live workers consuming the queue, per host",
            labels=["queue", "host"],
        )
        for queue, n in snapshot.queue_depths.items():
            depth.add_metric([queue], n)
            live.add_metric([queue], len(snapshot.workers.get(queue, [])))
            for host, count in sorted(snapshot.hosts(queue).items()):
                per_host.add_metric([queue, host], count)
        return [depth, live, per_host]


_registry = CollectorRegistry()
MultiProcessCollector(_registry)  # type: ignore[no-untyped-call]
_registry.register(WardenCollector())


def metrics_text() -> bytes:
    """Return the whole exposition (HTTP metrics of this host's web processes + the registry)."""
    return generate_latest(_registry)
