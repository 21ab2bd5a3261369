"""A ForgeSyte plugin that imports the server's `app` when it can, with a standalone fallback."""

from typing import Any

try:
    from app.models import AnalysisResult
    from app.plugins.base import BasePlugin
except (ImportError, ModuleNotFoundError):

    class BasePlugin:
        name: str = ""
        tools: dict[str, Any] = {}

        def run_tool(self, tool_name: str, args: dict) -> Any:
            raise NotImplementedError

        def on_load(self) -> None:
            pass

    AnalysisResult = None


class Plugin(BasePlugin):
    name = "hostapp-fallback"
    tools = {"hello": {"description": "Say hello", "inputs": {"who": "string"}, "handler": "hello"}}

    def run_tool(self, tool_name: str, args: dict) -> Any:
        return getattr(self, self.tools[tool_name]["handler"])(args.get("who", "world"))

    def hello(self, who: str) -> dict:
        return {"hello": who, "standalone": AnalysisResult is None}
