"""Jobs made for tests the way the API makes them: validated against the registry, then created
PENDING (execution_app.services.analysis_validate + job_create); nothing is queued."""

from __future__ import annotations

from typing import Any

from execution_app.models import Job


def pending_job(
    plugin: str = "faulty",
    tool: str | None = "ok",
    *,
    args: dict[str, Any] | None = None,
    file_bytes: bytes | None = None,
) -> Job:
    """A PENDING job of `plugin`'s `tool` (the plugin must be synced)."""
    from execution_app.services import analysis_validate, job_create

    job_input = analysis_validate(
        plugin_name=plugin,
        tool=tool,
        args=args or {},
        file_bytes=file_bytes,
        mime_type=None,
        timeout_s=None,
    )
    return job_create(job_input=job_input)
