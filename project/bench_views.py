"""BENCHMARK-ONLY views (mounted only when WARDEN_BENCH_VIEWS=1): the baselines of `make bench`.

Nothing here is part of the product API. They exist so that Warden's endpoints can be compared
with the cheapest possible views on the same gunicorn, settings and middleware.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView


class BenchTrivialApi(APIView):
    """A trivial public DRF view: no database, no serializer."""

    permission_classes = [AllowAny]

    def get(self, request: Request) -> Response:
        """Return {"status": "ok"}."""
        return Response({"status": "ok"})


class BenchTrivialAuthApi(APIView):
    """The same view behind the default (token) authentication: one token query."""

    def get(self, request: Request) -> Response:
        """Return {"status": "ok"} to an authenticated caller."""
        return Response({"status": "ok"})


def bench_trivial_django(request: HttpRequest) -> JsonResponse:
    """A trivial plain Django view (no DRF), through the same middleware."""
    return JsonResponse({"status": "ok"})
