"""Token authentication with a short per-process memory of valid tokens."""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from rest_framework.authentication import TokenAuthentication

MAX_REMEMBERED = 1024


class CachedTokenAuthentication(TokenAuthentication):
    """DRF's token authentication, remembering a valid token for WARDEN_TOKEN_CACHE_S seconds
    (default 5) in this process: a lookup costs a query and about a millisecond, as much as the
    rest of a cheap request. A token deleted (or a user deactivated) keeps working for at most
    that long in each web process; 0 turns the memory off."""

    _remembered: dict[str, tuple[float, Any]] = {}
    _lock = threading.Lock()

    def authenticate_credentials(self, key: str) -> Any:
        """Return (user, token) for `key`, from memory while it is fresh; raise
        AuthenticationFailed as DRF does for an unknown key or an inactive user."""
        ttl = float(settings.WARDEN_TOKEN_CACHE_S)
        now = time.monotonic()
        hit = self._remembered.get(key) if ttl > 0 else None
        if hit is not None and hit[0] > now:
            return hit[1]
        found = super().authenticate_credentials(key)
        if ttl > 0:
            with self._lock:
                if len(self._remembered) >= MAX_REMEMBERED:
                    self._remembered.clear()
                self._remembered[key] = (now + ttl, found)
        return found
