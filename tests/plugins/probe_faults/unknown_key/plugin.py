"""Never imported: the manifest has an unknown key."""


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
