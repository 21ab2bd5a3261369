"""Health API: reads the registry only, never plugin code."""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpResponse
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.views import APIView

from execution_app.workers import live_hosts_or_none
from project.errors import WardenError
from project.serializers import ErrorEnvelopeSerializer

from .selectors import health_body
from .serializers import PluginHealthSerializer

ERRORS = {
    code: OpenApiResponse(ErrorEnvelopeSerializer, description=text)
    for code, text in {
        401: "AuthenticationFailed, when WARDEN_PUBLIC_HEALTH is false",
        503: "ServiceUnavailable: database unreachable",
    }.items()
}


def _render(records: list[dict[str, Any]]) -> Any:
    return PluginHealthSerializer(records, many=True).data


def _encode(data: Any) -> str:
    """`data` (JSON-ready primitives) as DRF's JSONRenderer writes it, without a serializer
    pass: the health records were serialized when they were cached."""
    body = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return body.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def _json(body: bytes) -> HttpResponse:
    return HttpResponse(body, content_type="application/json")


class HealthPermission(BasePermission):
    """Public unless WARDEN_PUBLIC_HEALTH=false, then token-authenticated."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        if settings.WARDEN_PUBLIC_HEALTH:
            return AllowAny().has_permission(request, view)
        return IsAuthenticated().has_permission(request, view)


class PluginListApi(APIView):
    permission_classes = [HealthPermission]

    @extend_schema(
        responses={200: PluginHealthSerializer(many=True), **ERRORS}, operation_id="plugins_list"
    )
    def get(self, request: Request) -> HttpResponse:
        """Every plugin's health record, sorted by name."""
        return _json(health_body(live_hosts_or_none(), _render, _encode) or b"[]")


class PluginHealthApi(APIView):
    permission_classes = [HealthPermission]

    @extend_schema(
        responses={
            200: PluginHealthSerializer,
            404: OpenApiResponse(ErrorEnvelopeSerializer, description="PluginNotFound"),
            **ERRORS,
        },
        operation_id="plugins_health",
    )
    def get(self, request: Request, name: str) -> HttpResponse:
        """One plugin's health record; 404 PluginNotFound if no plugin has that name."""
        body = health_body(live_hosts_or_none(), _render, _encode, name)
        if body is None:
            raise WardenError(
                "PluginNotFound", f"No plugin named '{name}'", plugin=name, status=404
            )
        return _json(body)
