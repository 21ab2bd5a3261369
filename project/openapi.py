"""OpenAPI schema post-processing: what drf-spectacular cannot infer from the views."""

from __future__ import annotations

from typing import Any

from django.conf import settings

HEALTH_OPERATIONS = ("plugins_list", "plugins_health", "health_ready")  # WARDEN_PUBLIC_HEALTH
METRICS_OPERATIONS = ("metrics",)  # WARDEN_PUBLIC_METRICS
JOB_LINKS = {
    "GetJob": {
        "operationId": "jobs_retrieve",
        "parameters": {"job_id": "$response.body#/job_id"},
        "description": "The job this call created",
    },
    "CancelJob": {
        "operationId": "jobs_cancel",
        "parameters": {"job_id": "$response.body#/job_id"},
        "description": "Cancel the job this call created",
    },
}


def _operations(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [op for path in result.get("paths", {}).values() for op in path.values()]


def add_links_and_public_health(
    result: dict[str, Any], generator: Any, request: Any, public: bool
) -> dict[str, Any]:
    """Link analyze responses to the job they created (clients and stateful fuzzers follow
    them), and mark the health and metrics endpoints as needing no credentials when
    WARDEN_PUBLIC_HEALTH and WARDEN_PUBLIC_METRICS say so."""
    public_ops = [
        *(HEALTH_OPERATIONS if settings.WARDEN_PUBLIC_HEALTH else ()),
        *(METRICS_OPERATIONS if settings.WARDEN_PUBLIC_METRICS else ()),
    ]
    for operation in _operations(result):
        op_id = operation.get("operationId")
        if op_id in ("analyze_execution", "analyze_execution_async"):
            status = "200" if op_id == "analyze_execution" else "202"
            operation["responses"][status]["links"] = JOB_LINKS
        if op_id in public_ops and {} not in operation.get("security", []):
            operation["security"] = [*operation.get("security", []), {}]
    return result
