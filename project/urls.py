"""Top-level routes: the v1 API, its schema and docs, the admin, health probes and metrics."""

import os

from django.conf import settings
from django.contrib import admin
from django.contrib.staticfiles.urls import staticfiles_urlpatterns
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

urlpatterns = [
    path("", RedirectView.as_view(url="/api/docs/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("v1/", include("plugins_app.urls")),
    path("v1/", include("execution_app.urls")),
    path("", include("ops_app.urls")),
]

if settings.WARDEN_BENCH_VIEWS:  # BENCHMARK ONLY (make bench): the baselines of docs/benchmarks.md
    from project import bench_views

    urlpatterns += [
        path("bench/trivial", bench_views.BenchTrivialApi.as_view()),
        path("bench/trivial-auth", bench_views.BenchTrivialAuthApi.as_view()),
        path("bench/trivial-django", bench_views.bench_trivial_django),
    ]

if settings.DEBUG or os.environ.get("WARDEN_SERVE_STATIC") == "1":
    urlpatterns += staticfiles_urlpatterns()
    if not settings.DEBUG:
        from django.urls import re_path
        from django.views.static import serve

        urlpatterns += [
            re_path(r"^static/(?P<path>.*)$", serve, {"document_root": settings.STATIC_ROOT})
        ]

handler400 = "project.errors.handler400"
handler403 = "project.errors.handler403"
handler404 = "project.errors.handler404"
