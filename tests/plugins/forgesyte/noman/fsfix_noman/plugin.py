"""A ForgeSyte plugin without manifest.json: its tools exist only once it is instantiated."""

import base64
import os

from pydantic import BaseModel


class ReadOutput(BaseModel):
    text: str
    length: int


class Plugin:
    name = "noman"

    def __init__(self) -> None:
        self.loaded = False
        self.tools = {
            "read_b64": self.read_b64,
            "count": {
                "description": "Count characters",
                "input_schema": {
                    "type": "object",
                    "properties": {"text": {"type": "string"}},
                    "required": ["text"],
                },
                "output_schema": {"type": "object", "required": ["count"]},
                "handler": self.count,
            },
        }

    def on_load(self) -> None:
        if os.environ.get("FSFIX_NOMAN_BROKEN"):
            raise RuntimeError("the model is gone")
        self.loaded = True

    def validate(self) -> bool:
        return self.loaded

    def run_tool(self, tool_name, args):
        tool = self.tools[tool_name]
        handler = tool["handler"] if isinstance(tool, dict) else tool
        return handler(**args)

    def read_b64(self, image_base64: str, prefix: str = "read") -> ReadOutput:
        """Decode base64 image text and report its length."""
        data = base64.b64decode(image_base64)
        return ReadOutput(text=f"{prefix}:{data[1:4].decode()}", length=len(data))

    def count(self, text: str) -> dict:
        return {"count": len(text)}
