"""OCR: text, word boxes and confidences from an image, with Tesseract (via pytesseract)."""

from __future__ import annotations

import io
import re
from typing import Any

import warden

DEFAULT_LANG = "eng"
LANG_RE = re.compile(r"^[A-Za-z_]+(\+[A-Za-z_]+)*$")  # "eng", "eng+deu": never a path or option
MAX_PIXELS = 50_000_000  # refuse absurd images before Tesseract spends minutes on them


class Plugin:
    """Runs Tesseract's `image_to_data` and turns its table into words and lines."""

    def __init__(self) -> None:
        """Import pytesseract lazily (here, not at module import) and remember it."""
        import pytesseract

        self._tess = pytesseract

    def validate(self) -> None:
        """Raise RuntimeError if the `tesseract` program cannot be run."""
        try:
            self._tess.get_tesseract_version()
        except Exception as exc:  # TesseractNotFoundError, OSError, a broken install...
            raise RuntimeError(
                f"tesseract is not usable ({exc}); install it: apt-get install tesseract-ocr"
            ) from exc

    def run(self, tool: str, args: dict[str, Any]) -> dict[str, Any]:
        """Run `extract_text`; raise warden.InvalidInput on an unknown tool or bad input."""
        if tool != "extract_text":
            raise warden.InvalidInput(f"unknown tool {tool!r}; this plugin has 'extract_text'")
        lang = self._lang(args.get("lang", DEFAULT_LANG))
        min_conf = args.get("min_confidence", 0)
        if isinstance(min_conf, bool) or not isinstance(min_conf, int | float):
            raise warden.InvalidInput("'min_confidence' must be a number between 0 and 100")
        image = _decode_image(args.get("image_bytes"))
        data = self._tess.image_to_data(image, lang=lang, output_type=self._tess.Output.DICT)
        return {**_words_and_text(data, float(min_conf)), "language": lang}

    def _lang(self, lang: Any) -> str:
        """Return `lang` if well formed and installed; raise InvalidInput naming what is."""
        if not isinstance(lang, str) or not LANG_RE.match(lang):
            raise warden.InvalidInput("'lang' must look like 'eng' or 'eng+deu'")
        installed = set(self._tess.get_languages(config=""))
        missing = [part for part in lang.split("+") if part not in installed]
        if missing:
            raise warden.InvalidInput(
                f"language(s) not installed: {', '.join(missing)}; "
                f"installed: {', '.join(sorted(installed)) or 'none'}"
            )
        return lang


def _decode_image(data: Any) -> Any:
    """Return an RGB PIL image from PNG/JPEG bytes; raise InvalidInput if missing or undecodable."""
    from PIL import Image, UnidentifiedImageError

    if not isinstance(data, bytes | bytearray) or not data:
        raise warden.InvalidInput("send a PNG or JPEG image file")
    try:
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > MAX_PIXELS:
            raise warden.InvalidInput(f"image too large: {image.width}x{image.height} pixels")
        return image.convert("RGB")  # palette/alpha/16-bit modes confuse Tesseract
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise warden.InvalidInput(f"cannot decode the image: {exc}") from exc


def _words_and_text(data: dict[str, list[Any]], min_conf: float) -> dict[str, Any]:
    """Turn image_to_data's columns into {"text", "words"}, keeping words with conf >= min_conf.

    Rows with confidence -1 are pages/blocks/lines, not words. The text joins kept words with
    spaces and Tesseract's lines with newlines.
    """
    words: list[dict[str, Any]] = []
    lines: dict[tuple[int, int, int], list[str]] = {}
    for i, raw in enumerate(data["text"]):
        text, conf = str(raw).strip(), float(data["conf"][i])
        if not text or conf < 0 or conf < min_conf:
            continue
        words.append(
            {
                "text": text,
                "confidence": round(conf, 2),
                "box": {
                    key: int(data[src][i])
                    for key, src in (
                        ("x", "left"),
                        ("y", "top"),
                        ("width", "width"),
                        ("height", "height"),
                    )
                },
            }
        )
        line = (int(data["block_num"][i]), int(data["par_num"][i]), int(data["line_num"][i]))
        lines.setdefault(line, []).append(text)
    return {"text": "\n".join(" ".join(parts) for parts in lines.values()), "words": words}
