"""Database connections of long-lived processes that have no request cycle (Celery workers)."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import DatabaseError, connections

# Celery's prefork pool delivers the soft time limit to a worker child as SIGUSR1 (billiard).
SOFT_LIMIT_SIGNAL = getattr(signal, "SIGUSR1", None)


@contextmanager
def soft_limit_deferred() -> Iterator[None]:
    """Hold Celery's soft time limit back while the database is written; raise it afterwards.

    The limit arrives as an exception raised wherever the child happens to be. Raised between
    `BEGIN` and Django's bookkeeping of it, it left the connection inside a transaction nobody
    would end: on SQLite that transaction holds the database's write lock, and every process
    then failed with "database is locked" (found by `make fuzz` with `timeout_s` 0.001).
    Only the main thread runs Python signal handlers, so only there is anything deferred.
    """
    if SOFT_LIMIT_SIGNAL is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[int] = []
    previous = signal.signal(SOFT_LIMIT_SIGNAL, lambda signum, frame: pending.append(signum))
    try:
        yield
    finally:
        signal.signal(SOFT_LIMIT_SIGNAL, previous)
    if pending and callable(previous):
        previous(SOFT_LIMIT_SIGNAL, None)  # billiard's handler raises SoftTimeLimitExceeded


def _in_transaction(raw: Any) -> bool:
    """Whether a DB-API connection is inside a transaction (sqlite3 or psycopg)."""
    if hasattr(raw, "in_transaction"):  # sqlite3
        return bool(raw.in_transaction)
    info = getattr(raw, "info", None)  # psycopg 3
    status = getattr(info, "transaction_status", None)
    return status is not None and int(status) != 0  # 0: IDLE


def db_connections_refresh(**_: Any) -> None:
    """Make this thread's database connections usable again before it touches the database.

    Django does this at the start and end of every web request; a Celery worker's main process
    (whose hooks record crashes and hard timeouts) and its children (kept connections across tasks)
    have no requests, so after a database restart they would keep a dead connection forever. This
    closes a connection that errored, outlived WARDEN_DB_CONN_MAX_AGE, no longer passes a health
    check (with CONN_HEALTH_CHECKS, one `SELECT 1` at the next query), or was left inside a
    transaction no atomic block owns (which would hold locks); the next query reconnects.
    Connections inside an atomic block are left alone. Never raises for a dead database.
    """
    with soft_limit_deferred():
        for conn in connections.all(initialized_only=True):
            if conn.in_atomic_block:
                continue
            try:
                if conn.connection is not None and _in_transaction(conn.connection):
                    conn.close()  # rolls the orphaned transaction back, releasing its locks
                else:
                    conn.close_if_unusable_or_obsolete()
            except DatabaseError:
                conn.close()
