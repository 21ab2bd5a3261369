"""A ForgeSyte package as a Warden manifest. Reads metadata and files; never imports plugin code.

Two steps, because a ForgeSyte class describes its tools in class (or instance) attributes that
only exist once its module is imported:

1. at discovery, `static_manifest` translates what is readable without importing: the entry point,
   the distribution's metadata (version, summary, `Requires-Dist`) and the package's optional
   `manifest.json`;
2. after a successful probe, `probed_manifest` adds what the probe child reported from the live
   class ("facts": `tools`, `name`, `version`, `description`), and the record takes that manifest.

Both results are validated by the same JSON Schema as every Warden manifest.
"""

from __future__ import annotations

import copy
import json
import re
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import jsonschema

from plugins_app.manifest import ManifestError, validate_manifest

from .adapter import (
    FILE_BASE64,
    FILE_BYTES,
    LEGACY_TOOL,
    OPTIONS,
    is_json_schema,
    manifest_json_path,
    tool_name,
)

GROUP = "forgesyte.plugins"
SOURCE = "forgesyte"
NAME_PREFIX = "forgesyte_"
DEFAULT_CLASS = "Plugin"
MAX_DESCRIPTION = 2000
MIME_RE = re.compile(r"^[a-z]+/[A-Za-z0-9.+*-]+$")
# ForgeSyte `input_types` words and the MIME patterns Warden checks uploads against.
INPUT_TYPE_MIME = {
    "image": "image/*",
    "image_bytes": "image/*",
    "image_base64": "image/*",
    "frame": "image/*",
    "frame_base64": "image/*",
    "video": "video/*",
    "video_bytes": "video/*",
    "video_file": "video/*",
    "video_path": "video/*",
    "audio": "audio/*",
    "pdf": "application/pdf",
}
# Type words of ForgeSyte's flat `{field: type}` maps and the JSON Schema types they mean.
JSON_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "dict": "object",
    "object": "object",
}
BROKEN_HINT = (
    "the installed package '{distribution}' is broken or not in ForgeSyte's format: reinstall "
    "it (pip install --force-reinstall {distribution}) or report it to its author, then re-probe"
)
MANIFEST_HINT = (
    "the translated manifest of this ForgeSyte plugin is invalid; see docs/plugins.md "
    "'Running ForgeSyte plugins' for what maps to what"
)


def plugin_name(entry_point_name: str) -> str:
    """`forgesyte_` + the entry point's name, lower case, `-` (and any other character outside
    [a-z0-9_]) → `_`: `yolo-tracker` → `forgesyte_yolo_tracker`."""
    return NAME_PREFIX + re.sub(r"[^a-z0-9_]", "_", entry_point_name.strip().lower())


def location(ep: EntryPoint) -> str:
    """The record location of a ForgeSyte entry point."""
    return f"entry-point:{GROUP}:{ep.name}={ep.value}"


def entrypoint(ep: EntryPoint) -> str:
    """Warden's `module:Class` for the entry point (a module alone means its class `Plugin`).

    Raises ManifestError for a value Warden cannot load (an attribute path such as `mod:A.b`).
    """
    module, attr = ep.module.strip(), (ep.attr or DEFAULT_CLASS).strip()
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.]*", module) or not attr.isidentifier():
        raise ManifestError(
            f"entry point value '{ep.value}' is not 'module.path:ClassName'; Warden loads a class "
            "defined at module level"
        )
    return f"{module}:{attr}"


def read_package_manifest(
    module_dir: Path, top_dir: Path
) -> tuple[dict[str, Any] | None, Path | None]:
    """Return the package's optional manifest.json (parsed) and where it is.

    Raises ManifestError if the file exists but is not a JSON object.
    """
    path = manifest_json_path(module_dir, top_dir)
    if path is None:
        return None, None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(
            f"{path} is not valid JSON: {exc.msg} (line {exc.lineno} column {exc.colno})"
        ) from exc
    if not isinstance(data, dict):
        raise ManifestError(f"{path} is not a JSON object")
    if data.get("tools") is not None and not isinstance(data["tools"], list):
        raise ManifestError(f"{path}: 'tools' is not a list")
    return data, path


