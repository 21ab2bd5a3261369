"""Warden's error types and the one envelope every response with status >= 400 carries."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import RequestDataTooBig
from django.db import InterfaceError, OperationalError
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf_exceptions
from rest_framework.response import Response

logger = logging.getLogger(__name__)

# The finite, documented set of error types (CONTRACT.md §4) and the HTTP status each maps to.
ERROR_STATUS: dict[str, int] = {
    "ValidationError": 400,
    "PluginNotFound": 400,
    "PluginUnavailable": 400,
    "PluginError": 400,
    "OutputValidationError": 400,
    "TimeoutError": 400,
    "MemoryLimitExceeded": 400,
    "PluginCrashed": 400,
    "Cancelled": 400,
    "NotFound": 404,
    "Conflict": 409,
    "AuthenticationFailed": 401,
    "PermissionDenied": 403,
    "MethodNotAllowed": 405,
    "UnsupportedMediaType": 415,
    "PayloadTooLarge": 413,
    "Throttled": 429,
    "ServiceUnavailable": 503,
}

# Error types that count against a plugin's health (CONTRACT.md §3 rule 4).
PLUGIN_FAULTS = frozenset(
    {"PluginError", "OutputValidationError", "TimeoutError", "MemoryLimitExceeded", "PluginCrashed"}
)
# Plugin faults that also count towards quarantine.
SEVERE_FAULTS = frozenset({"TimeoutError", "MemoryLimitExceeded", "PluginCrashed"})


def now_iso() -> str:
    """Return the current UTC time as an ISO-8601 string."""
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def envelope(
    error_type: str,
    message: str,
    *,
    details: Mapping[str, Any] | None = None,
    plugin: str | None = None,
    job_id: str | None = None,
) -> dict[str, Any]:
    """Return the error envelope of CONTRACT.md §4."""
    assert error_type in ERROR_STATUS, error_type
    return {
        "error": {
            "type": error_type,
            "message": message,
            "details": dict(details or {}),
            "plugin": plugin,
            "job_id": job_id,
            "timestamp": now_iso(),
        }
    }


class WardenError(Exception):
    """An error with a type from the finite set; the API renders it as the envelope."""

    def __init__(
        self,
        error_type: str,
        message: str,
        *,
        details: Mapping[str, Any] | None = None,
        plugin: str | None = None,
        job_id: str | None = None,
        status: int | None = None,
        reason: str | None = None,
    ) -> None:
        super().__init__(message)
        assert error_type in ERROR_STATUS, error_type
        self.type = error_type
        self.message = message
        # What the plugin's public health record may say about this failure: the message minus
        # anything the plugin or the client put in it (which often echoes client input), and
        # minus per-job figures, so that repeated failures read the same.
        self.reason = reason or message
        self.details = dict(details or {})
        self.plugin = plugin
        self.job_id = job_id
        self.status = status or ERROR_STATUS[error_type]

    def as_envelope(self) -> dict[str, Any]:
        """Return this error as the envelope dict."""
        return envelope(
            self.type, self.message, details=self.details, plugin=self.plugin, job_id=self.job_id
        )


_DRF_TYPES: list[tuple[type[Exception], str]] = [
    (drf_exceptions.NotAuthenticated, "AuthenticationFailed"),
    (drf_exceptions.AuthenticationFailed, "AuthenticationFailed"),
    (drf_exceptions.PermissionDenied, "PermissionDenied"),
    (drf_exceptions.NotFound, "NotFound"),
    (drf_exceptions.MethodNotAllowed, "MethodNotAllowed"),
    (drf_exceptions.UnsupportedMediaType, "UnsupportedMediaType"),
    (drf_exceptions.NotAcceptable, "ValidationError"),
    (drf_exceptions.Throttled, "Throttled"),
    (drf_exceptions.ParseError, "ValidationError"),
    (drf_exceptions.ValidationError, "ValidationError"),
]


def _drf_message(exc: drf_exceptions.APIException) -> tuple[str, dict[str, Any]]:
    detail = exc.detail
    if isinstance(detail, dict):
        fields = {key: _flatten(value) for key, value in detail.items()}
        first = next(iter(fields.items()), ("", [""]))
        label = "" if first[0] == "non_field_errors" else f"{first[0]}: "
        return f"Invalid request: {label}{first[1][0] if first[1] else ''}", {"fields": fields}
    if isinstance(detail, list):
        messages = _flatten(detail)
        return f"Invalid request: {messages[0] if messages else ''}", {"fields": {"": messages}}
    return str(detail), {}


def _flatten(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [f"{k}: {m}" for k, v in value.items() for m in _flatten(v)]
    if isinstance(value, list):
        return [m for item in value for m in _flatten(item)]
    return [str(value)]


def api_exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response | None:
    """DRF exception handler: render every error as the envelope; leave real bugs as bugs."""
    if isinstance(exc, WardenError):
        return Response(exc.as_envelope(), status=exc.status)
    if isinstance(exc, RequestDataTooBig):
        return Response(envelope("PayloadTooLarge", f"Request body too large: {exc}"), status=413)
    if isinstance(exc, OperationalError | InterfaceError):  # unreachable/locked, not a bug
        # The driver's text names hosts, ports and users: the log gets it, the client does not.
        logger.exception("database unavailable")
        return Response(
            envelope(
                "ServiceUnavailable",
                f"Database unavailable ({type(exc).__name__}); try again shortly",
            ),
            status=503,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if not isinstance(exc, drf_exceptions.APIException):
        return None
    error_type = next((t for cls, t in _DRF_TYPES if isinstance(exc, cls)), None)
    if error_type is None:
        error_type = "ServiceUnavailable" if exc.status_code == 503 else "ValidationError"
    message, details = _drf_message(exc)
    wait = getattr(exc, "wait", None)
    if isinstance(exc, drf_exceptions.Throttled) and wait is not None:
        details["retry_after_s"] = wait
    status = ERROR_STATUS[error_type]
    response = Response(envelope(error_type, message, details=details), status=status)
    if isinstance(exc, drf_exceptions.NotAuthenticated | drf_exceptions.AuthenticationFailed):
        response["WWW-Authenticate"] = 'Token realm="api"'
    return response


def _json_error(error_type: str, message: str) -> JsonResponse:
    return JsonResponse(envelope(error_type, message), status=ERROR_STATUS[error_type])


def handler400(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django-level 400 (e.g. a malformed multipart body) in the envelope."""
    return _json_error("ValidationError", f"Bad request: {exception or 'malformed request'}")


def handler403(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Django-level 403 in the envelope."""
    return _json_error("PermissionDenied", "You do not have permission to perform this action.")


def handler404(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Unknown URL in the envelope."""
    return _json_error("NotFound", f"No such endpoint: {request.path}")
