"""Serializers of the analyze-execution and jobs API."""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from project.serializers import ErrorBodySerializer, ErrorEnvelopeSerializer
from project.storable import MAX_JSON_DEPTH, has_unstorable_text, json_depth

from .models import Job


def _check_depth(value: Any) -> None:
    depth = json_depth(value)
    if depth > MAX_JSON_DEPTH:
        raise serializers.ValidationError(
            f"nested too deeply ({depth} levels; at most {MAX_JSON_DEPTH})"
        )


@extend_schema_field(
    {"type": "object", "additionalProperties": True, "description": "The tool's arguments"}
)
class BoundedJSONField(serializers.JSONField):
    """DRF's JSONField, refusing values nested deeper than MAX_JSON_DEPTH before DRF re-encodes
    them (recursively: deep enough, that is a RecursionError and a 500)."""

    def to_internal_value(self, data: Any) -> Any:
        _check_depth(data)
        try:
            value = super().to_internal_value(data)  # parses a form field's JSON string
        except RecursionError as exc:
            raise serializers.ValidationError(
                f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
            ) from exc
        _check_depth(value)
        return value


@extend_schema_field({"type": "string", "format": "byte"})
class Base64Field(serializers.CharField):
    """A file as base64 text (decoded by AnalyzeRequestSerializer.validate_image)."""


class AnalyzeRequestSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """JSON body, or multipart with a `file` part (then `args` may be a JSON string)."""

    plugin = serializers.CharField(max_length=64)
    tool = serializers.CharField(max_length=64, required=False, allow_null=True)
    args = BoundedJSONField(required=False, allow_null=True)
    image = Base64Field(
        required=False,
        allow_null=True,
        allow_blank=True,
        help_text="The input file, base64-encoded",
    )
    file = serializers.FileField(
        required=False,
        allow_null=True,
        allow_empty_file=True,
        help_text="The input file (multipart)",
    )
    mime_type = serializers.CharField(max_length=100, required=False, allow_null=True)
    timeout_s = serializers.FloatField(
        required=False, allow_null=True, min_value=0.001, max_value=3600
    )

    def validate_args(self, value: Any) -> Any:
        if isinstance(value, str):  # multipart carries args as a JSON string
            try:
                value = json.loads(value)
            except RecursionError as exc:
                raise serializers.ValidationError(
                    f"nested too deeply (more than {MAX_JSON_DEPTH} levels)"
                ) from exc
            except ValueError as exc:
                raise serializers.ValidationError(f"not valid JSON: {exc}") from exc
        _check_depth(value)
        if value is not None and not isinstance(value, dict):
            raise serializers.ValidationError("must be a JSON object")
        try:  # 1e999 parses to inf, which no JSON column stores
            json.dumps(value, allow_nan=False)
        except ValueError as exc:
            raise serializers.ValidationError("must not contain NaN or infinite numbers") from exc
        if has_unstorable_text(value):
            raise serializers.ValidationError(
                "must not contain NUL characters (\\u0000) or unpaired surrogates"
            )
        return value

    def validate_image(self, value: str | None) -> bytes | None:
        if value is None:
            return None
        if "," in value[:100] and value.startswith("data:"):
            value = value.split(",", 1)[1]
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise serializers.ValidationError(f"not valid base64: {exc}") from exc

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        if attrs.get("image") is not None and attrs.get("file") is not None:
            raise serializers.ValidationError("send either 'image' (base64) or 'file', not both")
        upload = attrs.pop("file", None)
        if upload is not None:
            attrs["image"] = upload.read()
            attrs["mime_type"] = attrs.get("mime_type") or upload.content_type
        return attrs


class JobSerializer(serializers.ModelSerializer):  # type: ignore[type-arg]
    job_id = serializers.UUIDField(source="id")
    plugin = serializers.CharField(source="plugin_name")
    url = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields = [
            "job_id",
            "url",
            "plugin",
            "tool",
            "status",
            "args",
            "result",
            "error",
            "input_mime_type",
            "input_size",
            "timeout_s",
            "hard_timeout_s",
            "memory_mb",
            "queue",
            "created_at",
            "started_at",
            "finished_at",
            "execution_time_ms",
            "peak_memory_mb",
            "attempts",
        ]

    def get_url(self, job: Job) -> str:
        return f"/v1/jobs/{job.pk}"

    def to_representation(self, job: Job) -> dict[str, Any]:
        """The same as ModelSerializer's field walk (tests/execution_app/test_jobs_api.py
        compares them), built directly: job pages render many of these."""
        return {
            "job_id": str(job.pk),
            "url": f"/v1/jobs/{job.pk}",
            "plugin": job.plugin_name,
            "tool": job.tool,
            "status": job.status,
            "args": job.args,
            "result": job.result,
            "error": job.error,
            "input_mime_type": job.input_mime_type,
            "input_size": job.input_size,
            "timeout_s": _float(job.timeout_s),
            "hard_timeout_s": _float(job.hard_timeout_s),
            "memory_mb": job.memory_mb,
            "queue": job.queue,
            "created_at": _datetime(job.created_at),
            "started_at": _datetime(job.started_at),
            "finished_at": _datetime(job.finished_at),
            "execution_time_ms": _float(job.execution_time_ms),
            "peak_memory_mb": _float(job.peak_memory_mb),
            "attempts": job.attempts,
        }


_DATETIME_FIELD = serializers.DateTimeField()


def _datetime(value: Any) -> str | None:
    return None if value is None else _DATETIME_FIELD.to_representation(value)


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


class JobPageSerializer(serializers.Serializer):  # type: ignore[type-arg]
    """One page of GET /v1/jobs."""

    count = serializers.IntegerField(
        help_text="Matching jobs; a lower bound when count_exact is false (more than 10,000 "
        "past this page)"
    )
    count_exact = serializers.BooleanField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    results = JobSerializer(many=True)


class AnalyzeResultSerializer(serializers.Serializer):  # type: ignore[type-arg]
    job_id = serializers.UUIDField()
    plugin = serializers.CharField()
    tool = serializers.CharField()
    status = serializers.CharField()
    result = serializers.JSONField()
    execution_time_ms = serializers.FloatField(allow_null=True)


class AnalyzeAcceptedSerializer(serializers.Serializer):  # type: ignore[type-arg]
    job_id = serializers.UUIDField()
    status = serializers.CharField()
    url = serializers.CharField()


__all__ = ["ErrorBodySerializer", "ErrorEnvelopeSerializer"]  # re-exported: the API's envelope
