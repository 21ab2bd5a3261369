"""Echo: the minimal Warden plugin. Copy this folder to start a new one.

A plugin is a folder with `manifest.json` (name, tools, schemas, limits) and the module named
by its `entrypoint` ("plugin:Plugin" means class `Plugin` in `plugin.py`). Warden:

1. checks the manifest's dependencies and models, then imports this module and calls
   `Plugin()` (no arguments) and `validate()` once per worker process;
2. validates a request's JSON args against the tool's `input_schema` (the attached file,
   `image_bytes`/`mime_type`, is added to `args` after that check);
3. calls `run(tool, args)` and validates the returned dict against the tool's `output_schema`.

Keep heavy imports (torch, cv2, ...) inside methods so that listing plugins stays cheap.
"""

from __future__ import annotations

import time
from typing import Any

import warden  # tiny, dependency-free: only `warden.InvalidInput`

MAX_SLEEP_S = 30.0  # same bound as the manifest's input_schema; checked here too for direct callers


class Plugin:
    """Echoes its arguments (`echo`) or sleeps (`sleep`)."""

    def __init__(self) -> None:
        """Takes no arguments. A real plugin loads its models here (once per worker)."""

    def validate(self) -> None:
        """Raise if the plugin cannot work on this machine. Echo always can."""

    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `tool` with `args` and return a JSON-serialisable dict.

        Raises warden.InvalidInput for an unknown tool or bad arguments (the client's fault,
        reported as a 400); any other exception is reported as a plugin error.
        """
        if tool == "echo":
            return self._echo(args)
        if tool == "sleep":
            return self._sleep(args)
        raise warden.InvalidInput(f"unknown tool {tool!r}; this plugin has 'echo' and 'sleep'")

    def _echo(self, args: dict[str, Any]) -> dict[str, Any]:
        """Return {"args": args without the file bytes, "image_size": byte count or None}."""
        image = args.get("image_bytes")
        # Bytes are not JSON-serialisable, so the file is reported by its size only.
        shown = {key: value for key, value in args.items() if key != "image_bytes"}
        return {"args": shown, "image_size": len(image) if image is not None else None}

    def _sleep(self, args: dict[str, Any]) -> dict[str, Any]:
        """Sleep `seconds` (0..30) and return {"slept_s": seconds}; InvalidInput otherwise."""
        seconds = args.get("seconds")
        # bool is a subclass of int: reject it explicitly.
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise warden.InvalidInput("'seconds' must be a number")
        if not 0 <= seconds <= MAX_SLEEP_S:
            raise warden.InvalidInput(f"'seconds' must be between 0 and {MAX_SLEEP_S:g}")
        time.sleep(seconds)
        return {"slept_s": seconds}