def package_facts(ep: EntryPoint, module_dir: Path, top_dir: Path | None) -> dict[str, Any]:
    """What discovery knows of a ForgeSyte package without importing it (JSON-safe);
    `top_dir` is the top-level package's folder (None for a single-module distribution).

    Raises ManifestError for an unloadable entry point value or a broken manifest.json.
    """
    dist = ep.dist
    metadata = dist.metadata if dist is not None else None
    package_manifest, path = (
        read_package_manifest(module_dir, top_dir) if top_dir is not None else (None, None)
    )
    return {
        "entry_point": ep.name,
        "value": ep.value,
        "entrypoint": entrypoint(ep),
        "distribution": metadata["Name"] if metadata is not None else None,
        "version": dist.version if dist is not None else None,
        "summary": (metadata["Summary"] or None) if metadata is not None else None,
        "requires": list(dict.fromkeys(dist.requires or [])) if dist is not None else [],
        "manifest_json": package_manifest,
        "manifest_path": str(path) if path else None,
    }


def _text(*values: Any) -> str | None:
    return next((v.strip() for v in values if isinstance(v, str) and v.strip()), None)


def mime_patterns(input_types: Any) -> list[str] | None:
    """MIME patterns for ForgeSyte `input_types` (`image_bytes` → `image/*`, `video` →
    `video/*`); None (any file) when the list is absent or holds a word Warden cannot map."""
    if not isinstance(input_types, list) or not input_types:
        return None
    patterns = []
    for word in input_types:
        if not isinstance(word, str):
            return None
        mapped = word if MIME_RE.match(word) else INPUT_TYPE_MIME.get(word.strip().lower())
        if mapped is None:
            return None
        patterns.append(mapped)
    return list(dict.fromkeys(patterns))


def _valid_schema(schema: Any) -> bool:
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError:
        return False
    return True


def _property(spec: Any, *, nullable: bool) -> dict[str, Any]:
    """One field of a flat `{field: type}` map as a JSON Schema property."""
    prop: dict[str, Any] = copy.deepcopy(spec) if isinstance(spec, dict) else {}
    word = spec if isinstance(spec, str) else prop.get("type")
    prop.pop("required", None)
    prop.pop("type", None)
    json_type = JSON_TYPES.get(word.strip().lower()) if isinstance(word, str) else None
    if json_type:
        prop["type"] = [json_type, "null"] if nullable else json_type
    elif isinstance(word, str):
        prop.setdefault("description", f"ForgeSyte type '{word}'")
    return prop if _valid_schema(prop) else {"description": "ForgeSyte field"}


