"""The first middleware: a request id for every request, HTTP metrics, and the access log line."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse

from project import logs

from .metrics import observe_request

access_logger = logging.getLogger("warden.access")
REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID_META = "HTTP_X_REQUEST_ID"
# A client's own request id is reused when it is short and plain (it goes into logs verbatim).
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Probes and scrapes come every few seconds: their lines go to DEBUG, the rest to INFO.
_QUIET_PREFIXES = ("/health/", "/metrics")


def request_id_for(request: HttpRequest) -> str:
    """Return the client's X-Request-ID when it is safe to log, else a new random id."""
    given = str(request.META.get(_REQUEST_ID_META, ""))
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def _route(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return str(match.route) if match is not None and match.route else "<unmatched>"


def _job_id(response: HttpResponse) -> str | None:
    """The job a response names (analyze, jobs API, or an error envelope), if any."""
    data: Any = getattr(response, "data", None)
    if not isinstance(data, dict):
        return None
    job_id = data.get("job_id")
    if job_id is None and isinstance(data.get("error"), dict):
        job_id = data["error"].get("job_id")
    return str(job_id) if job_id else None


class RequestMetricsMiddleware:
    """Bind a request id to the request's log lines (and echo it in X-Request-ID), count and time
    the request for /metrics, and write one access log line unless WARDEN_ACCESS_LOG is false."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id = request_id_for(request)
        started = time.perf_counter()
        token = logs.bind_context(request_id=request_id)
        try:
            response = self.get_response(request)
            elapsed = time.perf_counter() - started
            route = _route(request)
            observe_request(request.method or "", route, response.status_code, elapsed)
            response[REQUEST_ID_HEADER] = request_id
            if settings.WARDEN_ACCESS_LOG:
                self._log(request, response, route, elapsed)
            return response
        finally:
            logs.unbind_context(token)

    @staticmethod
    def _log(request: HttpRequest, response: HttpResponse, route: str, elapsed: float) -> None:
        path = _CONTROL.sub("?", request.path[:500])  # no forged lines from %0A in a URL
        level = logging.DEBUG if path.startswith(_QUIET_PREFIXES) else logging.INFO
        if not access_logger.isEnabledFor(level):
            return
        job_id = _job_id(response)
        fields: dict[str, Any] = {
            "event": "http_request",
            "method": request.method,
            "path": path,
            "route": route,
            "status": response.status_code,
            "duration_ms": round(elapsed * 1000, 3),
            "remote_addr": request.META.get("REMOTE_ADDR"),
        }
        if job_id:
            fields["job_id"] = job_id
        access_logger.log(
            level,
            "%s %s %s %.1f ms%s",
            request.method,
            path,
            response.status_code,
            elapsed * 1000,
            f" job {job_id}" if job_id else "",
            extra=fields,
        )
