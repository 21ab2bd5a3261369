"""Operations routes: liveness, readiness, Prometheus metrics (outside /v1/, as probes expect)."""

from django.urls import path

from .apis import LivenessApi, MetricsApi, ReadinessApi

urlpatterns = [
    path("health/live", LivenessApi.as_view(), name="health-live"),
    path("health/ready", ReadinessApi.as_view(), name="health-ready"),
    path("metrics", MetricsApi.as_view(), name="metrics"),
]
