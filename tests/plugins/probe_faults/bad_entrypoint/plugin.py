"""Never imported: the entrypoint does not match module:Class."""


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
