"""OCR for ForgeSyte: the text, words and boxes Tesseract finds in an image."""

import io
import logging
from typing import Any

from .schemas import OCRInput, OCROutput, TextBlock

try:  # inside the ForgeSyte server
    from app.plugins.base import BasePlugin
except ImportError:  # standalone: tests, other hosts
    BasePlugin = object

logger = logging.getLogger(__name__)


class Plugin(BasePlugin):
    """ForgeSyte plugin contract: `name`, a `tools` dict with handler names, `run_tool`."""

    name = "ocr"
    version = "1.0.0"
    description = "Extract text from images with Tesseract"

    tools = {
        "analyze": {
            "description": "Extract text and word boxes from an image",
            "input_schema": OCRInput.model_json_schema(),
            "output_schema": OCROutput.model_json_schema(),
            "handler": "analyze",
        }
    }

    def __init__(self) -> None:
        self._tess: Any = None

    def on_load(self) -> None:
        """Import pytesseract once the plugin is loaded (not at module import)."""
        import pytesseract

        self._tess = pytesseract

    def validate(self) -> None:
        """Raise if the tesseract program cannot run."""
        try:
            version = self._tess.get_tesseract_version()
        except Exception as exc:
            raise RuntimeError(
                f"tesseract is not usable ({exc}); install it: apt-get install tesseract-ocr"
            ) from exc
        logger.info("tesseract %s", version)

    def run_tool(self, tool_name: str, args: dict[str, Any]) -> OCROutput:
        """Run a tool by name; ValueError for an unknown tool or bad input."""
        if tool_name != "analyze":
            raise ValueError(f"Unknown tool: {tool_name}")
        return self.analyze(args.get("image_bytes"), args.get("options"))

    def analyze(
        self, image_bytes: bytes | None, options: dict[str, Any] | None = None
    ) -> OCROutput:
        """Recognise the text in `image_bytes`; options: 'language', 'psm'."""
        options = options or {}
        language = options.get("language", "eng")
        psm = options.get("psm", 3)
        if not isinstance(language, str) or language not in self._tess.get_languages(config=""):
            raise ValueError(f"language {language!r} is not installed for tesseract")
        if isinstance(psm, bool) or not isinstance(psm, int) or not 0 <= psm <= 13:
            raise ValueError("psm must be an integer from 0 to 13")
        image = _open(image_bytes)
        data = self._tess.image_to_data(
            image, lang=language, config=f"--psm {psm}", output_type=self._tess.Output.DICT
        )
        blocks, lines = [], {}
        for i, raw in enumerate(data["text"]):
            word, conf = str(raw).strip(), float(data["conf"][i])
            if not word or conf < 0:
                continue
            line = (data["block_num"][i], data["par_num"][i], data["line_num"][i])
            lines.setdefault(line, []).append(word)
            box = {k: int(data[k][i]) for k in ("left", "top", "width", "height")}
            blocks.append(TextBlock(text=word, confidence=conf, bbox=box, line=len(lines)))
        mean = sum(b.confidence for b in blocks) / len(blocks) / 100 if blocks else 0.0
        text = "\n".join(" ".join(words) for words in lines.values())
        return OCROutput(text=text, blocks=blocks, confidence=round(mean, 4), language=language)

    def on_unload(self) -> None:
        self._tess = None


def _open(image_bytes: bytes | None) -> Any:
    from PIL import Image, UnidentifiedImageError

    if not image_bytes:
        raise ValueError("no image: send the image bytes")
    try:
        image = Image.open(io.BytesIO(image_bytes))
        return image.convert("RGB") if image.mode not in ("L", "RGB") else image
    except (UnidentifiedImageError, OSError) as exc:
        raise ValueError(f"cannot decode the image: {exc}") from exc
