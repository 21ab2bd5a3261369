"""Declares nonexistent_pkg_xyz; Warden must not import it."""

from pathlib import Path

# Dependency faults must stop Warden before import: this marker proves the module never ran.
(Path(__file__).parent / "IMPORTED").write_text("imported")


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
