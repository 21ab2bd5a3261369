"""Serializers of the health API."""

from __future__ import annotations

from rest_framework import serializers


class PluginToolSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    description = serializers.CharField(allow_null=True)
    input_types = serializers.ListField(child=serializers.CharField())
    input_schema = serializers.JSONField(allow_null=True)
    output_schema = serializers.JSONField(allow_null=True)


class PluginHostSerializer(serializers.Serializer):  # type: ignore[type-arg]
    host = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    state = serializers.ChoiceField(choices=["LOADED", "INITIALIZED", "FAILED", "UNAVAILABLE"])
    reason = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_null=True)
    probed_at = serializers.DateTimeField(allow_null=True)
    alive = serializers.BooleanField(
        allow_null=True,
        help_text="A live worker on this host consumes the plugin's queue (null: unknown)",
    )


class PluginHealthSerializer(serializers.Serializer):  # type: ignore[type-arg]
    name = serializers.CharField()
    version = serializers.CharField(allow_null=True)
    description = serializers.CharField(allow_null=True)
    state = serializers.ChoiceField(
        choices=["LOADED", "INITIALIZED", "RUNNING", "FAILED", "UNAVAILABLE"]
    )
    reason = serializers.CharField(allow_null=True)
    hint = serializers.CharField(allow_null=True)
    accepting_jobs = serializers.BooleanField()
    requires_gpu = serializers.BooleanField()
    tools = PluginToolSerializer(many=True)
    success_count = serializers.IntegerField()
    error_count = serializers.IntegerField()
    consecutive_failures = serializers.IntegerField()
    uptime_seconds = serializers.FloatField(allow_null=True)
    loaded_at = serializers.DateTimeField(allow_null=True)
    last_used = serializers.DateTimeField(allow_null=True)
    last_execution_time_ms = serializers.FloatField(allow_null=True)
    avg_execution_time_ms = serializers.FloatField(allow_null=True)
    hosts = PluginHostSerializer(many=True)
