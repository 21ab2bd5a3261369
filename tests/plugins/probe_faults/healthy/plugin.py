"""A plugin with nothing wrong: the neighbour every fault test checks is unaffected."""


class Plugin:
    """Does nothing; only its import matters."""

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
