"""The Celery application, wired the way the official Django recipe does it."""

import os

from celery import Celery
from celery.signals import beat_init, task_postrun, task_prerun, worker_init

from .db import db_connections_refresh
from .kombu_fix import patch_kombu_redis

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "project.settings")

# A worker must survive a Redis restart with a job in flight (see project/kombu_fix.py).
patch_kombu_redis()

app = Celery("warden")
app.config_from_object("django.conf:settings", namespace="CELERY")
# Keep each worker child's database connection across tasks (Celery's Django fixup otherwise
# reconnects before and after every task); Django's CONN_MAX_AGE still recycles it.
app.conf.update({"CELERY_DB_REUSE_MAX": 1000})
app.autodiscover_tasks()
# Worker children keep their database connection across tasks: check it before each one, so a
# database restart costs no job, and after each one, so that a task interrupted mid-transaction
# never leaves its locks held while the child waits for work.
task_prerun.connect(db_connections_refresh, weak=False)
task_postrun.connect(db_connections_refresh, weak=False)


def _refuse_insecure_start(**kwargs: object) -> None:
    """Stop a worker or beat that must not run (Celery logs and ignores exceptions raised by
    signal receivers, but not SystemExit)."""
    from django.core.exceptions import ImproperlyConfigured

    from .deploy import refuse_insecure_start  # Django's settings are ready only by now

    try:
        refuse_insecure_start()
    except ImproperlyConfigured as exc:
        raise SystemExit(str(exc)) from exc


worker_init.connect(_refuse_insecure_start, weak=False)
beat_init.connect(_refuse_insecure_start, weak=False)
