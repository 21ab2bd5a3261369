"""An older ForgeSyte plugin: metadata() and analyze(image_bytes, options), no tools."""


class Plugin:
    name = "legacy"

    def metadata(self):
        return {"name": self.name, "description": "legacy analyzer", "version": "0.1"}

    def analyze(self, image_bytes, options=None):
        return {"bytes": len(image_bytes), "options": options}
