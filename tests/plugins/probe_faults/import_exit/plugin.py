"""Kills its process with exit code 7 at import."""

import os

os._exit(7)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
