"""Video tracker: follow bright blobs across frames with torch, on a CUDA GPU.

Per frame, blobs are the connected bright regions (labelled by iterated 3x3 max-pooling, which
runs well on a GPU); each blob's centroid is then matched greedily to the nearest centroid of the
previous frame. The core, `track_frames`, runs on any torch device; the plugin insists on CUDA
because that is what it is deployed for (and so it serves as Warden's GPU-only example).
"""

from __future__ import annotations

import base64
import binascii
import io
from typing import Any

import warden

DEFAULTS = {"threshold": 128, "max_distance": 50.0, "min_area": 4}
MAX_FRAMES = 500
MAX_PIXELS = 1 << 24  # labels are float32 for max_pool2d: exact integers only up to 2**24


class Plugin:
    """Tracks blobs on the CUDA device; refuses to start without one."""

    def __init__(self) -> None:
        """Raise RuntimeError, saying why, when torch has no usable CUDA device."""
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError(
                f"video_tracker needs a CUDA GPU, and torch {torch.__version__} sees none "
                f"(torch CUDA build: {torch.version.cuda or 'none'})"
            )
        self.device = "cuda"

    def validate(self) -> None:
        """Raise RuntimeError if a small tensor cannot be computed on the GPU."""
        import torch

        if int(torch.ones(4, device=self.device).sum().item()) != 4:
            raise RuntimeError("the CUDA device returned a wrong result")

    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `track`; raise warden.InvalidInput on an unknown tool or bad input.

        Returns {"tracks": [{"id", "positions": [{"frame", "x", "y"}]}], "frames": n, "device"}.
        """
        if tool != "track":
            raise warden.InvalidInput(f"unknown tool {tool!r}; this plugin has 'track'")
        opts = {**DEFAULTS, **{k: args[k] for k in DEFAULTS if k in args}}
        _check(opts["threshold"], "threshold", int, 0, 254)
        _check(opts["max_distance"], "max_distance", (int, float), 1e-9, float("inf"))
        _check(opts["min_area"], "min_area", int, 1, MAX_PIXELS)
        frames = decode_frames(args.get("frames"))
        tracks = track_frames(frames, device=self.device, **opts)
        return {"tracks": tracks, "frames": len(frames), "device": self.device}


def track_frames(
    frames: list[Any], *, threshold: int, max_distance: float, min_area: int, device: str
) -> list[dict[str, Any]]:
    """Track blobs through `frames` (2-D uint8 arrays of one size) on torch `device`.

    Returns the tracks in order of first appearance: [{"id": 1.., "positions": [{"frame", "x",
    "y"}]}], x/y being blob centroids rounded to 2 decimals. A track ends when its blob has no
    match in the next frame; a blob without a match starts a new track.
    """
    import torch

    tracks: list[dict[str, Any]] = []
    active: list[int] = []  # index in `tracks` of each centroid in `previous`
    previous = torch.empty((0, 2), device=device)
    for index, pixels in enumerate(frames):
        gray = torch.from_numpy(pixels).to(device)
        current = blob_centroids(gray > threshold, min_area)
        matched = _match(previous, current, max_distance)
        next_active = []
        for j, (x, y) in enumerate(current.tolist()):
            i = matched.get(j)
            if i is None:
                tracks.append({"id": len(tracks) + 1, "positions": []})
                slot = len(tracks) - 1
            else:
                slot = active[i]
            tracks[slot]["positions"].append({"frame": index, "x": round(x, 2), "y": round(y, 2)})
            next_active.append(slot)
        previous, active = current, next_active
    return tracks


def blob_centroids(mask: Any, min_area: int) -> Any:
    """Return an (n, 2) float tensor of (x, y) centroids of the 8-connected blobs in `mask`.

    Blobs smaller than `min_area` pixels are dropped; the rest come sorted by centroid, top to
    bottom, then left to right, so that results are deterministic.
    """
    import torch
    import torch.nn.functional as F

    height, width = mask.shape
    ids = torch.arange(1, height * width + 1, device=mask.device, dtype=torch.float32)
    labels = torch.where(mask.flatten(), ids, torch.zeros_like(ids)).view(1, 1, height, width)
    # Every pixel takes the largest label among its neighbours until nothing changes: each
    # blob ends up labelled with its largest pixel id. Background stays 0.
    while True:
        spread = F.max_pool2d(labels, kernel_size=3, stride=1, padding=1) * (labels > 0)
        if torch.equal(spread, labels):
            break
        labels = spread
    flat = labels.flatten().long()
    keep = flat > 0
    _, blob = torch.unique(flat[keep], return_inverse=True)
    count = int(blob.max().item()) + 1 if blob.numel() else 0
    ys, xs = torch.nonzero(keep.view(height, width), as_tuple=True)
    zeros = torch.zeros(count, device=mask.device)
    area = zeros.index_add(0, blob, torch.ones_like(xs, dtype=torch.float32))
    sum_x = zeros.index_add(0, blob, xs.float())
    sum_y = zeros.index_add(0, blob, ys.float())
    big = area >= min_area
    centroids = torch.stack([sum_x[big] / area[big], sum_y[big] / area[big]], dim=1)
    order = torch.argsort(centroids[:, 1] * (width + 1) + centroids[:, 0])  # top-left first
    return centroids[order]


def _match(previous: Any, current: Any, max_distance: float) -> dict[int, int]:
    """Greedy nearest pairs: {index in current: index in previous}, each within max_distance."""
    import torch

    if len(previous) == 0 or len(current) == 0:
        return {}
    distance = torch.cdist(current, previous)  # (current, previous)
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for flat in torch.argsort(distance.flatten()).tolist():
        j, i = divmod(flat, distance.shape[1])
        if distance[j, i] > max_distance:
            break  # sorted: every later pair is farther still
        if j not in pairs and i not in used:
            pairs[j] = i
            used.add(i)
    return pairs


def decode_frames(frames: Any) -> list[Any]:
    """Decode base64 PNG/JPEG frames into 2-D uint8 arrays of one size; InvalidInput otherwise."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    if not isinstance(frames, list) or not frames:
        raise warden.InvalidInput("'frames' must be a non-empty list of base64 images")
    if len(frames) > MAX_FRAMES:
        raise warden.InvalidInput(f"at most {MAX_FRAMES} frames per request")
    decoded = []
    for n, text in enumerate(frames):
        if not isinstance(text, str):
            raise warden.InvalidInput(f"frame {n} must be a base64 string")
        try:
            image = Image.open(io.BytesIO(base64.b64decode(text, validate=True)))
            if image.width * image.height > MAX_PIXELS:
                raise warden.InvalidInput(f"frame {n} is too large: {image.width}x{image.height}")
            pixels = np.array(image.convert("L"), dtype=np.uint8)
        except (
            binascii.Error,
            UnidentifiedImageError,
            Image.DecompressionBombError,
            OSError,
            ValueError,
        ) as exc:
            raise warden.InvalidInput(f"cannot decode frame {n}: {exc}") from exc
        if decoded and pixels.shape != decoded[0].shape:
            raise warden.InvalidInput(
                f"frame {n} is {pixels.shape[1]}x{pixels.shape[0]}, "
                f"frame 0 is {decoded[0].shape[1]}x{decoded[0].shape[0]}"
            )
        decoded.append(pixels)
    return decoded


def _check(value: Any, name: str, kinds: Any, low: float, high: float) -> None:
    """Raise InvalidInput unless `value` is of `kinds` (never bool) and within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, kinds) or not low <= value <= high:
        raise warden.InvalidInput(f"'{name}' is out of range or of the wrong type: {value!r}")
