"""__init__ raises: the model path is not configured."""


class Plugin:
    """Cannot be constructed."""

    def __init__(self) -> None:
        raise ValueError("model path not configured")

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
