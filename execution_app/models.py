"""Jobs: one execution of one plugin tool, from PENDING to a final SUCCESS or FAILED."""

from __future__ import annotations

import uuid

from django.db import models
from django.db.models.functions import Now


class JobStatus(models.TextChoices):
    PENDING = "PENDING", "Pending"
    RUNNING = "RUNNING", "Running"
    SUCCESS = "SUCCESS", "Success"
    FAILED = "FAILED", "Failed"


ACTIVE_STATUSES = (JobStatus.PENDING, JobStatus.RUNNING)


def input_upload_to(job: Job, filename: str) -> str:
    """Store each job's input under its own name (one object, no per-job folder)."""
    return f"job-inputs/{job.id}"


class Job(models.Model):
    """A job row exists before its task is queued; only conditional UPDATEs change its status."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    plugin = models.ForeignKey(
        "plugins_app.PluginRecord", on_delete=models.SET_NULL, null=True, related_name="jobs"
    )
    plugin_name = models.CharField(max_length=64, db_index=True)
    tool = models.CharField(max_length=64)
    args = models.JSONField(default=dict, blank=True)
    input_file = models.FileField(upload_to=input_upload_to, null=True, blank=True, max_length=255)
    input_mime_type = models.CharField(max_length=100, blank=True, default="")
    input_size = models.PositiveIntegerField(null=True, blank=True)
    status = models.CharField(
        max_length=8, choices=JobStatus.choices, default=JobStatus.PENDING, db_index=True
    )
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    error_type = models.CharField(max_length=32, blank=True, default="", db_index=True)
    traceback = models.TextField(blank=True, default="")
    timeout_s = models.FloatField()
    hard_timeout_s = models.FloatField()
    memory_mb = models.PositiveIntegerField()
    queue = models.CharField(max_length=255, default="cpu")
    # The database's clock, like every other job time (one clock for every host).
    created_at = models.DateTimeField(db_default=Now(), db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    deadline_at = models.DateTimeField(null=True, blank=True)
    execution_time_ms = models.FloatField(null=True, blank=True)
    peak_memory_mb = models.FloatField(null=True, blank=True)
    worker_host = models.CharField(max_length=255, blank=True, default="")
    worker_pid = models.PositiveIntegerField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # The request lowered the plugin's time limit: a timeout then is not the plugin's fault.
    client_limit = models.BooleanField(default=False)
    # The tail of what the job's processes wrote to stdout/stderr (admin only, never in the API).
    output = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["plugin_name", "status", "-created_at"], name="job_plugin_status"),
            # "Is one of this plugin's jobs RUNNING?" without reading the plugin's history.
            models.Index(fields=["plugin", "status"], name="job_plugin_id_status"),
            models.Index(fields=["status", "-created_at"], name="job_status_created"),
        ]

    def __str__(self) -> str:
        return f"{self.plugin_name}.{self.tool} {self.status} ({self.id})"

    @property
    def is_terminal(self) -> bool:
        """Whether the job reached SUCCESS or FAILED (final)."""
        return self.status not in ACTIVE_STATUSES


class JobInputData(models.Model):
    """A job's input file, in the database so that a worker on any host can read it (the default,
    WARDEN_INPUT_STORAGE=database; with "storage" it goes to Job.input_file instead)."""

    job = models.OneToOneField(Job, on_delete=models.CASCADE, primary_key=True, related_name="+")
    data = models.BinaryField()

    def __str__(self) -> str:
        return f"input of job {self.job_id}"
