"""Worker liveness: each worker's main process refreshes a short-lived Redis key per queue.

The API checks these keys (one Redis round trip) before queueing, so a request made while no
worker consumes its queue gets a 503 at once instead of a job nobody will run.
"""

from __future__ import annotations

import logging
import threading
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
KEY_PREFIX = "warden:worker"
TTL_S = 15
BEAT_S = 5.0


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2
    )


def live_workers(queue: str) -> list[str]:
    """Return the hostnames of workers that consumed `queue` within the last TTL_S seconds.

    Raises redis.RedisError if Redis cannot be reached.
    """
    keys = _client().keys(f"{KEY_PREFIX}:{queue}:*")
    return sorted(k.decode().rsplit(":", 1)[-1] for k in keys)


class Heartbeat:
    """Daemon thread in the worker's main process announcing the queues it consumes."""

    def __init__(self, hostname: str, queues: list[str]) -> None:
        self.hostname = hostname
        self.queues = queues
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-heartbeat", daemon=True)

    def start(self) -> None:
        """Announce now, then every BEAT_S seconds."""
        self._beat()
        self._thread.start()

    def stop(self) -> None:
        """Stop announcing and withdraw the keys."""
        self._stop.set()
        try:
            _client().delete(*[f"{KEY_PREFIX}:{q}:{self.hostname}" for q in self.queues])
        except redis.RedisError:
            pass

    def _beat(self) -> None:
        try:
            pipe = _client().pipeline()
            for queue in self.queues:
                pipe.set(f"{KEY_PREFIX}:{queue}:{self.hostname}", "1", ex=TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("worker heartbeat failed: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            self._beat()
