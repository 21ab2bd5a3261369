"""The error envelope every response with status >= 400 carries, as an OpenAPI component."""

from __future__ import annotations

from rest_framework import serializers


class ErrorBodySerializer(serializers.Serializer):  # type: ignore[type-arg]
    type = serializers.CharField()
    message = serializers.CharField()
    details = serializers.DictField()
    plugin = serializers.CharField(allow_null=True)
    job_id = serializers.CharField(allow_null=True)
    timestamp = serializers.DateTimeField()


class ErrorEnvelopeSerializer(serializers.Serializer):  # type: ignore[type-arg]
    error = ErrorBodySerializer()
