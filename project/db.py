"""Database connections of long-lived processes that have no request cycle (Celery workers)."""

from __future__ import annotations

from typing import Any

from django.db import DatabaseError, connections


def db_connections_refresh(**_: Any) -> None:
    """Make this thread's database connections usable again before it touches the database.

    Django does this at the start and end of every web request; a Celery worker's main process
    (whose hooks record crashes and hard timeouts) and its children (kept connections across tasks)
    have no requests, so after a database restart they would keep a dead connection forever. This
    closes a connection that errored, outlived WARDEN_DB_CONN_MAX_AGE or no longer passes a health
    check (with CONN_HEALTH_CHECKS, one `SELECT 1` at the next query); the next query reconnects.
    Connections inside a transaction (`atomic`) are left alone. Never raises for a dead database.
    """
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            continue
        try:
            conn.close_if_unusable_or_obsolete()
        except DatabaseError:
            conn.close()
