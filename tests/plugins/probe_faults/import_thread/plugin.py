"""A non-daemon thread started at import must not keep the probe process alive."""

import threading
import time

threading.Thread(target=lambda: time.sleep(3600), daemon=False).start()


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
