"""ForgeSyte OCR plugin (Tesseract)."""
