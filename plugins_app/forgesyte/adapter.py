"""The ForgeSyte adapter: a ForgeSyte plugin class behind Warden's `run(tool, args)`.

Never imports Django. The adapter itself runs plugin code, so only plugins_app.loader uses it,
inside probe and worker children; the parent side (discovery, translation) imports only the pure
helpers at the top of this module.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
import json
import math
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import warden

MANIFEST_FILE = "manifest.json"
FILE_BYTES = "image_bytes"
FILE_BASE64 = "image_base64"
OPTIONS = "options"
MIME_TYPE = "mime_type"
LEGACY_TOOL = "analyze"
MAX_FACTS_CHARS = 1_000_000
MAX_DEPTH = 64
DESCRIBED_KEYS = (
    "title",
    "description",
    "input_schema",
    "output_schema",
    "inputs",
    "outputs",
    "input_types",
)
SCHEMA_KEYS = frozenset(
    {"type", "properties", "$ref", "$defs", "allOf", "anyOf", "oneOf", "required", "$schema"}
)


# --- pure helpers, shared with the parent-side translation ------------------------------------


def tool_name(tool_id: str) -> str:
    """Warden's name for a ForgeSyte tool id (`Detect-Players` → `detect_players`): lower case,
    any character but [a-z0-9_] becomes `_`, a leading non-letter gets a `t_` prefix."""
    name = re.sub(r"[^a-z0-9_]", "_", str(tool_id).lower())[:64]
    return name if name[:1].isalpha() else f"t_{name}"[:64]


def is_json_schema(value: Any) -> bool:
    """Whether a tool's `input_schema`/`output_schema` is a JSON Schema rather than ForgeSyte's
    flat `{field: type}` map (a field named `type` maps to a dict, a schema's `type` does not)."""
    if not isinstance(value, Mapping):
        return False
    kind = value.get("type")
    if isinstance(kind, str | list):
        return True
    return any(key in value and key != "type" for key in SCHEMA_KEYS)


def schema_fields(value: Any) -> set[str]:
    """The argument names a schema (or a flat map) declares."""
    if not isinstance(value, Mapping):
        return set()
    if is_json_schema(value):
        properties = value.get("properties")
        return {str(k) for k in properties} if isinstance(properties, Mapping) else set()
    return {str(k) for k in value}


def manifest_json_path(module_dir: Path, top_dir: Path) -> Path | None:
    """The package's optional manifest.json: the first found from the entry-point module's folder
    up to its top-level package's folder."""
    folder = module_dir
    while True:
        candidate = folder / MANIFEST_FILE
        if candidate.is_file():
            return candidate
        if folder == top_dir or folder.parent == folder or top_dir not in folder.parents:
            return None
        folder = folder.parent


# --- the adapter (plugin code runs from here on) -----------------------------------------------


class HostModuleImportError(ImportError):
    """The plugin imports ForgeSyte's server package `app`, which Warden does not provide."""


class ForgeSyteFormatError(Exception):
    """The class does not offer what a ForgeSyte plugin must: tools with handlers or analyze()."""


def host_import_error(exc: ImportError, entrypoint: str) -> HostModuleImportError | None:
    """Return an actionable error if `exc` is a failed import of ForgeSyte's `app`, else None."""
    missing = exc.name or ""
    if missing != "app" and not missing.startswith("app."):
        return None
    return HostModuleImportError(
        f"ForgeSyte plugin imports host module '{missing}' ({type(exc).__name__}: {exc}); "
        "Warden does not provide ForgeSyte's app package, so the plugin needs a standalone "
        f"fallback (try: from app... except ImportError: ...) in {entrypoint.partition(':')[0]}"
    )


def _takes_no_arguments(func: Any) -> bool:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return True
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in parameters
    )


def _parameters(func: Any) -> set[str]:
    try:
        parameters = inspect.signature(func).parameters.values()
    except (TypeError, ValueError):
        return set()
    return {
        p.name
        for p in parameters
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name != "self"
    }


