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
    """A plugin as Warden knows it, identified by its name on every host: the manifest it
    declares, its runtime state (what its executions did), quarantine and execution metrics.

    Whether the plugin can run is a per-host fact (PluginHost); the health record combines both.
    """

    name = models.CharField(max_length=64, unique=True)
    source = models.CharField(max_length=16, default="directory")
    version = models.CharField(max_length=64, blank=True, default="")
    description = models.TextField(blank=True, default="")
    entrypoint = models.CharField(max_length=255, blank=True, default="")
    requires_gpu = models.BooleanField(default=False)
    manifest = models.JSONField(null=True, blank=True)
    tools = models.JSONField(default=list, blank=True)
    timeout_s = models.FloatField(default=60)
    memory_mb = models.PositiveIntegerField(default=1024)

    # The runtime state: LOADED until a host probed it, then INITIALIZED, or FAILED after a
    # plugin fault (fault_origin "runtime"); whether it can run at all is per host.
    state = models.CharField(
        max_length=16, choices=PluginState.choices, default=PluginState.LOADED, db_index=True
    )
    reason = models.TextField(null=True, blank=True)
    hint = models.TextField(null=True, blank=True)
    fault_origin = models.CharField(
        max_length=8, choices=FaultOrigin.choices, default=FaultOrigin.NONE, blank=True
    )
    quarantined = models.BooleanField(default=False)

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

    # Set when a probe first succeeds on some host (and again after each successful re-probe).
    loaded_at = models.DateTimeField(null=True, blank=True)
    probed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.state})"

    @property
    def queue(self) -> str:
        """The Celery queue its jobs go to."""
        return "gpu" if self.requires_gpu else "cpu"

    def tool(self, name: str | None) -> dict[str, object] | None:
        """Return the manifest entry of tool `name` (the first tool when None), or None."""
        if not self.tools:
            return None
        if name is None:
            return dict(self.tools[0])
        return next((dict(t) for t in self.tools if t.get("name") == name), None)


class PluginHost(models.Model):
    """What one host found out about a plugin at its last sync: where the plugin is on that host,
    and whether it can run there (state, reason, hint). Written only by that host."""

    plugin = models.ForeignKey(PluginRecord, on_delete=models.CASCADE, related_name="hosts")
    host = models.CharField(max_length=255, db_index=True)
    # Where this host found it: its folder, or "entry-point:<name>=<value>" for a package.
    location = models.CharField(max_length=1024)
    source = models.CharField(max_length=16, default="directory")
    # A second folder with an already-taken name on this host: kept visible, never runs.
    shadowed = models.BooleanField(default=False)
    version = models.CharField(max_length=64, blank=True, default="")
    queues = models.JSONField(default=list, blank=True)  # what this host's workers consumed
    state = models.CharField(max_length=16, choices=PluginState.choices, default=PluginState.LOADED)
    reason = models.TextField(null=True, blank=True)
    hint = models.TextField(null=True, blank=True)
    probed_at = models.DateTimeField(null=True, blank=True)
    probe_duration_ms = models.FloatField(null=True, blank=True)
    probe_traceback = models.TextField(blank=True, default="")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["plugin", "host", "shadowed", "location"]
        constraints = [
            models.UniqueConstraint(
                fields=["plugin", "host", "location"], name="unique_plugin_host_location"
            )
        ]

    def __str__(self) -> str:
        return f"{self.plugin.name} on {self.host}: {self.state}"


class PluginStateTransition(models.Model):
    """One change of a plugin's state (or quarantine), with when and why."""

    plugin = models.ForeignKey(PluginRecord, on_delete=models.CASCADE, related_name="transitions")
    # The host whose sync saw the change; empty for a change of the plugin's runtime state.
    host = models.CharField(max_length=255, blank=True, default="")
    from_state = models.CharField(max_length=16, blank=True, default="")
    to_state = models.CharField(max_length=16)
    reason = models.TextField(null=True, blank=True)
    at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.plugin.name}: {self.from_state or '-'} -> {self.to_state}"
