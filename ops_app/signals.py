"""Log context across processes: the web's request id travels with the task message, and every
log line a worker child writes during a job carries that job's id (and the request id)."""

from __future__ import annotations

from contextvars import Token
from typing import Any

from celery.signals import before_task_publish, task_postrun, task_prerun

from project import logs

REQUEST_ID_HEADER = "warden_request_id"
_tokens: dict[str, Token[dict[str, str]]] = {}


@before_task_publish.connect
def add_request_id(headers: dict[str, Any] | None = None, **_: Any) -> None:
    """Web side: put the current request id into the task message's headers."""
    request_id = logs.log_context().get("request_id")
    if request_id and headers is not None:
        headers[REQUEST_ID_HEADER] = request_id


@task_prerun.connect
def bind_job(
    task_id: str = "", task: Any = None, kwargs: dict[str, Any] | None = None, **_: Any
) -> None:
    """Worker child: bind the job id (and the submitting request's id) for the task's duration."""
    job_id = (kwargs or {}).get("job_id")
    request_id = task.request.get(REQUEST_ID_HEADER) if task is not None else None
    if job_id or request_id:
        _tokens[task_id] = logs.bind_context(job_id=job_id, request_id=request_id)


@task_postrun.connect
def unbind_job(task_id: str = "", **_: Any) -> None:
    """Worker child: forget the job's log context once the task returned."""
    token = _tokens.pop(task_id, None)
    if token is not None:
        logs.unbind_context(token)
