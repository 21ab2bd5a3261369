"""Text every supported database can store: no NUL characters, no unpaired surrogates."""

from __future__ import annotations

from typing import Any


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate such as "\ud800"
        return True
    return False


def has_unstorable_text(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character or an unpaired surrogate in any string,
    key or value. PostgreSQL stores neither (in text or jsonb); SQLite would, so both are refused.
    """
    if isinstance(value, str):
        return _unstorable(value)
    if isinstance(value, dict):
        return any(has_unstorable_text(k) or has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(has_unstorable_text(v) for v in value)
    return False


def storable_text(text: str) -> str:
    """Return `text` with NUL characters and unpaired surrogates escaped as backslash sequences."""
    if not _unstorable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
