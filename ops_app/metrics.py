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

import logging
import time
from collections import defaultdict
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
from prometheus_client.utils import floatToGoString  # noqa: E402

from plugins_app.models import PluginState  # noqa: E402

from . import selectors  # noqa: E402
from .models import (  # noqa: E402
    DURATION_BUCKETS_S,
    DURATION_COLUMNS,
    MEMORY_BUCKETS_MB,
    MEMORY_COLUMNS,
    JobOutcome,
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


def _histogram(
    name: str,
    documentation: str,
    labelnames: list[str],
    bounds: tuple[float, ...],
    columns: tuple[str, ...],
    groups: dict[tuple[str, ...], list[JobOutcome]],
    count_of: str,
    sum_of: str,
) -> HistogramMetricFamily:
    """Build a histogram family from JobOutcome rows grouped by label values."""
    family = HistogramMetricFamily(name, documentation, labels=labelnames)
    for labels, rows in sorted(groups.items()):
        total = sum(getattr(r, count_of) for r in rows)
        if not total:
            continue
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, column in zip(bounds, columns, strict=True):
            cumulative += sum(getattr(r, column) for r in rows)
            buckets.append((floatToGoString(bound), cumulative))  # type: ignore[no-untyped-call]
        buckets.append(("+Inf", total))
        family.add_metric(list(labels), buckets, sum(getattr(r, sum_of) for r in rows))
    return family


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
        plugins = list(selectors.plugins_active())
        state_counts = selectors.plugin_state_counts()
        outcomes = selectors.job_outcomes()
        active = selectors.jobs_active_counts()

        count_by_state = GaugeMetricFamily(
            "warden_plugins",
            "Plugin records per stored state (duplicates included)",
            labels=["state"],
        )
        for stored in PluginState.values:
            count_by_state.add_metric([stored], state_counts[stored])
        quarantined_total = GaugeMetricFamily(
            "warden_plugins_quarantined", "Quarantined plugins", value=state_counts["quarantined"]
        )
        state = GaugeMetricFamily(
            "warden_plugin_state",
            "1 for the plugin's stored state, 0 for the others (RUNNING: warden_jobs_active)",
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
            "timeout": GaugeMetricFamily(
                "warden_plugin_timeout_seconds",
                "The plugin's soft time limit",
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
            "warden_jobs_active", "Jobs PENDING or RUNNING now", labels=["plugin", "status"]
        )
        for plugin in plugins:
            name = [plugin.name]
            for s in PluginState.values:
                state.add_metric([plugin.name, s], 1 if plugin.state == s else 0)
            gauges["quarantined"].add_metric(name, int(plugin.quarantined))
            gauges["accepting"].add_metric(name, int(plugin.accepting_jobs))
            gauges["streak"].add_metric(name, plugin.consecutive_failures)
            gauges["memory"].add_metric(name, plugin.memory_mb)
            gauges["timeout"].add_metric(name, plugin.timeout_s)
            success.add_metric(name, plugin.success_count)
            errors.add_metric(name, plugin.error_count)
            for status in ("PENDING", "RUNNING"):
                jobs_active.add_metric([plugin.name, status], active.pop((plugin.name, status), 0))
        for (gone, status), n in sorted(active.items()):  # jobs of since-removed plugins
            jobs_active.add_metric([gone, status], n)

        finished = CounterMetricFamily(
            "warden_jobs_finished",
            "Jobs that ended, by plugin, status and error type (kept when old jobs are purged)",
            labels=["plugin", "status", "error_type"],
        )
        by_plugin_status: dict[tuple[str, ...], list[JobOutcome]] = defaultdict(list)
        by_plugin: dict[tuple[str, ...], list[JobOutcome]] = defaultdict(list)
        for row in outcomes:
            finished.add_metric([row.plugin_name, row.status, row.error_type], row.count)
            by_plugin_status[(row.plugin_name, row.status)].append(row)
            by_plugin[(row.plugin_name,)].append(row)
        duration = _histogram(
            "warden_job_duration_seconds",
            "Execution time of the plugin's tool, for jobs that ran to a measured end",
            ["plugin", "status"],
            DURATION_BUCKETS_S,
            DURATION_COLUMNS,
            by_plugin_status,
            "timed_count",
            "duration_sum_s",
        )
        memory = _histogram(
            "warden_job_peak_memory_megabytes",
            "Peak memory growth of a job's worker process during the tool's run",
            ["plugin"],
            MEMORY_BUCKETS_MB,
            MEMORY_COLUMNS,
            by_plugin,
            "memory_count",
            "memory_sum_mb",
        )
        return [
            count_by_state,
            quarantined_total,
            state,
            *gauges.values(),
            success,
            errors,
            jobs_active,
            finished,
            duration,
            memory,
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
