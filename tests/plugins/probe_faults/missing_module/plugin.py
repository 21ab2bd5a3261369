"""The manifest asks for module `nowhere`, which is not here."""


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
