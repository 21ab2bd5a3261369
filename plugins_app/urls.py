"""Health API routes."""

from django.urls import path

from .apis import PluginHealthApi, PluginListApi

urlpatterns = [
    path("plugins", PluginListApi.as_view(), name="plugin-list"),
    path("plugins/<str:name>/health", PluginHealthApi.as_view(), name="plugin-health"),
]
