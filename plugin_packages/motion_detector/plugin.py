"""Motion detector: torch frame differencing between two images."""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import warden

DEFAULT_THRESHOLD = 25
DEFAULT_MIN_AREA_FRACTION = 0.001
MAX_PIXELS = 40_000_000  # per frame; keeps two float tensors well inside the memory limit


class Plugin:
    """Compares two frames on the best torch device available (CUDA, else CPU)."""

    def __init__(self) -> None:
        """Pick the device once: the GPU when torch sees one, else the CPU."""
        import torch

        self.device = "cuda" if torch.cuda.is_available() else "cpu"

    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `detect_motion`; raise warden.InvalidInput on an unknown tool or bad input.

        Returns {"motion": bool, "changed_fraction": float, "bbox": {x, y, width, height} | None,
        "device": str}.
        """
        if tool != "detect_motion":
            raise warden.InvalidInput(f"unknown tool {tool!r}; this plugin has 'detect_motion'")
        threshold = args.get("threshold", DEFAULT_THRESHOLD)
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, int)
            or not 0 <= threshold <= 255
        ):
            raise warden.InvalidInput("'threshold' must be an integer from 0 to 255")
        min_area = args.get("min_area_fraction", DEFAULT_MIN_AREA_FRACTION)
        if (
            isinstance(min_area, bool)
            or not isinstance(min_area, int | float)
            or not 0 <= min_area <= 1
        ):
            raise warden.InvalidInput("'min_area_fraction' must be a number from 0 to 1")

        if "previous_image" not in args:
            raise warden.InvalidInput("'previous_image' (base64) is required")
        previous_bytes = b64(args["previous_image"], "previous_image")
        if args.get("image_bytes"):
            current = decode_gray(args["image_bytes"], "the attached image")
        elif "image" in args:
            current = decode_gray(b64(args["image"], "image"), "'image'")
        else:
            raise warden.InvalidInput("send the current frame as a file or as base64 in 'image'")
        previous = decode_gray(previous_bytes, "'previous_image'")
        if current.shape != previous.shape:
            raise warden.InvalidInput(
                f"the frames differ in size: {current.shape[1]}x{current.shape[0]} "
                f"vs {previous.shape[1]}x{previous.shape[0]}"
            )
        return {
            **frame_difference(previous, current, threshold, min_area, self.device),
            "device": self.device,
        }


def frame_difference(
    previous: Any, current: Any, threshold: int, min_area_fraction: float, device: str
) -> dict[str, Any]:
    """Compare two equal-sized uint8 grayscale arrays on `device`.

    Returns {"motion", "changed_fraction", "bbox"}; bbox (of all changed pixels) is None
    when there is no motion.
    """
    import torch

    a = torch.from_numpy(previous).to(device=device, dtype=torch.int16)
    b = torch.from_numpy(current).to(device=device, dtype=torch.int16)
    changed = (b - a).abs() > threshold  # int16: uint8 subtraction would wrap around
    fraction = changed.float().mean().item()
    motion = bool(changed.any().item()) and fraction >= min_area_fraction
    bbox = None
    if motion:
        rows = torch.nonzero(changed.any(dim=1)).flatten()
        cols = torch.nonzero(changed.any(dim=0)).flatten()
        y0, y1, x0, x1 = (int(v) for v in (rows[0], rows[-1], cols[0], cols[-1]))
        bbox = {"x": x0, "y": y0, "width": x1 - x0 + 1, "height": y1 - y0 + 1}
    return {"motion": motion, "changed_fraction": round(fraction, 6), "bbox": bbox}


def b64(value: Any, name: str) -> bytes:
    """Decode base64 (optionally a `data:...;base64,` URL); raise InvalidInput naming the arg."""
    if not isinstance(value, str) or not value:
        raise warden.InvalidInput(f"'{name}' must be a non-empty base64 string")
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise warden.InvalidInput(f"'{name}' is not valid base64: {exc}") from exc


def decode_gray(data: bytes, what: str) -> Any:
    """Return image bytes as a 2-D uint8 numpy array (grayscale); InvalidInput if unreadable."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise warden.InvalidInput(f"{what} is too large: {image.width}x{image.height}")
        return np.array(image.convert("L"), dtype=np.uint8)  # a writable copy, as torch wants
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise warden.InvalidInput(f"cannot decode {what}: {exc}") from exc
