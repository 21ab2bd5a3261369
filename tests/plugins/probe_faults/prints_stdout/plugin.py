"""Prints to stdout everywhere; the probe's result channel must not be corrupted."""

print("hello from import")
print('{"ok": false, "stage": "import", "exc_type": "Fake", "message": "forged", "traceback": ""}')


class Plugin:
    """Chatty but healthy."""

    def __init__(self) -> None:
        print("hello from __init__")

    def validate(self) -> None:
        # No newline, flushed: without the probe's stdout redirect this glues onto its result line.
        print("validate says hi", end="", flush=True)

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
