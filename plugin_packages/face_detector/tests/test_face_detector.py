"""Tests for the face_detector plugin: a drawn cartoon face, a blank image, bad input."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType, SimpleNamespace

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for `import warden`

import warden  # noqa: E402


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("face_detector_plugin", PLUGIN_DIR / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cascade_available() -> bool:
    cv2 = pytest.importorskip("cv2")
    return hasattr(cv2, "CascadeClassifier")


needs_cascade = pytest.mark.skipif(
    not cascade_available(),
    reason="this OpenCV has no CascadeClassifier (OpenCV 5); install opencv-python-headless<5",
)


@pytest.fixture(scope="module")
def plugin():
    instance = load_plugin().Plugin()
    instance.validate()
    return instance


def encode(image, ext: str = ".png") -> bytes:
    import cv2

    ok, buf = cv2.imencode(ext, image)
    assert ok
    return buf.tobytes()


def cartoon_face(size: int = 400, r: int = 60):
    """A gray canvas with a light oval face, dark eyes and brows, a nose and a mouth."""
    import cv2
    import numpy as np

    img = np.full((size, size), 90, np.uint8)
    cx = cy = size // 2
    cv2.ellipse(img, (cx, cy), (r, int(r * 1.25)), 0, 0, 360, 200, -1)
    for dx in (-(r // 3), r // 3):
        cv2.ellipse(img, (cx + dx, cy - r // 4), (r // 6, r // 10), 0, 0, 360, 30, -1)
        brow_y = cy - int(r / 2.5)
        cv2.line(img, (cx + dx - r // 5, brow_y), (cx + dx + r // 5, brow_y), 40, max(2, r // 12))
    cv2.line(img, (cx, cy - r // 8), (cx, cy + r // 4), 120, max(2, r // 15))
    cv2.ellipse(img, (cx, cy + r // 2), (r // 3, r // 8), 0, 0, 360, 60, -1)
    return cv2.GaussianBlur(img, (5, 5), 0)


@needs_cascade
def test_it_finds_a_drawn_face(plugin):
    result = plugin.run(
        "detect_faces", {"image_bytes": encode(cartoon_face()), "mime_type": "image/png"}
    )
    assert result == {
        "faces": [{"x": 137, "y": 133, "width": 126, "height": 126}],
        "count": 1,
        "image": {"width": 400, "height": 400},
    }


@needs_cascade
def test_it_respects_min_size(plugin):
    result = plugin.run("detect_faces", {"image_bytes": encode(cartoon_face()), "min_size": 200})
    assert result == {"faces": [], "count": 0, "image": {"width": 400, "height": 400}}


@needs_cascade
def test_it_finds_no_face_in_a_blank_jpeg(plugin):
    import numpy as np

    blank = np.full((120, 160, 3), 255, np.uint8)
    result = plugin.run("detect_faces", {"image_bytes": encode(blank, ".jpg")})
    assert result == {"faces": [], "count": 0, "image": {"width": 160, "height": 120}}


@needs_cascade
@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image_bytes": b"\x89PNG\r\n\x1a\n garbage"}, "cannot decode the image"),
        ({}, "send a PNG or JPEG"),
        ({"image_bytes": b"x", "scale_factor": 1.0}, r"'scale_factor' must be in \(1, 2\]"),
        ({"image_bytes": b"x", "min_neighbors": 2.5}, "'min_neighbors' must be an integer"),
        ({"image_bytes": b"x", "min_size": 0}, r"'min_size' must be in \[1, 10000\]"),
    ],
)
def test_it_rejects_bad_input(plugin, args, message):
    with pytest.raises(warden.InvalidInput, match=message):
        plugin.run("detect_faces", args)


@needs_cascade
def test_it_rejects_an_unknown_tool(plugin):
    with pytest.raises(warden.InvalidInput, match="unknown tool"):
        plugin.run("detect", {})


def test_it_explains_an_opencv_without_cascades(monkeypatch):
    # OpenCV 5 wheels have neither CascadeClassifier nor cv2/data/*.xml: the error says what to do.
    monkeypatch.setitem(sys.modules, "cv2", SimpleNamespace(__version__="5.0.0"))
    with pytest.raises(RuntimeError, match=r"OpenCV 5\.0\.0 has no CascadeClassifier; pip install"):
        load_plugin().Plugin()
