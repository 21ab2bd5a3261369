"""Raises SystemExit at import."""

raise SystemExit(3)


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
