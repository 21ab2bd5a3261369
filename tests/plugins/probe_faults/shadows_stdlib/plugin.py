"""Puts its own folder first on sys.path (and works from it), ships a module named like the
standard library's `token`, then fails in __init__: the probe must still report that failure."""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
os.chdir(HERE)


class Plugin:
    """Cannot be constructed."""

    def __init__(self) -> None:
        raise ValueError("model path not configured")

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
