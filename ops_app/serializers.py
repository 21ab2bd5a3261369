"""Response shapes of the health endpoints (for the OpenAPI schema)."""

from __future__ import annotations

from rest_framework import serializers


class LivenessSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.ChoiceField(choices=["ok"])


class ReadinessCheckSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.ChoiceField(choices=["ok", "fail"])
    reason = serializers.CharField(allow_null=True)


class ReadinessSerializer(serializers.Serializer):  # type: ignore[type-arg]
    status = serializers.ChoiceField(choices=["ok", "unavailable"])
    checks = serializers.DictField(
        child=ReadinessCheckSerializer(),
        help_text="database, broker, worker:<queue> per queue with work, plugin:<name> per "
        "required plugin",
    )