def jsonable(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of a tool description value: pydantic model classes become their JSON
    Schema, callables their name, anything else unknown its repr."""
    if depth > MAX_DEPTH:
        return None
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(v, depth + 1) for v in value]
    if isinstance(value, type):
        for method in ("model_json_schema", "schema"):  # a pydantic v2 / v1 model class
            make_schema = getattr(value, method, None)
            if callable(make_schema):
                return jsonable(make_schema(), depth + 1)
    if callable(value):
        return str(getattr(value, "__name__", repr(value)))
    return repr(value)[:200]


def to_plain(value: Any, depth: int = 0) -> Any:
    """Convert a tool's result for Warden: pydantic models (v2 `model_dump(mode="json")`, v1
    `.json()`) and dataclasses become plain JSON values, inside dicts and lists too."""
    if depth > MAX_DEPTH or isinstance(value, type):
        return value
    if callable(getattr(value, "model_dump", None)):
        return value.model_dump(mode="json", by_alias=True)
    if hasattr(value, "__fields__") and callable(getattr(value, "json", None)):
        return json.loads(value.json(by_alias=True))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(dataclasses.asdict(value), depth + 1)
    if isinstance(value, dict):
        return {k: to_plain(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, depth + 1) for v in value]
    return value


def _awaited(result: Any) -> Any:
    """The value of an awaitable an async tool returned, run on a private event loop."""
    import asyncio  # ~60 ms to import: only for the async tools that need it

    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(result)
    finally:
        loop.close()


class ForgeSyteAdapter:
    """Wraps one ForgeSyte plugin instance; `adapter_class` makes a subclass per plugin class."""

    plugin_class: ClassVar[type[Any]]

    def __init__(self) -> None:
        """Instantiate the plugin and call its `on_load()`; raise ForgeSyteFormatError if it has
        neither tools nor `analyze()`."""
        self.plugin = self.plugin_class()
        on_load = getattr(self.plugin, "on_load", None)
        if callable(on_load):
            on_load()
        self.run_tool = getattr(self.plugin, "run_tool", None)
        tools = getattr(self.plugin, "tools", None)
        self.tools: dict[str, Any] = (
            {str(k): v for k, v in tools.items()} if isinstance(tools, Mapping) else {}
        )
        self.legacy = not self.tools
        if self.legacy and not callable(getattr(self.plugin, "analyze", None)):
            raise ForgeSyteFormatError(
                f"class {self._class_label()} has no `tools` dict and no analyze() method"
            )
        if not self.legacy and not callable(self.run_tool):
            lacking = [t for t in self.tools if self._handler(t) is None]
            if lacking:
                raise ForgeSyteFormatError(
                    f"class {self._class_label()} has no run_tool() and tool(s) "
                    f"{', '.join(map(repr, lacking))} have no callable handler"
                )
        self.manifest_inputs = self._manifest_inputs()

    def validate(self) -> None:
        """Call the plugin's `validate()` (when it takes no arguments); False means unusable."""
        validate = getattr(self.plugin, "validate", None)
        if callable(validate) and _takes_no_arguments(validate) and validate() is False:
            raise RuntimeError(f"{self._class_label()}.validate() returned False")

    def run(self, tool: str, args: dict[str, Any]) -> Any:
        """Run a tool the ForgeSyte way; a ValueError becomes `warden.InvalidInput`."""
        tool_id = self._tool_id(tool)
        try:
            if self.legacy:
                result = self._analyze(tool, args)
            elif callable(self.run_tool):
                result = self.run_tool(tool_id, self._call_args(tool_id, args))
            else:
                result = self._handler(tool_id)(**self._call_args(tool_id, args))
            if inspect.isawaitable(result):
                result = _awaited(result)
        except ValueError as exc:
            raise warden.InvalidInput(
                str(exc) or f"{type(exc).__name__} from tool '{tool}'"
            ) from exc
        return to_plain(result)

    def describe(self) -> dict[str, Any]:
        """What the parent needs to build the plugin's manifest (class attributes and tools),
        as JSON-safe values."""
        plugin = self.plugin
        facts: dict[str, Any] = {
            "class": self._class_label(),
            "legacy": self.legacy,
            **{
                key: value
                for key in ("name", "version", "description")
                if isinstance(value := getattr(plugin, key, None), str)
            },
        }
        if self.legacy:
            facts["tools"] = [{"id": LEGACY_TOOL, "declared": sorted(self._declared(LEGACY_TOOL))}]
        else:
            facts["tools"] = [self._describe_tool(t) for t in self.tools]
        if len(json.dumps(facts)) > MAX_FACTS_CHARS:
            raise ForgeSyteFormatError(
                f"the tools of {self._class_label()} describe themselves in more than "
                f"{MAX_FACTS_CHARS} characters of JSON"
            )
        return facts

    # --- helpers ---

    def _class_label(self) -> str:
        return f"{self.plugin_class.__module__}.{self.plugin_class.__qualname__}"

    def _analyze(self, tool: str, args: dict[str, Any]) -> Any:
        """Call the older `analyze(image_bytes, options)`: options are the client's `options`,
        or else all its other args."""
        data = args.get(FILE_BYTES)
        if not isinstance(data, bytes | bytearray):
            raise warden.InvalidInput(f"tool '{tool}' needs an image: send a file or 'image'")
        if OPTIONS in args:
            options = args[OPTIONS]
        else:
            options = {k: v for k, v in args.items() if k not in (FILE_BYTES, MIME_TYPE)}
        return self.plugin.analyze(bytes(data), options)

    def _describe_tool(self, tool_id: str) -> dict[str, Any]:
        entry = self.tools[tool_id]
        described: dict[str, Any] = {"id": tool_id, "declared": sorted(self._declared(tool_id))}
        if isinstance(entry, Mapping):
            for key in DESCRIBED_KEYS:
                if entry.get(key) is not None:
                    described[key] = jsonable(entry[key])
        handler = self._handler(tool_id)
        if "description" not in described and handler is not None:
            doc = inspect.getdoc(handler)
            if doc:
                described["description"] = doc.strip().splitlines()[0]
        return described

    def _handler(self, tool_id: str) -> Any:
        entry = self.tools.get(tool_id)
        handler = entry.get("handler") if isinstance(entry, Mapping) else entry
        if isinstance(handler, str):
            handler = getattr(self.plugin, handler, None)
        return handler if callable(handler) else None

    def _tool_id(self, tool: str) -> str:
        if self.legacy:
            return LEGACY_TOOL
        if tool in self.tools:
            return tool
        for tool_id in self.tools:
            if tool_name(tool_id) == tool:
                return tool_id
        raise KeyError(f"tool '{tool}' is no longer among the plugin's tools; re-probe the plugin")

    def _declared(self, tool_id: str) -> set[str]:
        """Argument names the tool declares: its schemas or flat maps, the package manifest's
        `inputs`, and its handler's parameters."""
        if self.legacy:
            return {FILE_BYTES, OPTIONS}
        entry = self.tools.get(tool_id)
        names = set(self.manifest_inputs.get(tool_id, set()))
        if isinstance(entry, Mapping):
            names |= schema_fields(entry.get("input_schema")) | schema_fields(entry.get("inputs"))
        handler = self._handler(tool_id)
        if handler is not None:
            names |= _parameters(handler)
        return names

    def _call_args(self, tool_id: str, args: dict[str, Any]) -> dict[str, Any]:
        """The tool's args: the client's, plus the uploaded file as `image_bytes` (or as
        `image_base64` text for tools that declare only that), plus `options`."""
        declared = self._declared(tool_id)
        call_args = {k: v for k, v in args.items() if k not in (FILE_BYTES, MIME_TYPE)}
        data = args.get(FILE_BYTES)
        if isinstance(data, bytes | bytearray):
            if FILE_BASE64 in declared:
                call_args.setdefault(FILE_BASE64, base64.b64encode(data).decode("ascii"))
            if FILE_BYTES in declared or FILE_BASE64 not in declared:
                call_args[FILE_BYTES] = bytes(data)
        if MIME_TYPE in declared and args.get(MIME_TYPE):
            call_args[MIME_TYPE] = args[MIME_TYPE]
        if OPTIONS in declared or not declared:
            call_args.setdefault(OPTIONS, {})
        return call_args

    def _manifest_inputs(self) -> dict[str, set[str]]:
        """Per tool id, the `inputs` names the package's manifest.json lists (if it has one)."""
        module = sys.modules.get(self.plugin_class.__module__)
        top = sys.modules.get(self.plugin_class.__module__.split(".")[0])
        module_file = getattr(module, "__file__", None)
        top_paths = list(getattr(top, "__path__", []) or [])
        if not module_file or not top_paths:
            return {}
        path = manifest_json_path(Path(module_file).parent, Path(top_paths[0]))
        try:
            data = json.loads(path.read_text(encoding="utf-8")) if path else {}
        except (OSError, ValueError):
            return {}
        tools = data.get("tools") if isinstance(data, dict) else None
        return {
            str(t.get("id")): schema_fields(t.get("inputs"))
            for t in (tools if isinstance(tools, list) else [])
            if isinstance(t, dict) and t.get("id") is not None
        }


def adapter_class(plugin_class: type[Any]) -> type[ForgeSyteAdapter]:
    """A ForgeSyteAdapter subclass whose instances wrap an instance of `plugin_class`."""
    return type(
        f"ForgeSyte{plugin_class.__name__}",
        (ForgeSyteAdapter,),
        {"plugin_class": plugin_class, "__module__": __name__},
    )
