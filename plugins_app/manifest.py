"""Plugin manifests: reading, JSON Schema validation, and the defaults Warden applies."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

from project.storable import has_unstorable_text, storable_text

SCHEMA_PATH = Path(__file__).with_name("manifest_schema.json")
MANIFEST_FILE = "manifest.json"


class ManifestError(Exception):
    """The manifest is missing, not JSON, or does not match the schema; the message says where."""


@cache
def manifest_validator() -> jsonschema.Draft202012Validator:
    """Return the (cached) validator for the manifest schema that ships with Warden."""
    schema = json.loads(SCHEMA_PATH.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _describe(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return f"unknown key(s) {', '.join(repr(k) for k in extra)} at '{where or '/'}'"
    if error.validator == "required":
        return f"{error.message} at '{where or '/'}'"
    return f"'{where or '/'}': {error.message}"


def validate_manifest(data: Any) -> dict[str, Any]:
    """Return `data` if it is a valid manifest; raise ManifestError listing every problem."""
    errors = sorted(manifest_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ManifestError(storable_text("; ".join(_describe(e) for e in errors)))
    if has_unstorable_text(data):
        raise ManifestError("contains NUL characters (\\u0000) or unpaired surrogates")
    for tool in data["tools"]:
        for key in ("input_schema", "output_schema"):
            if key in tool:
                try:
                    jsonschema.Draft202012Validator.check_schema(tool[key])
                except jsonschema.SchemaError as exc:
                    raise ManifestError(
                        f"tool '{tool['name']}' {key} is not a valid JSON Schema: {exc.message}"
                    ) from exc
    names = [tool["name"] for tool in data["tools"]]
    if len(names) != len(set(names)):
        raise ManifestError(f"duplicate tool names in {names}")
    return dict(data)


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and validate `folder`/manifest.json; raise ManifestError with an actionable message."""
    path = folder / MANIFEST_FILE
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_FILE} in {folder}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{MANIFEST_FILE} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from exc
    return validate_manifest(data)
