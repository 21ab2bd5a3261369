"""Worker liveness: each worker's main process keeps its name fresh in a Redis sorted set per queue.

The API checks the set (one Redis round trip) before queueing, so a request made while no worker
consumes its queue gets a 503 at once instead of a job nobody will run. Beats are scored, and
freshness judged, with the Redis server's clock (`TIME` inside small Lua scripts): one clock for
every host, whatever their own clocks say.
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


# KEYS: the queues' sets; ARGV[1]: the window in seconds. Returns, per key, the fresh members.
_FRESH = """
local t = redis.call('TIME')
local since = tonumber(t[1]) + tonumber(t[2]) / 1000000 - tonumber(ARGV[1])
local out = {}
for i, key in ipairs(KEYS) do out[i] = redis.call('ZRANGEBYSCORE', key, since, '+inf') end
return out
"""
# KEYS: the queues' sets; ARGV[1]: the member; ARGV[2]: how old a member may get before removal.
_BEAT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[1])
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - tonumber(ARGV[2]))
end
return now
"""


def _fresh(queues: tuple[str, ...] | list[str]) -> list[list[bytes]]:
    """The members of each queue's set that beat within TTL_S seconds, by Redis's clock.

    Raises redis.RedisError if Redis cannot be reached.
    """
    client = _client()
    found: list[list[bytes]] = client.eval(_FRESH, len(queues), *[_key(q) for q in queues], TTL_S)
    return found


def live_workers(queue: str) -> list[str]:
    """Return the names of workers that announced `queue` within the last TTL_S seconds.

    Raises redis.RedisError if Redis cannot be reached.
    """
    [names] = _fresh([queue])
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


JOB_QUEUES = ("cpu", "gpu")
LIVE_HOSTS_CACHE_S = 1.0
_live_hosts: tuple[float, dict[str, set[str]]] = (0.0, {})


def host_queue(queue: str, host: str) -> str:
    """The queue only `host`'s workers consume, besides the shared `queue` ("cpu@gpu-1")."""
    return f"{queue}@{host}"


def node_host(node: str) -> str:
    """The host part of a Celery node name ("warden@gpu-1" -> "gpu-1")."""
    return node.rpartition("@")[2] or node


_host_name: str | None = None


def worker_host_name() -> str:
    """This worker's host in per-host plugin availability: the host part of its node name (set
    at worker start), else WARDEN_HOST_NAME."""
    return _host_name or str(settings.WARDEN_HOST_NAME)


def worker_host_name_set(node: str) -> None:
    """Remember this worker's node name (worker main process, before the pool forks)."""
    global _host_name
    _host_name = node_host(node)


def live_hosts() -> dict[str, set[str]]:
    """Map each host with a live worker to the job queues its live workers consume (reused for
    LIVE_HOSTS_CACHE_S seconds: health reads are frequent, heartbeats every BEAT_S).

    Raises redis.RedisError if Redis cannot be reached.
    """
    global _live_hosts
    now = time.monotonic()
    if _live_hosts[0] > now:
        return _live_hosts[1]
    hosts: dict[str, set[str]] = {}
    for queue, names in zip(JOB_QUEUES, _fresh(JOB_QUEUES), strict=True):
        for name in names:
            hosts.setdefault(node_host(name.decode()), set()).add(queue)
    _live_hosts = (now + LIVE_HOSTS_CACHE_S, hosts)
    return hosts


def live_hosts_or_none() -> dict[str, set[str]] | None:
    """live_hosts(), or None when Redis cannot be reached (liveness unknown)."""
    try:
        return live_hosts()
    except redis.RedisError:
        return None


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
        try:
            _client().eval(
                _BEAT,
                len(self.queues),
                *[_key(q) for q in self.queues],
                self.hostname,
                10 * TTL_S,
            )
        except redis.RedisError as exc:
            logger.warning("worker heartbeat failed: %s", exc)

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            self._beat()
