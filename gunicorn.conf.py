"""gunicorn reads this file from the working directory by default (`make run`, the tests, and the
command lines of docs/operations.md all start gunicorn from the repository root).

It sets the worker model: WARDEN_WEB_WORKERS processes (default 2, one per core here) of
WARDEN_WEB_THREADS threads each (gthread). A synchronous analyze holds its thread until the job
ends, so the threads bound how many run at once; command-line options override these.

It empties PROMETHEUS_MULTIPROC_DIR when gunicorn starts, so that the HTTP request metrics summed
over this host's web processes start from zero with each gunicorn master (Prometheus treats that
as a counter reset) instead of accumulating files of long-dead processes, and it uses Warden's log
format for gunicorn's own messages when WARDEN_LOG_FORMAT=json (one JSON object per line).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")


worker_class = "gthread"
workers = int(os.environ.get("WARDEN_WEB_WORKERS", "2"))
threads = int(os.environ.get("WARDEN_WEB_THREADS", "16"))
timeout = 120
graceful_timeout = 10


def _settings() -> Any:
    from django.conf import settings

    return settings


def on_starting(server: Any) -> None:
    """In the master, before any worker exists: remove the previous processes' metric files."""
    directory = Path(_settings().PROMETHEUS_MULTIPROC_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """A worker process ended: let prometheus_client drop its live gauges (counters stay)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


if _settings().WARDEN_LOG_FORMAT == "json":
    # gunicorn's own lines as JSON too; its access lines are dropped (Warden's middleware writes
    # the access log, with the request id, unless WARDEN_ACCESS_LOG=false).
    logconfig_dict = {
        **_settings().LOGGING,
        "loggers": {
            "gunicorn.error": {"handlers": ["console"], "level": "INFO", "propagate": False},
            "gunicorn.access": {"handlers": [], "level": "WARNING", "propagate": False},
        },
    }