def _flat_fields(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or is_json_schema(value):
        return {}
    return value


def input_schema(*sources: Any, legacy: bool = False) -> dict[str, Any]:
    """The Warden input_schema of a tool (it checks the client's JSON `args`).

    The first real JSON Schema among `sources` is the base; fields of flat maps are added as
    properties. The file Warden passes itself (`image_bytes`) is removed, and neither file
    field is required (an upload supplies them). Additional properties stay allowed.
    """
    base = next((copy.deepcopy(s) for s in sources if is_json_schema(s) and _valid_schema(s)), None)
    schema: dict[str, Any] = base if base is not None else {"type": "object"}
    properties = schema.get("properties")
    if properties is None and "$ref" not in schema:
        properties = schema["properties"] = {}
    required = [r for r in schema.get("required", []) if r not in (FILE_BYTES, FILE_BASE64)]
    for source in sources:
        for field, spec in _flat_fields(source).items():
            if properties is not None and field not in properties:
                properties[field] = _property(spec, nullable=False)
            if isinstance(spec, dict) and spec.get("required") is True and field not in required:
                required.append(field)
    if legacy and properties is not None:
        properties.setdefault(OPTIONS, {"type": "object"})
    if properties is not None:
        properties.pop(FILE_BYTES, None)
    required = [r for r in required if r not in (FILE_BYTES, FILE_BASE64)]
    if required:
        schema["required"] = required
    else:
        schema.pop("required", None)
    return schema


def output_schema(*sources: Any) -> dict[str, Any] | None:
    """The Warden output_schema: a declared JSON Schema as it is; flat `outputs` maps only check
    the types of the fields present (null allowed); None when nothing is declared."""
    for source in sources:
        if is_json_schema(source) and _valid_schema(source):
            return copy.deepcopy(source)
    fields = next((_flat_fields(s) for s in sources if _flat_fields(s)), {})
    if not fields:
        return None
    return {
        "type": "object",
        "properties": {f: _property(spec, nullable=True) for f, spec in fields.items()},
    }


def _tool(
    listed: dict[str, Any] | None, live: dict[str, Any] | None, legacy: bool
) -> dict[str, Any]:
    """One Warden tool from a manifest.json tool entry and/or a probed class tool."""
    listed, live = listed or {}, live or {}
    tool_id = str(live.get("id", listed.get("id")))
    tool: dict[str, Any] = {"name": tool_name(tool_id)}
    description = _text(
        listed.get("description"), live.get("description"), listed.get("title"), live.get("title")
    )
    if description:
        tool["description"] = description
    types = mime_patterns(listed.get("input_types")) or mime_patterns(live.get("input_types"))
    if types is None and legacy:
        types = ["image/*"]
    if types:
        tool["input_types"] = types
    # The names the live tool takes (its handler's parameters, ...) document the args too.
    declared: dict[str, Any] = {
        str(n): {} for n in live.get("declared", []) if n != FILE_BYTES and not legacy
    }
    tool["input_schema"] = input_schema(
        live.get("input_schema"), live.get("inputs"), listed.get("inputs"), declared, legacy=legacy
    )
    outputs = output_schema(live.get("output_schema"), live.get("outputs"), listed.get("outputs"))
    if outputs is not None:
        tool["output_schema"] = outputs
    return tool


def _tools(package: dict[str, Any], facts: dict[str, Any] | None) -> list[dict[str, Any]]:
    listed_tools = (package.get("manifest_json") or {}).get("tools") or []
    listed = {str(t["id"]): t for t in listed_tools if isinstance(t, dict) and "id" in t}
    if facts is None:
        return [_tool(entry, None, legacy=False) for entry in listed.values()]
    if facts.get("legacy"):
        return [_tool(listed.get(LEGACY_TOOL), {"id": LEGACY_TOOL}, legacy=True)]
    live = {str(t["id"]): t for t in facts.get("tools", []) if isinstance(t, dict) and "id" in t}
    # manifest.json's order first (its first tool is the default), then the class's own order
    order = [i for i in listed if i in live] + [i for i in live if i not in listed]
    return [_tool(listed.get(i), live[i], legacy=False) for i in order]


def build_manifest(
    name: str, package: dict[str, Any], facts: dict[str, Any] | None
) -> dict[str, Any]:
    """The Warden manifest of a ForgeSyte package (not validated); `facts` None before probing."""
    listed = package.get("manifest_json") or {}
    facts_ = facts or {}
    manifest: dict[str, Any] = {
        "name": name,
        "version": _text(listed.get("version"), package.get("version"), facts_.get("version"))
        or "0",
        "description": (
            _text(listed.get("description"), facts_.get("description"), package.get("summary"))
            or ""
        )[:MAX_DESCRIPTION],
        "entrypoint": package["entrypoint"],
        "tools": _tools(package, facts),
    }
    if package.get("requires"):
        manifest["dependencies"] = {"distributions": list(package["requires"])}
    return manifest


def static_manifest(name: str, package: dict[str, Any]) -> dict[str, Any]:
    """The manifest discovery stores before the probe; `tools` is empty when the package has no
    manifest.json listing them. Raises ManifestError."""
    manifest = build_manifest(name, package, None)
    placeholder = [{"name": "placeholder"}]
    validate_manifest({**manifest, "tools": manifest["tools"] or placeholder})
    return manifest


def probed_manifest(name: str, package: dict[str, Any], facts: dict[str, Any]) -> dict[str, Any]:
    """The complete manifest, once the probe child reported the class's tools. Raises
    ManifestError."""
    try:
        return validate_manifest(build_manifest(name, package, facts))
    except ManifestError as exc:
        raise ManifestError(
            f"translated from ForgeSyte plugin {facts.get('class')}: {exc}"
        ) from exc
