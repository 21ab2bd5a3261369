"""Face detector: frontal faces with OpenCV's Haar cascade."""

from __future__ import annotations

from typing import Any

import warden

CASCADE_FILE = "haarcascade_frontalface_default.xml"
INSTALL_HINT = "pip install 'opencv-python-headless<5'"
DEFAULTS = {"scale_factor": 1.1, "min_neighbors": 5, "min_size": 30}


class Plugin:
    """Loads the cascade once (in __init__) and runs `detectMultiScale` per request."""

    def __init__(self) -> None:
        """Load the Haar cascade shipped in OpenCV's package folder.

        Raises RuntimeError if this OpenCV build has no CascadeClassifier or no cascade file
        (OpenCV 5 moved both out of the main wheels).
        """
        import cv2

        if not hasattr(cv2, "CascadeClassifier"):
            raise RuntimeError(f"OpenCV {cv2.__version__} has no CascadeClassifier; {INSTALL_HINT}")
        path = cv2.data.haarcascades + CASCADE_FILE
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise RuntimeError(f"cannot load the Haar cascade {path}; {INSTALL_HINT}")
        self._cv2 = cv2

    def validate(self) -> None:
        """Raise RuntimeError if the cascade did not load (e.g. the file was replaced)."""
        if self._cascade.empty():
            raise RuntimeError("the Haar cascade is not loaded")

    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `detect_faces`; raise warden.InvalidInput on an unknown tool or bad input.

        Returns {"faces": [{x, y, width, height}], "count": n, "image": {width, height}}.
        """
        if tool != "detect_faces":
            raise warden.InvalidInput(f"unknown tool {tool!r}; this plugin has 'detect_faces'")
        opts = {**DEFAULTS, **{k: args[k] for k in DEFAULTS if k in args}}
        _check_number(opts["scale_factor"], "scale_factor", 1.0, 2.0, lower_inclusive=False)
        _check_number(opts["min_neighbors"], "min_neighbors", 0, 50, integer=True)
        _check_number(opts["min_size"], "min_size", 1, 10_000, integer=True)

        gray = self._decode_gray(args.get("image_bytes"))
        # Equalising the histogram makes the cascade far less sensitive to exposure.
        gray = self._cv2.equalizeHist(gray)
        found = self._cascade.detectMultiScale(
            gray,
            scaleFactor=float(opts["scale_factor"]),
            minNeighbors=int(opts["min_neighbors"]),
            minSize=(int(opts["min_size"]), int(opts["min_size"])),
        )
        faces = sorted(
            ({"x": int(x), "y": int(y), "width": int(w), "height": int(h)} for x, y, w, h in found),
            key=lambda f: (f["y"], f["x"]),  # a stable order makes results comparable
        )
        height, width = gray.shape[:2]
        return {"faces": faces, "count": len(faces), "image": {"width": width, "height": height}}

    def _decode_gray(self, data: Any) -> Any:
        """Return the image as a grayscale uint8 array; raise InvalidInput if it cannot be read."""
        import numpy as np

        if not isinstance(data, bytes | bytearray) or not data:
            raise warden.InvalidInput("send a PNG or JPEG image file")
        image = self._cv2.imdecode(np.frombuffer(data, np.uint8), self._cv2.IMREAD_GRAYSCALE)
        if image is None:
            raise warden.InvalidInput("cannot decode the image (send a PNG or JPEG file)")
        return image


def _check_number(
    value: Any,
    name: str,
    low: float,
    high: float,
    *,
    integer: bool = False,
    lower_inclusive: bool = True,
) -> None:
    """Raise InvalidInput unless `value` is a number (an int if `integer`) within [low, high]."""
    kinds = int if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise warden.InvalidInput(f"'{name}' must be {'an integer' if integer else 'a number'}")
    if value > high or value < low or (value == low and not lower_inclusive):
        bracket = "[" if lower_inclusive else "("
        raise warden.InvalidInput(f"'{name}' must be in {bracket}{low:g}, {high:g}]")
