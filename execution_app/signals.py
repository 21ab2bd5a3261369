"""Worker signal handlers: containment and child set-up, plugin sync, heartbeat and supervisor
at start, clean shutdown."""

from __future__ import annotations

import faulthandler
import logging
import os
import sys
from pathlib import Path
from typing import Any

from celery.signals import (
    celeryd_after_setup,
    worker_init,
    worker_process_init,
    worker_ready,
    worker_shutdown,
)
from django.conf import settings
from django.db import connections

from .containment import (
    billiard_children,
    containment_setup,
    set_subreaper,
    worker_containment,
    worker_containment_set,
)
from .supervisor import Supervisor, supervisor_set
from .workers import JOB_QUEUES, host_queue, node_host, worker_host_name, worker_host_name_set

logger = logging.getLogger(__name__)
_heartbeat: Any = None
_supervisor: Supervisor | None = None


POOL_MAINTENANCE_S = 0.25


@worker_init.connect
def tighten_pool_maintenance(**_: Any) -> None:
    """Notice a dead child within 0.25 s instead of up to 5 s.

    The prefork pool learns of a child's death from its sentinel fd, but sometimes (a race in the
    pool, measured here) only at its periodic maintenance, every 5 s by default. A plugin that
    crashes a few seconds before its hard time limit would then be recorded as a timeout.
    """
    from celery.concurrency.asynpool import AsynPool

    AsynPool.timers = property(lambda self: {self.maintain_pool: POOL_MAINTENANCE_S})


@celeryd_after_setup.connect
def add_host_queues(sender: str, instance: Any, **_: Any) -> None:
    """Also consume this host's own queue for each job queue (`cpu@<host>`), so that a job of a
    plugin only some hosts have ready can be sent to one of those (services.job_route)."""
    queues = instance.app.amqp.queues
    for name in [q for q in queues.consume_from if q in JOB_QUEUES]:
        queues.select_add(host_queue(name, node_host(sender)))


@worker_init.connect
def set_up_containment(sender: Any = None, **_: Any) -> None:
    """Remember this worker's host name; choose how jobs' process trees are contained (before
    the pool forks its children, which inherit both) and make the main process a subreaper."""
    worker_host_name_set(getattr(sender, "hostname", None) or settings.WARDEN_HOST_NAME)
    containment = containment_setup(
        settings.WARDEN_CONTAINMENT, job_max_pids=settings.WARDEN_JOB_MAX_PIDS
    )
    worker_containment_set(containment)
    logger.info(
        "job containment: %s%s",
        containment.mode,
        f" ({containment.why})" if containment.why else "",
    )


@worker_init.connect
def lower_worker_priority(**_: Any) -> None:
    """Give the whole worker less CPU than the web under contention (WARDEN_WORKER_NICE).

    Linux groups processes by session for CPU fairness (autogroup scheduling): a child's nice
    value only ranks it within its own session, so by itself it cannot make a job yield to a
    gunicorn in another session (measured: docs/benchmarks.md). A worker that leads its own
    session (`make run` and systemd start it so) sets its session group's nice value instead,
    which ranks the worker against the web. A worker sharing a session (started from a shell)
    does not: it would lower whatever else runs in that session.
    """
    nice = settings.WARDEN_WORKER_NICE
    if nice <= 0 or os.getsid(0) != os.getpid():
        return
    try:
        Path("/proc/self/autogroup").write_text(f"{nice}\n")
    except OSError as exc:  # no autogroup scheduling in this kernel, or not permitted
        logger.info("worker priority: autogroup nice not set (%s)", exc)


@worker_process_init.connect
def configure_child(**_: Any) -> None:
    """In each new worker child: single-threaded numeric libraries, subreaper, faulthandler.

    torch is never imported in the parent (forking after torch ops deadlocks children), so it is
    not imported here either: OMP_NUM_THREADS covers a later import, and ToolRunner calls
    torch.set_num_threads(1) once a plugin has imported torch.

    Database connections inherited from the parent are dropped by Celery's Django fixup, which
    closes their file descriptors only. Closing them here with `conn.close()` would send
    PostgreSQL's Terminate message over the socket the parent still uses, killing the parent's
    session (measured: the main-process hooks then failed to record crashed jobs).
    """
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    # Orphans of a job's processes are re-parented to this child, where the job can find them.
    set_subreaper()
    # cgroup mode: this child's own cgroups, which every process it starts is born into.
    worker_containment().child_setup()
    # Plugin code below the web's priority: on a shared host, health requests win the CPU.
    if settings.WARDEN_WORKER_NICE > 0:
        os.nice(settings.WARDEN_WORKER_NICE)
    # A crash writes the Python stack to fd 2, which is the job's captured output during a run.
    faulthandler.enable(file=2, all_threads=True)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(1)


@worker_ready.connect
def on_worker_ready(sender: Any = None, **_: Any) -> None:
    """Re-probe plugins (unless disabled), start supervising the pool and start announcing this
    worker's queues."""
    global _heartbeat, _supervisor
    from .workers import Heartbeat

    if sender is not None:
        _supervisor = Supervisor(
            containment=worker_containment(),
            run_dir=settings.WARDEN_RUN_DIR,
            pool_pids=billiard_children,
        )
        supervisor_set(_supervisor)
        _supervisor.start()
    queues = [q.name for q in sender.app.amqp.queues.consume_from.values()] if sender else []
    if settings.WARDEN_SYNC_ON_WORKER_START:
        from plugins_app.services import plugin_sync

        try:
            job_queues = [q for q in queues if q in JOB_QUEUES]
            outcomes = plugin_sync(host=worker_host_name(), queues=job_queues)
            logger.info("plugin sync at worker start: %d plugin(s)", len(outcomes))
        except Exception:
            logger.exception("plugin sync at worker start failed")
        finally:
            connections.close_all()
    if _supervisor is not None:
        _supervisor.sweeping = True
    hostname = getattr(sender, "hostname", None) or os.uname().nodename
    _heartbeat = Heartbeat(hostname, queues or ["cpu"])
    _heartbeat.start()


@worker_shutdown.connect
def on_worker_shutdown(**_: Any) -> None:
    """Withdraw the heartbeat so the API stops sending work here; stop supervising; remove this
    worker's job cgroups."""
    if _heartbeat is not None:
        _heartbeat.stop()
    if _supervisor is not None:
        _supervisor.stop()
        supervisor_set(None)
    worker_containment().shutdown()
