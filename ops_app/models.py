"""Running totals of finished jobs, kept so that /metrics never scans the jobs table."""

from __future__ import annotations

from django.db import models

# Histogram upper bounds (Prometheus `le`); each has a column below counting the observations
# that fell into its bucket (not cumulative: the collector adds them up at scrape time).
DURATION_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)
MEMORY_BUCKETS_MB = (1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000)
DURATION_COLUMNS = tuple(f"d{i:02d}" for i in range(len(DURATION_BUCKETS_S)))
MEMORY_COLUMNS = tuple(f"m{i:02d}" for i in range(len(MEMORY_BUCKETS_MB)))


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
    d00 = models.PositiveBigIntegerField(default=0)  # duration <= 0.005 s
    d01 = models.PositiveBigIntegerField(default=0)  # duration <= 0.01 s
    d02 = models.PositiveBigIntegerField(default=0)  # duration <= 0.025 s
    d03 = models.PositiveBigIntegerField(default=0)  # duration <= 0.05 s
    d04 = models.PositiveBigIntegerField(default=0)  # duration <= 0.1 s
    d05 = models.PositiveBigIntegerField(default=0)  # duration <= 0.25 s
    d06 = models.PositiveBigIntegerField(default=0)  # duration <= 0.5 s
    d07 = models.PositiveBigIntegerField(default=0)  # duration <= 1 s
    d08 = models.PositiveBigIntegerField(default=0)  # duration <= 2.5 s
    d09 = models.PositiveBigIntegerField(default=0)  # duration <= 5 s
    d10 = models.PositiveBigIntegerField(default=0)  # duration <= 10 s
    d11 = models.PositiveBigIntegerField(default=0)  # duration <= 30 s
    d12 = models.PositiveBigIntegerField(default=0)  # duration <= 60 s
    d13 = models.PositiveBigIntegerField(default=0)  # duration <= 300 s
    m00 = models.PositiveBigIntegerField(default=0)  # peak memory <= 1 MB
    m01 = models.PositiveBigIntegerField(default=0)  # peak memory <= 5 MB
    m02 = models.PositiveBigIntegerField(default=0)  # peak memory <= 10 MB
    m03 = models.PositiveBigIntegerField(default=0)  # peak memory <= 25 MB
    m04 = models.PositiveBigIntegerField(default=0)  # peak memory <= 50 MB
    m05 = models.PositiveBigIntegerField(default=0)  # peak memory <= 100 MB
    m06 = models.PositiveBigIntegerField(default=0)  # peak memory <= 250 MB
    m07 = models.PositiveBigIntegerField(default=0)  # peak memory <= 500 MB
    m08 = models.PositiveBigIntegerField(default=0)  # peak memory <= 1000 MB
    m09 = models.PositiveBigIntegerField(default=0)  # peak memory <= 2500 MB
    m10 = models.PositiveBigIntegerField(default=0)  # peak memory <= 5000 MB
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["plugin_name", "status", "error_type"], name="job_outcome_key"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plugin_name} {self.status} {self.error_type or '-'}: {self.count}"
