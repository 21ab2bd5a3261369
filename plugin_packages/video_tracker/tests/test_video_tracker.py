"""Tests for the video_tracker plugin.

The tracking core runs on any torch device, so it is tested on the CPU; the plugin itself needs
CUDA, and on a machine without a GPU it must refuse to start with a clear reason.
"""

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
    spec = importlib.util.spec_from_file_location("video_tracker_plugin", PLUGIN_DIR / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def mod():
    return load_plugin()


@pytest.fixture
def cpu_plugin(mod):
    """The plugin with its device forced to the CPU (bypasses the CUDA check in __init__)."""
    instance = mod.Plugin.__new__(mod.Plugin)
    instance.device = "cpu"
    return instance


def draw(squares: list[tuple[int, int, int]], shape=(60, 80)):
    """A black uint8 frame with white squares given as (x, y, side)."""
    import numpy as np

    pixels = np.zeros(shape, np.uint8)
    for x, y, side in squares:
        pixels[y : y + side, x : x + side] = 255
    return pixels


def png_b64(pixels) -> str:
    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return base64.b64encode(out.getvalue()).decode()


# A moves right 5 px a frame; B moves down 4 px a frame and is gone in frame 2; C appears in
# frame 1; a 1-pixel speck (below min_area) appears in frame 2 and is ignored.
FRAMES = [
    [(10, 10, 5), (60, 5, 4)],
    [(15, 10, 5), (60, 9, 4), (30, 40, 6)],
    [(20, 10, 5), (31, 42, 6), (0, 59, 1)],
]
# Within a frame, new tracks are numbered top to bottom, then left to right: B is above A.
EXPECTED = [
    {"id": 1, "positions": [{"frame": 0, "x": 61.5, "y": 6.5}, {"frame": 1, "x": 61.5, "y": 10.5}]},
    {
        "id": 2,
        "positions": [
            {"frame": 0, "x": 12.0, "y": 12.0},
            {"frame": 1, "x": 17.0, "y": 12.0},
            {"frame": 2, "x": 22.0, "y": 12.0},
        ],
    },
    {
        "id": 3,
        "positions": [{"frame": 1, "x": 32.5, "y": 42.5}, {"frame": 2, "x": 33.5, "y": 44.5}],
    },
]


def test_it_tracks_blobs_on_the_cpu(mod):
    frames = [draw(squares) for squares in FRAMES]
    tracks = mod.track_frames(frames, threshold=128, max_distance=20, min_area=4, device="cpu")
    assert tracks == EXPECTED


def test_it_starts_a_new_track_beyond_max_distance(mod):
    frames = [draw([(0, 0, 3)]), draw([(30, 0, 3)])]
    tracks = mod.track_frames(frames, threshold=128, max_distance=20, min_area=1, device="cpu")
    assert tracks == [
        {"id": 1, "positions": [{"frame": 0, "x": 1.0, "y": 1.0}]},
        {"id": 2, "positions": [{"frame": 1, "x": 31.0, "y": 1.0}]},
    ]


def test_it_labels_an_irregular_blob_as_one(mod):
    import torch

    # An L shape (9 pixels: x sum 19, y sum 35) and a diagonal pair (8-connected) are one blob each.
    mask = torch.zeros((10, 10), dtype=torch.bool)
    mask[1:6, 1] = True
    mask[5, 1:6] = True
    mask[8, 8] = mask[9, 9] = True
    centroids = mod.blob_centroids(mask, min_area=1).tolist()
    assert centroids == [[pytest.approx(19 / 9), pytest.approx(35 / 9)], [8.5, 8.5]]


def test_it_runs_the_tool_from_base64_frames(cpu_plugin):
    frames = [png_b64(draw(squares)) for squares in FRAMES]
    result = cpu_plugin.run("track", {"frames": frames, "max_distance": 20})
    assert result == {"tracks": EXPECTED, "frames": 3, "device": "cpu"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({}, "'frames' must be a non-empty list"),
        ({"frames": []}, "'frames' must be a non-empty list"),
        ({"frames": ["@@@"]}, "cannot decode frame 0"),
        ({"frames": [123]}, "frame 0 must be a base64 string"),
        ({"frames": ["AAAA"], "threshold": 255}, "'threshold' is out of range"),
        ({"frames": ["AAAA"], "max_distance": 0}, "'max_distance' is out of range"),
    ],
)
def test_it_rejects_bad_input(cpu_plugin, args, message):
    with pytest.raises(warden.InvalidInput, match=message):
        cpu_plugin.run("track", args)


def test_it_rejects_frames_of_different_sizes(cpu_plugin):
    frames = [png_b64(draw([])), png_b64(draw([], shape=(30, 40)))]
    with pytest.raises(warden.InvalidInput, match="frame 1 is 40x30, frame 0 is 80x60"):
        cpu_plugin.run("track", {"frames": frames})


def test_it_rejects_an_unknown_tool(cpu_plugin):
    with pytest.raises(warden.InvalidInput, match="unknown tool"):
        cpu_plugin.run("follow", {})


def test_it_refuses_to_start_without_cuda(mod):
    import torch

    if torch.cuda.is_available():
        plugin = mod.Plugin()
        plugin.validate()
        assert plugin.device == "cuda"
    else:
        with pytest.raises(RuntimeError, match=r"needs a CUDA GPU, and torch .* sees none"):
            mod.Plugin()
