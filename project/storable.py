"""Values every supported database can store: no NUL characters, no unpaired surrogates, and
JSON nested no deeper than MAX_JSON_DEPTH. The checks are iterative: a value nested deeper than
Python's recursion limit is rejected, never a RecursionError (a 500)."""

from __future__ import annotations

from typing import Any

# Deep enough for any real plugin's args or results; far below what json, jsonschema and the
# databases' JSON types handle recursively.
MAX_JSON_DEPTH = 64


def _unstorable(text: str) -> bool:
    if "\x00" in text:
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # an unpaired surrogate such as "\ud800"
        return True
    return False


def _children(value: Any) -> list[Any]:
    if isinstance(value, dict):
        return [*value.keys(), *value.values()]
    if isinstance(value, list | tuple):
        return list(value)
    return []


def has_unstorable_text(value: Any) -> bool:
    """Whether a decoded JSON value holds a NUL character or an unpaired surrogate in any string,
    key or value. PostgreSQL stores neither (in text or jsonb); SQLite would, so both are refused.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _unstorable(item):
                return True
        else:
            stack.extend(_children(item))
    return False


def json_depth(value: Any) -> int:
    """Return how deeply a decoded JSON value nests (a scalar 0, `[]` 1, `{"a": [1]}` 2)."""
    deepest = 0
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            depth += 1
            deepest = max(deepest, depth)
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth) for child in children)
    return deepest


def storable_text(text: str) -> str:
    """Return `text` with NUL characters and unpaired surrogates escaped as backslash sequences."""
    if not _unstorable(text):
        return text
    return text.replace("\x00", "\\x00").encode("utf-8", "backslashreplace").decode("utf-8")
