"""Pagination of list endpoints: `limit` and `offset` strictly validated, `limit` capped."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from django.db.models import QuerySet
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response

from .errors import WardenError

_DIGITS = re.compile(r"[0-9]{1,30}")


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """`limit` default 50, values above 1000 clamped to 1000; a limit or offset that is not a
    plain non-negative decimal integer (limit: positive) is a 400, never ignored or a 500.

    `count` is exact up to COUNT_EXACT_UP_TO rows past the page (`count_exact: true`); beyond,
    counting stops there (`count_exact: false`, `count` a lower bound), so that a page costs the
    same with a million rows as with ten thousand.
    """

    default_limit = 50
    max_limit = 1000
    count_exact_up_to = 10_000

    def paginate_queryset(
        self, queryset: QuerySet[Any, Any] | Sequence[Any], request: Request, view: Any = None
    ) -> list[Any]:
        """This page's rows, counting at most up to the bound."""
        self.request = request
        self.limit = self.get_limit(request)
        self.offset = self.get_offset(request)
        # (Capped below SQL's 64-bit LIMIT: no table holds that many rows.)
        bound = min(max(self.count_exact_up_to, self.offset + self.limit), 2**62) + 1
        rows = queryset.order_by() if isinstance(queryset, QuerySet) else queryset
        self.count = rows[:bound].count() if isinstance(rows, QuerySet) else len(rows[:bound])
        self.count_exact = self.count < bound
        if self.count == 0 or self.offset > self.count:
            return []
        return list(queryset[self.offset : self.offset + self.limit])

    def get_paginated_response(self, data: Any) -> Response:
        """The page: count, count_exact, next, previous, results."""
        return Response(
            {
                "count": self.count,
                "count_exact": self.count_exact,
                "next": self.get_next_link(),
                "previous": self.get_previous_link(),
                "results": data,
            }
        )

    def _parameter(self, request: Request, name: str, minimum: int) -> int | None:
        raw = request.query_params.get(name)
        if raw is None:
            return None
        if not _DIGITS.fullmatch(raw) or int(raw) < minimum:
            kind = "a positive" if minimum else "a non-negative"
            raise WardenError(
                "ValidationError",
                f"'{name}' must be {kind} integer (decimal digits only, at most 30)",
                details={"field": name, "minimum": minimum},
            )
        return int(raw)

    def get_limit(self, request: Request) -> int:
        """The page size: `limit` clamped to max_limit, or the default."""
        limit = self._parameter(request, self.limit_query_param, 1)
        return self.default_limit if limit is None else min(limit, self.max_limit)

    def get_offset(self, request: Request) -> int:
        """The first row: `offset` (a huge offset gives an empty page), or 0."""
        offset = self._parameter(request, self.offset_query_param, 0)
        return offset or 0

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        """Document the bounds in the OpenAPI schema."""
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.limit_query_param:
                parameter["schema"].update(minimum=1, default=self.default_limit)
                parameter["description"] = (
                    f"Page size, default {self.default_limit}; values above {self.max_limit} "
                    f"are clamped to {self.max_limit}."
                )
            elif parameter["name"] == self.offset_query_param:
                parameter["schema"]["minimum"] = 0
        return parameters
