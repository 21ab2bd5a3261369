"""Worker liveness: each worker's main process keeps its name fresh in a Redis sorted set per queue.

The API checks the set (one Redis round trip) before queueing, so a request made while no worker
consumes its queue gets a 503 at once instead of a job nobody will run.
"""

from __future__ import annotations

import logging
import threading
import time
from functools import cache

import redis
from django.conf import settings

logger = logging.getLogger(__name__)
KEY_PREFIX = "warden:workers"
TTL_S = 15
BEAT_S = 5.0


@cache
def _client() -> redis.Redis:
    return redis.Redis.from_url(
        settings.CELERY_BROKER_URL, socket_connect_timeout=2, socket_timeout=2
    )


def _key(queue: str) -> str:
    return f"{KEY_PREFIX}:{queue}"


def live_workers(queue: str) -> list[str]:
    """Return the names of workers that announced `queue` within the last TTL_S seconds.

    Raises redis.RedisError if Redis cannot be reached.
    """
    names: list[bytes] = _client().zrangebyscore(  # type: ignore[assignment]
        _key(queue), time.time() - TTL_S, "+inf"
    )
    return sorted(n.decode() for n in names)


_seen_live: dict[str, float] = {}
SEEN_LIVE_S = 2.0


def queue_has_live_worker(queue: str) -> bool:
    """Whether a worker consumes `queue`; a positive answer is reused for SEEN_LIVE_S seconds
    (a Redis round trip saved per request; the heartbeat's own TTL is far longer).

    Raises redis.RedisError if Redis cannot be reached.
    """
    now = time.monotonic()
    if _seen_live.get(queue, 0.0) > now:
        return True
    if live_workers(queue):
        _seen_live[queue] = now + SEEN_LIVE_S
        return True
    _seen_live.pop(queue, None)
    return False


QUEUED_PREFIX = "warden:queued"


def _queued_key(job_id: str) -> str:
    return f"{QUEUED_PREFIX}:{job_id}"


def mark_queued(job_id: str, ttl_s: int) -> None:
    """Note in the broker's Redis that `job_id`'s message was queued (for `ttl_s` seconds).

    The mark lives and dies with the queue: if Redis restarts without its data, both the message
    and the mark are gone, which is how the reaper tells a lost message from a slow queue.
    Raises redis.RedisError if Redis cannot be reached.
    """
    _client().set(_queued_key(job_id), b"1", ex=max(1, ttl_s))


def unmarked(job_ids: list[str]) -> list[str]:
    """Return the job ids among `job_ids` whose queued mark is gone (their message was lost).

    Raises redis.RedisError if Redis cannot be reached.
    """
    if not job_ids:
        return []
    pipe = _client().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(_queued_key(job_id))
    return [job_id for job_id, found in zip(job_ids, pipe.execute(), strict=True) if not found]


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
        """Stop announcing and withdraw this worker."""
        self._stop.set()
        try:
            pipe = _client().pipeline()
            for queue in self.queues:
                pipe.zrem(_key(queue), self.hostname)
            pipe.execute()
        except redis.RedisError:
            pass

    def _beat(self) -> None:
        now = time.time()
        try:
            pipe = _client().pipeline()
            for queue in self.queues:
                pipe.zadd(_key(queue), {self.hostname: now})
                pipe.zremrangebyscore(_key(queue), "-inf", now - 10 * TTL_S)
            pipe.execute()
        except redis.RedisError as exc:
            logger.warning("worker heartbeat failed: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            self._beat()
