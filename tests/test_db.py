"""project.db: a task interrupted by its soft time limit never leaves a transaction (and its
locks) behind, and the limit waits until the job's row is written."""

from __future__ import annotations

import os
import signal
import sqlite3

import pytest
from billiard.exceptions import SoftTimeLimitExceeded
from billiard.pool import soft_timeout_sighandler
from django.db import connection

from project.db import db_connections_refresh, soft_limit_deferred


@pytest.fixture
def billiard_handler():
    """SIGUSR1 raising SoftTimeLimitExceeded, as in a prefork worker child."""
    previous = signal.signal(signal.SIGUSR1, soft_timeout_sighandler)
    yield
    signal.signal(signal.SIGUSR1, previous)


def test_it_raises_the_soft_limit_only_after_the_deferred_block(billiard_handler) -> None:
    reached_the_end = False
    with pytest.raises(SoftTimeLimitExceeded), soft_limit_deferred():
        os.kill(os.getpid(), signal.SIGUSR1)
        reached_the_end = True

    assert reached_the_end
    assert signal.getsignal(signal.SIGUSR1) is soft_timeout_sighandler


def test_it_raises_nothing_when_no_limit_struck(billiard_handler) -> None:
    with soft_limit_deferred():
        pass

    assert signal.getsignal(signal.SIGUSR1) is soft_timeout_sighandler


def test_it_releases_a_transaction_left_open_by_an_interruption(transactional_db) -> None:
    # What a soft limit striking right after Django's BEGIN left behind: a transaction Django
    # does not know about, holding the database's locks.
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "sqlite":
        raw.execute("BEGIN IMMEDIATE")  # SQLite's write lock, for every process
    else:
        raw.execute("BEGIN")
        raw.execute("LOCK TABLE plugins_app_pluginrecord IN ACCESS EXCLUSIVE MODE")
    assert not connection.in_atomic_block

    db_connections_refresh()

    assert connection.connection is None  # closed, so rolled back
    if connection.vendor == "sqlite":
        other = sqlite3.connect(connection.settings_dict["NAME"], timeout=0.5)
        other.execute("BEGIN IMMEDIATE")  # would raise "database is locked" otherwise
        other.rollback()
        other.close()
    from plugins_app.models import PluginRecord

    assert PluginRecord.objects.count() >= 0  # a fresh connection reads (and is not blocked)
