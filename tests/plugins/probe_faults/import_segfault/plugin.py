"""Segfaults at import."""

import ctypes

ctypes.string_at(0)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
