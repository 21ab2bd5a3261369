"""A ForgeSyte plugin that only runs inside the ForgeSyte server (no fallback for `app`)."""

from app.plugins.base import BasePlugin


class Plugin(BasePlugin):
    name = "hostapp"
    tools = {"hello": {"handler": "hello"}}

    def hello(self):
        return {"hello": "world"}
