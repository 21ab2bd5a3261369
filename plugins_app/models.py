"""The plugin registry: one PluginRecord per discovered plugin, plus its state history."""

from __future__ import annotations

from django.db import models


class PluginState(models.TextChoices):
    LOADED = "LOADED", "Loaded"
    INITIALIZED = "INITIALIZED", "Initialized"
    FAILED = "FAILED", "Failed"
    UNAVAILABLE = "UNAVAILABLE", "Unavailable"


class FaultOrigin(models.TextChoices):
    NONE = "", "None"
    LOAD = "load", "Load time"
    RUNTIME = "runtime", "Runtime"


class PluginRecord(models.Model):
    """A plugin as Warden knows it: manifest, state, reason and execution metrics."""

    name = models.CharField(max_length=64, db_index=True)
    # Where the plugin was found: its folder, or "entry-point:<name>" for installed packages.
    location = models.CharField(max_length=1024, unique=True)
    source = models.CharField(max_length=16, default="directory")
    # A second plugin with an already-taken name is kept visible but never runs.
    shadowed = models.BooleanField(default=False)
    # The folder (or entry point) was gone at the last sync.
    missing = models.BooleanField(default=False)
    version = models.CharField(max_length=64, blank=True, default="")
    description = models.TextField(blank=True, default="")
    entrypoint = models.CharField(max_length=255, blank=True, default="")
    requires_gpu = models.BooleanField(default=False)
    manifest = models.JSONField(null=True, blank=True)
    tools = models.JSONField(default=list, blank=True)
    timeout_s = models.FloatField(default=60)
    memory_mb = models.PositiveIntegerField(default=1024)

    state = models.CharField(
        max_length=16, choices=PluginState.choices, default=PluginState.LOADED, db_index=True
    )
    reason = models.TextField(null=True, blank=True)
    hint = models.TextField(null=True, blank=True)
    fault_origin = models.CharField(
        max_length=8, choices=FaultOrigin.choices, default=FaultOrigin.NONE, blank=True
    )
    quarantined = models.BooleanField(default=False)
    probe_traceback = models.TextField(blank=True, default="")

    success_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    consecutive_failures = models.PositiveIntegerField(default=0)
    # Consecutive crashes, timeouts and memory kills: the quarantine counter.
    consecutive_severe = models.PositiveIntegerField(default=0)
    recent_execution_ms = models.JSONField(default=list, blank=True)
    # Bumped by every metrics update: lets a worker update metrics optimistically in one UPDATE.
    metrics_version = models.PositiveIntegerField(default=0)
    last_execution_time_ms = models.FloatField(null=True, blank=True)
    avg_execution_time_ms = models.FloatField(null=True, blank=True)
    last_used = models.DateTimeField(null=True, blank=True)

    loaded_at = models.DateTimeField(null=True, blank=True)
    probed_at = models.DateTimeField(null=True, blank=True)
    probe_duration_ms = models.FloatField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "location"]
        constraints = [
            models.UniqueConstraint(
                fields=["name"],
                condition=models.Q(shadowed=False),
                name="unique_active_plugin_name",
            )
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def accepting_jobs(self) -> bool:
        """Whether new jobs are admitted (CONTRACT.md §3 rules 4-5)."""
        if self.shadowed or self.missing or self.quarantined:
            return False
        if self.state == PluginState.INITIALIZED:
            return True
        return self.state == PluginState.FAILED and self.fault_origin == FaultOrigin.RUNTIME

    def tool(self, name: str | None) -> dict[str, object] | None:
        """Return the manifest entry of tool `name` (the first tool when None), or None."""
        if not self.tools:
            return None
        if name is None:
            return dict(self.tools[0])
        return next((dict(t) for t in self.tools if t.get("name") == name), None)


class PluginStateTransition(models.Model):
    """One change of a plugin's state (or quarantine), with when and why."""

    plugin = models.ForeignKey(PluginRecord, on_delete=models.CASCADE, related_name="transitions")
    from_state = models.CharField(max_length=16, blank=True, default="")
    to_state = models.CharField(max_length=16)
    reason = models.TextField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.plugin.name}: {self.from_state or '-'} -> {self.to_state}"
