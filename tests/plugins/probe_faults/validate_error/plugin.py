"""validate() raises: the plugin is unusable on this host."""


class Plugin:
    """Constructs, then refuses."""

    def validate(self) -> None:
        raise RuntimeError("license file /etc/xyz.lic not found")

    def run(self, tool: str, args: dict) -> dict:
        return {"ok": True}
