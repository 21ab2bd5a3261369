"""Health API: reads the registry only, never plugin code."""

from __future__ import annotations

from django.conf import settings
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework.permissions import AllowAny, BasePermission, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from project.errors import WardenError
from project.serializers import ErrorEnvelopeSerializer

from .selectors import plugin_get, plugin_health, plugin_list
from .serializers import PluginHealthSerializer

ERRORS = {
    code: OpenApiResponse(ErrorEnvelopeSerializer, description=text)
    for code, text in {
        401: "AuthenticationFailed, when WARDEN_PUBLIC_HEALTH is false",
        503: "ServiceUnavailable: database unreachable",
    }.items()
}


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
    def get(self, request: Request) -> Response:
        """Every plugin's health record, sorted by name."""
        records = [plugin_health(p) for p in plugin_list()]
        return Response(PluginHealthSerializer(records, many=True).data)


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
    def get(self, request: Request, name: str) -> Response:
        """One plugin's health record; 404 PluginNotFound if no plugin has that name."""
        plugin = plugin_get(name=name)
        if plugin is None:
            raise WardenError(
                "PluginNotFound", f"No plugin named '{name}'", plugin=name, status=404
            )
        return Response(PluginHealthSerializer(plugin_health(plugin)).data)
