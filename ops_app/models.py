"""Running totals of finished jobs, kept so that /metrics never scans the jobs table."""

from __future__ import annotations

from django.db import models

# Histogram upper bounds (Prometheus `le`); each has a column below counting the observations
# that fell into its bucket (not cumulative: the collector adds them up at scrape time). Few
# buckets on purpose: every bucket is one line per plugin in each scrape (docs/benchmarks.md).
DURATION_BUCKETS_S = (0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 10.0, 30.0, 60.0, 300.0)
MEMORY_BUCKETS_MB = (64.0, 256.0, 1024.0, 4096.0)
DURATION_COLUMNS = tuple(f"d{i:02d}" for i in range(len(DURATION_BUCKETS_S)))
MEMORY_COLUMNS = tuple(f"m{i:02d}" for i in range(len(MEMORY_BUCKETS_MB)))
# A JobOutcome row's columns in one order: its key (3), then what a job end adds to it. The
# upsert writes them in this order and the metrics collector reads them by position.
OUTCOME_COLUMNS = (
    *("plugin_name", "status", "error_type"),
    *("count", "timed_count", "duration_sum_s", "memory_count", "memory_sum_mb"),
    *DURATION_COLUMNS,
    *MEMORY_COLUMNS,
)


class JobOutcome(models.Model):
    """Jobs that ended with one (plugin, status, error type): a count, and histograms of their
    execution time and peak memory growth. One upsert per job end (`job_end_record`); never
    decremented, and kept when old jobs are purged, so the counters stay monotonic."""

    plugin_name = models.CharField(max_length=64)
    status = models.CharField(max_length=8)
    error_type = models.CharField(max_length=32, blank=True, default="")
    count = models.PositiveBigIntegerField(default=0)
    # Jobs that ran to a measured end (a crash, kill, cancel or unqueued job has no time).
    timed_count = models.PositiveBigIntegerField(default=0)
    duration_sum_s = models.FloatField(default=0)
    memory_count = models.PositiveBigIntegerField(default=0)
    memory_sum_mb = models.FloatField(default=0)
    d00 = models.PositiveBigIntegerField(default=0)  # duration <= 0.01 s
    d01 = models.PositiveBigIntegerField(default=0)  # duration <= 0.05 s
    d02 = models.PositiveBigIntegerField(default=0)  # duration <= 0.1 s
    d03 = models.PositiveBigIntegerField(default=0)  # duration <= 0.5 s
    d04 = models.PositiveBigIntegerField(default=0)  # duration <= 1 s
    d05 = models.PositiveBigIntegerField(default=0)  # duration <= 2.5 s
    d06 = models.PositiveBigIntegerField(default=0)  # duration <= 10 s
    d07 = models.PositiveBigIntegerField(default=0)  # duration <= 30 s
    d08 = models.PositiveBigIntegerField(default=0)  # duration <= 60 s
    d09 = models.PositiveBigIntegerField(default=0)  # duration <= 300 s
    m00 = models.PositiveBigIntegerField(default=0)  # peak memory <= 64 MB
    m01 = models.PositiveBigIntegerField(default=0)  # peak memory <= 256 MB
    m02 = models.PositiveBigIntegerField(default=0)  # peak memory <= 1024 MB
    m03 = models.PositiveBigIntegerField(default=0)  # peak memory <= 4096 MB
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plugin_name", "status", "error_type"], name="job_outcome_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plugin_name} {self.status} {self.error_type or '-'}: {self.count}"
