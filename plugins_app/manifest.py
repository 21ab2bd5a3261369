"""Plugin manifests: reading, JSON Schema validation, and the defaults Warden applies."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
from referencing import Registry
from referencing.exceptions import Unresolvable
from referencing.jsonschema import DRAFT202012

from project.storable import MAX_JSON_DEPTH, has_unstorable_text, json_depth, storable_text

SCHEMA_PATH = Path(__file__).with_name("manifest_schema.json")
MANIFEST_FILE = "manifest.json"
MAX_MANIFEST_BYTES = 2**20


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


def _refs(schema: Any) -> Iterator[str]:
    """Every `$ref` and `$dynamicRef` in a schema (iteratively: it may be nested deep)."""
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            for key, value in item.items():
                if key in ("$ref", "$dynamicRef") and isinstance(value, str):
                    yield value
                else:
                    stack.append(value)
        elif isinstance(item, list):
            stack.extend(item)


def _check_tool_schema(tool: dict[str, Any], key: str) -> None:
    """Raise ManifestError unless the schema is valid and every reference resolves locally."""
    schema = tool[key]
    where = f"tool '{tool['name']}' {key}"
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ManifestError(f"{where} is not a valid JSON Schema: {exc.message}") from exc
    resolver = Registry().resolver_with_root(DRAFT202012.create_resource(schema))
    for ref in _refs(schema):
        if not ref.startswith("#"):
            raise ManifestError(
                f"{where} refers to {ref!r}: only references inside the schema ('#/...') are "
                "allowed (Warden never fetches schemas)"
            )
        try:
            resolver.lookup(ref)
        except Unresolvable as exc:
            raise ManifestError(f"{where} refers to {ref!r}, which does not exist") from exc


def _check_magic(data: dict[str, Any]) -> None:
    for index, model in enumerate(data.get("models", [])):
        magic = model.get("magic", "")
        if magic.startswith("hex:"):
            try:
                bytes.fromhex(magic[4:])
            except ValueError as exc:
                raise ManifestError(
                    f"'models/{index}/magic': {magic[:40]!r} is not hex (write 'hex:' and an even "
                    "number of hex digits, e.g. 'hex:89504e47')"
                ) from exc


def validate_manifest(data: Any) -> dict[str, Any]:
    """Return `data` if it is a valid manifest; raise ManifestError listing every problem."""
    depth = json_depth(data)
    if depth > MAX_JSON_DEPTH:  # before any recursive check: deep enough, that is a crash
        raise ManifestError(f"nested too deeply ({depth} levels; at most {MAX_JSON_DEPTH})")
    errors = sorted(manifest_validator().iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        raise ManifestError(storable_text("; ".join(_describe(e) for e in errors)))
    if has_unstorable_text(data):
        raise ManifestError("contains NUL characters (\\u0000) or unpaired surrogates")
    _check_magic(data)
    for tool in data["tools"]:
        for key in ("input_schema", "output_schema"):
            if key in tool:
                _check_tool_schema(tool, key)
    names = [tool["name"] for tool in data["tools"]]
    if len(names) != len(set(names)):
        raise ManifestError(f"duplicate tool names in {names}")
    return dict(data)


def _read_json(folder: Path) -> Any:
    """Read `folder`/manifest.json as JSON; raise ManifestError with an actionable message."""
    path = folder / MANIFEST_FILE
    try:
        info = path.stat()
        if not stat.S_ISREG(info.st_mode):  # a FIFO or device would block or never end
            raise ManifestError(f"{path} is not a regular file")
        if info.st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(
                f"{path} is {info.st_size} bytes; a manifest may have at most "
                f"{MAX_MANIFEST_BYTES} bytes"
            )
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ManifestError(f"no {MANIFEST_FILE} in {folder}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{MANIFEST_FILE} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from exc
    except RecursionError:
        raise ManifestError(
            f"{MANIFEST_FILE} is nested too deeply (more than {MAX_JSON_DEPTH} levels)"
        ) from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and validate `folder`/manifest.json; raise ManifestError with an actionable message."""
    return validate_manifest(_read_json(folder))


def declared_name(folder: Path) -> str | None:
    """The `name` an invalid manifest declares, if it is readable at all (never raises)."""
    try:
        data = _read_json(folder)
    except ManifestError:
        return None
    name = data.get("name") if isinstance(data, dict) else None
    return name if isinstance(name, str) else None
