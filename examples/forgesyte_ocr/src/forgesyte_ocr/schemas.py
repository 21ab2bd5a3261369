"""Pydantic models of the OCR tool's input and output."""

from typing import Any

from pydantic import BaseModel, Field


class OCRInput(BaseModel):
    """What `analyze` takes."""

    image_bytes: bytes = Field(description="The image (PNG, JPEG, ...)")
    options: dict[str, Any] | None = Field(
        default=None, description="'language' (Tesseract code, default 'eng'), 'psm' (0-13)"
    )


class TextBlock(BaseModel):
    """One recognised word with its confidence (0-100) and pixel box."""

    text: str
    confidence: float
    bbox: dict[str, int]
    line: int


class OCROutput(BaseModel):
    """What `analyze` returns."""

    text: str = Field(description="The recognised text, one line per text line")
    blocks: list[TextBlock] = Field(default_factory=list)
    confidence: float = Field(description="Mean word confidence, 0-1")
    language: str
