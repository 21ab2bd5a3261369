"""Request checks that must run before any view, session or token lookup touches the database."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse

from .errors import ERROR_STATUS, envelope
from .storable import storable_text


def _nul_in(request: HttpRequest) -> str | None:
    """Name the part of the request that holds a NUL character, or None."""
    if "\x00" in request.path:
        return "path"
    for key, values in request.GET.lists():
        if "\x00" in key or any("\x00" in value for value in values):
            return f"query parameter '{storable_text(key)}'"
    if "\x00" in request.META.get("HTTP_AUTHORIZATION", ""):
        return "Authorization header"
    for key, value in request.COOKIES.items():
        if "\x00" in key or "\x00" in value:
            return "cookie"
    return None


def refuse_unstorable_request(
    get_response: Callable[[HttpRequest], HttpResponse],
) -> Callable[[HttpRequest], HttpResponse]:
    """Answer 400 ValidationError for a NUL character in the path, query, Authorization header or
    cookies: PostgreSQL refuses NUL in text, so any lookup with it (plugin name, job filters,
    token, session, admin search) would otherwise fail with a 500."""

    def middleware(request: HttpRequest) -> HttpResponse:
        where = _nul_in(request)
        if where is not None:
            return JsonResponse(
                envelope(
                    "ValidationError",
                    f"The request's {where} contains a NUL character (\\x00)",
                    details={"field": where},
                ),
                status=ERROR_STATUS["ValidationError"],
            )
        return get_response(request)

    return middleware
