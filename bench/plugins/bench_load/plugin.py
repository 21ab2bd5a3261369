"""Benchmark load plugin: a slow job that waits (sleep) or one that holds a CPU (burn), until a
stop file appears or `seconds` pass."""

from __future__ import annotations

import os
import time
from typing import Any


class Plugin:
    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        deadline = time.monotonic() + float(args["seconds"])
        stop = args.get("stop_file") or ""
        loops = 0
        while time.monotonic() < deadline and not (stop and os.path.exists(stop)):
            if tool == "sleep":
                time.sleep(0.02)
            else:
                for _ in range(20):  # about 2 ms of pure-Python work between checks
                    sum(range(1_000))
            loops += 1
        return {"tool": tool, "loops": loops}
