"""Liveness, readiness and Prometheus metrics endpoints."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser
from rest_framework.permissions import AllowAny, BasePermission
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from execution_app.serializers import ErrorEnvelopeSerializer
from plugins_app.apis import HealthPermission

from .checks import readiness
from .serializers import LivenessSerializer, ReadinessSerializer

logger = logging.getLogger(__name__)
_last_failing: set[str] | None = None


def log_readiness_change(checks: dict[str, dict[str, Any]]) -> None:
    """Log (once per change, in this process) which readiness checks fail, or that all pass."""
    global _last_failing
    failing = {name for name, check in checks.items() if check["status"] != "ok"}
    if failing == _last_failing:
        return
    _last_failing = failing
    if failing:
        reasons = "; ".join(f"{name}: {checks[name]['reason']}" for name in sorted(failing))
        logger.warning(
            "not ready: %s", reasons, extra={"event": "readiness", "failing": sorted(failing)}
        )
    else:
        logger.info("ready", extra={"event": "readiness", "failing": []})


UNAUTHORIZED = OpenApiResponse(ErrorEnvelopeSerializer, description="AuthenticationFailed")


class JsonRegardless(BaseContentNegotiation):
    """Probes and scrapers send all kinds of Accept headers; answer JSON (or the exposition)
    rather than 406 (DRF's documented IgnoreClientContentNegotiation recipe)."""

    def select_parser(self, request: Request, parsers: Iterable[BaseParser]) -> BaseParser:
        return next(iter(parsers))

    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str]:
        renderer = next(iter(renderers))
        return renderer, str(renderer.media_type)


class MetricsPermission(BasePermission):
    """Public unless WARDEN_PUBLIC_METRICS=false; then an API token or a staff session."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.WARDEN_PUBLIC_METRICS:
            return True
        user = request.user
        if user is None or not user.is_authenticated:
            return False
        return request.auth is not None or bool(user.is_staff)


class LivenessApi(APIView):
    content_negotiation_class = JsonRegardless
    authentication_classes = []  # a probe's stray header must not turn into a 401
    permission_classes = [AllowAny]

    @extend_schema(responses={200: LivenessSerializer}, operation_id="health_live")
    def get(self, request: Request) -> Response:
        """200 while this web process serves requests (checks nothing else)."""
        return Response({"status": "ok"})


class ReadinessApi(APIView):
    content_negotiation_class = JsonRegardless
    permission_classes = [HealthPermission]

    @extend_schema(
        responses={200: ReadinessSerializer, 503: ReadinessSerializer, 401: UNAUTHORIZED},
        operation_id="health_ready",
    )
    def get(self, request: Request) -> Response:
        """200 when Warden can run jobs: database, broker, a live worker per queue with work,
        each required plugin accepting jobs; else 503 with the failing checks and reasons."""
        ok, checks = readiness()
        body = {"status": "ok" if ok else "unavailable", "checks": checks}
        response = Response(body, status=200 if ok else 503)
        # Load balancers probe every few seconds: log when the outcome changes, not each 503.
        log_readiness_change(checks)
        response._has_been_logged = True  # type: ignore[attr-defined]  # Django's log_response
        return response


class MetricsApi(APIView):
    content_negotiation_class = JsonRegardless
    permission_classes = [MetricsPermission]

    @extend_schema(
        responses={
            (200, "text/plain"): OpenApiResponse(
                OpenApiTypes.STR, description="Prometheus text exposition, warden_* metrics"
            ),
            401: UNAUTHORIZED,
        },
        operation_id="metrics",
    )
    def get(self, request: Request) -> HttpResponse:
        """Prometheus metrics (see docs/operations.md for the list)."""
        from .metrics import CONTENT_TYPE, metrics_text

        return HttpResponse(metrics_text(), content_type=CONTENT_TYPE)
