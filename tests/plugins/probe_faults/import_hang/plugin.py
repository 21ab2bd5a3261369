"""Sleeps forever at import."""

import time

while True:
    time.sleep(0.05)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
