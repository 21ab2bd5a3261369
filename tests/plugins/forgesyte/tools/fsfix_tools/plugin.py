"""A ForgeSyte plugin with a class-level `tools` dict whose handlers are method names."""

import asyncio
import os
import time
from typing import Any

from pydantic import BaseModel


class Description(BaseModel):
    size: int
    label: str | None = None
    magic: str


class Plugin:
    name = "fsfix-tools"
    version = "9.9.9"  # manifest.json's version wins
    description = "class description (manifest.json's wins)"

    tools = {
        "describe": {
            "description": "Describe an image (class text)",
            "input_schema": {"image_bytes": {"type": "bytes"}, "options": {"type": "object"}},
            "output_schema": Description,
            "handler": "describe_image",
        },
        "Shout-Text": {
            "description": "Upper-case a text",
            "inputs": {"text": "string"},
            "outputs": {"text": "string"},
            "handler": "shout",
        },
        "spin": {
            "description": "Works until interrupted, and swallows the interruption",
            "inputs": {"seconds": "float"},
            "handler": "spin",
        },
        "crash": {"description": "Ends its own process", "handler": "crash"},
    }

    def run_tool(self, tool_name: str, args: dict[str, Any]) -> Any:
        if tool_name not in self.tools:
            raise ValueError(f"Unknown tool: {tool_name}")
        handler = getattr(self, self.tools[tool_name]["handler"])
        if tool_name == "describe":
            return handler(args.get("image_bytes"), args.get("options"))
        return handler(**{k: v for k, v in args.items() if k != "options"})

    def describe_image(self, image_bytes: bytes, options: dict[str, Any] | None) -> Description:
        if not image_bytes:
            raise ValueError("no image")
        options = options or {}
        return Description(
            size=len(image_bytes), label=options.get("label"), magic=image_bytes[1:4].decode()
        )

    async def shout(self, text: str = "") -> dict[str, str]:
        await asyncio.sleep(0)
        if not text:
            raise ValueError("text must not be empty")
        return {"text": text.upper()}

    def spin(self, seconds: float = 30.0) -> dict[str, Any]:
        started = time.monotonic()
        try:
            while time.monotonic() - started < seconds:
                time.sleep(0.01)
        except Exception as exc:  # the way many plugins guard their work
            return {"swallowed": type(exc).__name__}
        return {"swallowed": None}

    def crash(self) -> None:
        os._exit(3)
