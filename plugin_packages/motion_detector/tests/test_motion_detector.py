"""Tests for the motion_detector plugin with generated frames (a square that moves)."""

from __future__ import annotations

import base64
import importlib.util
import io
import sys
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for `import warden`

import warden  # noqa: E402


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "motion_detector_plugin", PLUGIN_DIR / "plugin.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin():
    return load_plugin().Plugin()


def frame(x: int, y: int, size: int = 10, shape=(80, 100), fmt: str = "PNG") -> bytes:
    """A black frame (height, width = shape) with a white size x size square at (x, y)."""
    import numpy as np
    from PIL import Image

    pixels = np.zeros(shape, np.uint8)
    pixels[y : y + size, x : x + size] = 255
    out = io.BytesIO()
    Image.fromarray(pixels).convert("RGB").save(out, fmt)
    return out.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_it_boxes_a_moved_square(plugin):
    result = plugin.run(
        "detect_motion",
        {
            "image_bytes": frame(30, 25),
            "mime_type": "image/png",
            "previous_image": b64(frame(10, 20)),
        },
    )
    # Old square x 10..19, y 20..29; new x 30..39, y 25..34: 200 of 8000 pixels changed.
    assert result == {
        "motion": True,
        "changed_fraction": 0.025,
        "bbox": {"x": 10, "y": 20, "width": 30, "height": 15},
        "device": "cpu",
    }


def test_it_takes_both_frames_as_base64(plugin):
    result = plugin.run(
        "detect_motion",
        {"image": "data:image/png;base64," + b64(frame(5, 5)), "previous_image": b64(frame(0, 0))},
    )
    # Overlap x 5..9, y 5..9 (25 px) is unchanged: 2 * (100 - 25) = 150 changed pixels.
    assert result == {
        "motion": True,
        "changed_fraction": 0.01875,
        "bbox": {"x": 0, "y": 0, "width": 15, "height": 15},
        "device": "cpu",
    }


def test_it_sees_no_motion_in_identical_frames(plugin):
    same = frame(40, 40)
    result = plugin.run("detect_motion", {"image_bytes": same, "previous_image": b64(same)})
    assert result == {"motion": False, "changed_fraction": 0.0, "bbox": None, "device": "cpu"}


def test_it_ignores_changes_below_min_area_fraction(plugin):
    result = plugin.run(
        "detect_motion",
        {
            "image_bytes": frame(30, 25),
            "previous_image": b64(frame(10, 20)),
            "min_area_fraction": 0.05,
        },
    )
    assert result == {"motion": False, "changed_fraction": 0.025, "bbox": None, "device": "cpu"}


def test_it_ignores_changes_below_threshold(plugin):
    import numpy as np
    from PIL import Image

    dim = io.BytesIO()
    Image.fromarray(np.full((80, 100), 20, np.uint8)).save(dim, "PNG")  # +20 gray everywhere
    black = frame(0, 0, size=0)
    assert (
        plugin.run("detect_motion", {"image_bytes": dim.getvalue(), "previous_image": b64(black)})[
            "motion"
        ]
        is False
    )
    assert plugin.run(
        "detect_motion",
        {"image_bytes": dim.getvalue(), "previous_image": b64(black), "threshold": 19},
    ) == {
        "motion": True,
        "changed_fraction": 1.0,
        "bbox": {"x": 0, "y": 0, "width": 100, "height": 80},
        "device": "cpu",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"previous_image": b64(b"x")}, "send the current frame"),
        ({"image": "AAAA"}, "'previous_image' .* is required"),
        ({"image_bytes": b"png?", "previous_image": "not base64!"}, "not valid base64"),
        ({"image_bytes": b"png?", "previous_image": "AAAA"}, "cannot decode the attached image"),
        (
            {"image_bytes": "SIZE", "previous_image": "SMALL"},
            "frames differ in size: 100x80 vs 50x40",
        ),
        ({"image": "AAAA", "previous_image": "AAAA", "threshold": 256}, "'threshold' must be"),
        (
            {"image": "AAAA", "previous_image": "AAAA", "min_area_fraction": -0.1},
            "'min_area_fraction'",
        ),
    ],
)
def test_it_rejects_bad_input(plugin, args, message):
    if args.get("image_bytes") == "SIZE":
        args = {"image_bytes": frame(0, 0), "previous_image": b64(frame(0, 0, shape=(40, 50)))}
    with pytest.raises(warden.InvalidInput, match=message):
        plugin.run("detect_motion", args)


def test_it_rejects_an_unknown_tool(plugin):
    with pytest.raises(warden.InvalidInput, match="unknown tool"):
        plugin.run("diff", {})
