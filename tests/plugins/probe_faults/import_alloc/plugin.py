"""Allocates 50 MB blocks at import.

Stops at 4 GB and then hangs, so a missed memory kill shows up as a probe timeout instead of
exhausting the host.
"""

import time

_blocks = []
for _ in range(80):
    _blocks.append(b"x" * (50 * 2**20))
while True:
    time.sleep(0.05)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
