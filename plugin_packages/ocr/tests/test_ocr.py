"""Tests for the ocr plugin: render text with PIL, recognise it with the real Tesseract."""

from __future__ import annotations

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
    spec = importlib.util.spec_from_file_location("ocr_plugin", PLUGIN_DIR / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def plugin():
    instance = load_plugin().Plugin()
    instance.validate()
    return instance


def render(lines: list[str], fmt: str = "PNG", size: int = 64) -> bytes:
    """Black text, one entry of `lines` per line, on a white canvas; return the encoded bytes."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=size)
    image = Image.new(
        "RGB", (60 + size * max(len(line) for line in lines), 40 + 2 * size * len(lines)), "white"
    )
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((30, 20 + 2 * size * n), line, fill="black", font=font)
    out = io.BytesIO()
    image.save(out, fmt)
    return out.getvalue()


def test_it_reads_a_rendered_word(plugin):
    result = plugin.run(
        "extract_text", {"image_bytes": render(["WARDEN"]), "mime_type": "image/png"}
    )
    assert result["text"] == "WARDEN"
    assert result["language"] == "eng"
    assert [w["text"] for w in result["words"]] == ["WARDEN"]
    word = result["words"][0]
    assert 50 <= word["confidence"] <= 100
    box = word["box"]
    # The word starts at x=30 and is drawn in the top 64+ pixels of the canvas.
    assert 25 <= box["x"] <= 40 and 15 <= box["y"] <= 40
    assert 150 <= box["width"] <= 300 and 30 <= box["height"] <= 70


def test_it_reads_two_lines_from_a_jpeg(plugin):
    result = plugin.run(
        "extract_text",
        {"image_bytes": render(["HELLO WORLD", "PLUGIN HOST"], "JPEG"), "mime_type": "image/jpeg"},
    )
    assert result["text"] == "HELLO WORLD\nPLUGIN HOST"
    assert [w["text"] for w in result["words"]] == ["HELLO", "WORLD", "PLUGIN", "HOST"]


def test_it_drops_words_below_min_confidence(plugin):
    result = plugin.run("extract_text", {"image_bytes": render(["WARDEN"]), "min_confidence": 99.5})
    assert result == {"text": "", "words": [], "language": "eng"}


def test_it_returns_nothing_for_a_blank_image(plugin):
    from PIL import Image

    out = io.BytesIO()
    Image.new("L", (200, 100), 255).save(out, "PNG")
    assert plugin.run("extract_text", {"image_bytes": out.getvalue()}) == {
        "text": "",
        "words": [],
        "language": "eng",
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"image_bytes": b"not an image"}, "cannot decode"),
        ({}, "send a PNG or JPEG"),
        ({"image_bytes": b"x", "lang": "--psm 0"}, "'lang' must look like"),
        ({"image_bytes": b"x", "lang": "zzz"}, "not installed: zzz"),
        ({"image_bytes": b"x", "min_confidence": "high"}, "'min_confidence' must be a number"),
    ],
)
def test_it_rejects_bad_input(plugin, args, message):
    with pytest.raises(warden.InvalidInput, match=message):
        plugin.run("extract_text", args)


def test_it_rejects_an_unknown_tool(plugin):
    with pytest.raises(warden.InvalidInput, match="unknown tool"):
        plugin.run("read", {})
