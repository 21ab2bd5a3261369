"""Benchmark load plugin: a slow job that waits (sleep) or one that holds a CPU (burn)."""

from __future__ import annotations

import time
from typing import Any


class Plugin:
    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        seconds = float(args["seconds"])
        deadline = time.monotonic() + seconds
        if tool == "sleep":
            time.sleep(seconds)
            return {"slept_s": seconds}
        loops = 0
        while time.monotonic() < deadline:
            sum(range(10_000))
            loops += 1
        return {"loops": loops}
