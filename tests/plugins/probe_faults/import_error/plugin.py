"""Raises ModuleNotFoundError at import."""

import nonexistent_module_xyz  # noqa: F401


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
