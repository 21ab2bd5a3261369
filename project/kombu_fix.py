"""A fix for kombu's Redis transport so a worker survives a Redis restart with a job in flight.

The defect (kombu 5.7.0, `kombu/transport/redis.py`): when the broker connection is lost, the
Celery consumer calls `connection.collect()` and then `connection.close()`.

1. `collect()` closes the default channel. That channel is blocked in BRPOP (`_in_poll`), so
   `Channel.close()` first reads the BRPOP reply, which raises `ConnectionError` on the dead
   socket *before* the channel is marked closed; the error is swallowed as a connection error.
   `collect()` then detaches the transport from its `Connection` (`transport.client = None`).
2. `close()` closes the same, still-open channel again. Its unacknowledged message (the job in
   flight) is restored, which needs a new Redis pool, which `Channel._connparams()` builds from
   `self.connection.client` -- now None: `AttributeError: 'NoneType' object has no attribute
   'hostname'`. That is not a connection error, so nothing swallows it and the worker's main
   process exits ("Unrecoverable error"). Acking a message of the old channel later (the job
   ends) fails the same way.

The fix: a channel whose connection was released raises `redis.ConnectionError` from
`_connparams()` instead. Celery and kombu already treat that as "broker unreachable": the close
completes, the consumer reconnects when Redis is back, and a late ack is logged and skipped. No
job is lost by it: the job row, not the message, is the record (a message that is redelivered
later finds its job no longer PENDING and is skipped).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis

_PATCHED = "_warden_released_connection_guard"


def patch_kombu_redis() -> bool:
    """Make kombu's Redis channels raise ConnectionError, not AttributeError, once their
    connection is released. Idempotent; returns whether this call applied the patch."""
    channel: Any = kombu_redis.Channel
    if getattr(channel._connparams, _PATCHED, False):
        return False
    original = channel._connparams

    def _connparams(self: Any, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError(
                "kombu channel used after its broker connection was released"
            )
        return original(self, asynchronous=asynchronous)

    setattr(_connparams, _PATCHED, True)
    channel._connparams = _connparams
    return True
