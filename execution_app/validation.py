"""Input and output checks shared by the API (before a job is queued) and ToolRunner."""

from __future__ import annotations

import fnmatch
import json
import math
import re
from functools import lru_cache
from typing import Any

import jsonschema
from referencing.exceptions import Unresolvable

from plugins_app.models import PluginHost, PluginRecord
from plugins_app.selectors import host_ready, plugin_availability
from project.errors import WardenError
from project.storable import MAX_JSON_DEPTH, has_unstorable_text, json_depth

# Job.input_mime_type's column width.
MAX_MIME_TYPE = 100
_MIME_RE = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+-]*/[a-z0-9!#$&^_.+*-]+")

# Leading bytes of the file types plugins commonly declare.
_SIGNATURES: list[tuple[bytes, int, str]] = [
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"BM", 0, "image/bmp"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"%PDF-", 0, "application/pdf"),
    (b"WEBP", 8, "image/webp"),
]


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator(json.loads(schema_json))


def schema_validator(schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    """Return a (cached) validator for a tool's input or output schema."""
    return _validator(json.dumps(schema, sort_keys=True))


def schema_errors(
    plugin: PluginRecord, tool: dict[str, Any], key: str, instance: Any
) -> list[jsonschema.ValidationError]:
    """Return the errors of `instance` against the tool's `key` schema (input_schema or
    output_schema). Raises PluginUnavailable when the schema itself cannot be evaluated (a `$ref`
    that resolves nowhere): the manifest is at fault, not the caller."""
    try:
        return list(schema_validator(tool[key]).iter_errors(instance))
    except Unresolvable as exc:
        raise WardenError(
            "PluginUnavailable",
            f"Plugin '{plugin.name}' cannot check tool '{tool['name']}': its {key} has a $ref "
            "that resolves nowhere; fix manifest.json and re-probe",
            details={"tool": tool["name"], "schema": key},
            plugin=plugin.name,
        ) from exc


def sniff_mime_type(data: bytes) -> str | None:
    """Return the MIME type the file's leading bytes announce, or None if unknown."""
    for magic, offset, mime in _SIGNATURES:
        if data[offset : offset + len(magic)] == magic:
            return mime
    return None


def plugin_admit(plugin: PluginRecord, live: dict[str, set[str]] | None) -> None:
    """Raise PluginUnavailable unless the plugin accepts jobs (CONTRACT.md §3 rule 5).

    `live` maps hosts with live workers to their queues (None: unknown). When live workers
    consume the plugin's queue, one of their hosts must have it ready. When none does, a plugin
    some host has ready is let through to dispatch, which answers 503 (no worker consumes the
    queue at all); one no host can run is refused here with each host's reason.
    """
    availability = plugin_availability(plugin, live=live)
    if availability.accepting_jobs:
        return
    # No worker consumes the queue at all: a plugin that some (now absent) host has ready is let
    # through to dispatch, which answers 503; one that no host can run is a 400 here.
    no_worker = availability.queue_has_worker is False and not plugin.quarantined
    if no_worker and plugin_availability(plugin, live=None).accepting_jobs:
        return
    if plugin.quarantined:
        why = f"quarantined: {availability.reason}"
    elif availability.state == "LOADED":
        why = f"LOADED: {availability.reason}"
    else:
        why = f"{availability.state}: {availability.reason}"
    raise WardenError(
        "PluginUnavailable",
        f"Plugin '{plugin.name}' is not accepting jobs ({why})",
        details={
            "state": availability.state,
            "reason": availability.reason,
            "hint": availability.hint,
            "quarantined": plugin.quarantined,
            "hosts": [
                {"host": h["host"], "state": h["state"], "reason": h["reason"], "alive": h["alive"]}
                for h in availability.hosts
            ],
        },
        plugin=plugin.name,
    )


def plugin_admit_here(plugin: PluginRecord, entry: PluginHost | None, host: str) -> None:
    """In a worker child: raise PluginUnavailable unless the plugin is ready on this host and not
    quarantined (the registry may have changed since the request was admitted)."""
    if entry is not None and host_ready(plugin, entry) and not plugin.quarantined:
        return
    if plugin.quarantined:
        why = f"quarantined: {plugin.reason}"
    elif entry is None:
        why = f"not found on host {host}; sync this host (`manage.py plugins sync`)"
    else:
        why = f"{entry.state} on host {host}: {entry.reason}"
    raise WardenError(
        "PluginUnavailable",
        f"Plugin '{plugin.name}' is not accepting jobs ({why})",
        details={"host": host, "quarantined": plugin.quarantined},
        plugin=plugin.name,
    )


def tool_resolve(plugin: PluginRecord, tool: str | None) -> dict[str, Any]:
    """Return the manifest entry of `tool` (the default tool when None); raise ValidationError."""
    entry = plugin.tool(tool)
    if entry is None:
        names = [t.get("name") for t in plugin.tools or []]
        raise WardenError(
            "ValidationError",
            f"Plugin '{plugin.name}' has no tool '{tool}' (tools: {', '.join(map(str, names))})",
            details={"field": "tool", "tools": names},
            plugin=plugin.name,
        )
    return entry


def args_validate(plugin: PluginRecord, tool: dict[str, Any], args: Any) -> None:
    """Raise ValidationError unless `args` is an object matching the tool's input_schema."""
    if not isinstance(args, dict):
        raise WardenError(
            "ValidationError",
            "'args' must be a JSON object",
            details={"field": "args"},
            plugin=plugin.name,
        )
    schema = tool.get("input_schema")
    if not schema:
        return
    errors = sorted(schema_errors(plugin, tool, "input_schema", args), key=lambda e: list(e.path))
    if errors:
        problems = [
            {"path": "/".join(map(str, e.absolute_path)) or "/", "message": e.message}
            for e in errors
        ]
        first = problems[0]
        raise WardenError(
            "ValidationError",
            f"args of tool '{tool['name']}' do not match its input_schema: "
            f"{first['path']}: {first['message']}",
            details={"field": "args", "errors": problems},
            plugin=plugin.name,
        )


def file_validate(
    plugin: PluginRecord, tool: dict[str, Any], data: bytes, declared: str | None, max_bytes: int
) -> str:
    """Check an uploaded file's size and type; return its MIME type. Raises WardenError."""
    if not data:
        raise WardenError(
            "ValidationError",
            "The uploaded file is empty",
            details={"field": "file"},
            plugin=plugin.name,
        )
    if len(data) > max_bytes:
        raise WardenError(
            "PayloadTooLarge",
            f"The uploaded file is {len(data)} bytes; the limit is {max_bytes} bytes",
            details={"size": len(data), "limit": max_bytes},
            plugin=plugin.name,
        )
    sniffed = sniff_mime_type(data)
    declared = (declared or "").split(";")[0].strip().lower() or None
    if declared and (len(declared) > MAX_MIME_TYPE or not _MIME_RE.fullmatch(declared)):
        raise WardenError(
            "ValidationError",
            f"mime_type must be a MIME type such as image/png (at most {MAX_MIME_TYPE} characters)",
            details={"field": "mime_type"},
            plugin=plugin.name,
        )
    if declared and sniffed and declared != sniffed:
        raise WardenError(
            "ValidationError",
            f"The file's content is {sniffed} but mime_type says {declared}",
            details={"field": "mime_type", "declared": declared, "detected": sniffed},
            plugin=plugin.name,
        )
    mime = declared or sniffed or "application/octet-stream"
    accepted = list(tool.get("input_types") or [])
    if accepted and not any(fnmatch.fnmatch(mime, pattern) for pattern in accepted):
        raise WardenError(
            "ValidationError",
            f"Tool '{tool['name']}' accepts {', '.join(accepted)}, not {mime}",
            details={"field": "file", "mime_type": mime, "accepted": accepted},
            plugin=plugin.name,
        )
    return mime


def output_validate(
    plugin: PluginRecord, tool: dict[str, Any], output: Any, max_mb: float
) -> tuple[dict[str, Any], int]:
    """Return the tool's output and its size as JSON (bytes) if it is a JSON-serialisable dict of
    at most `max_mb` MB of JSON matching output_schema.

    Raises OutputValidationError otherwise.
    """

    def fail(message: str, summary: str | None = None, **details: Any) -> WardenError:
        prefix = f"Tool '{tool['name']}' of plugin '{plugin.name}' returned "
        return WardenError(
            "OutputValidationError",
            prefix + message,
            details=details,
            plugin=plugin.name,
            reason=prefix + (summary or message),
        )

    if not isinstance(output, dict):
        raise fail(f"{type(output).__name__}, not a dict", returned_type=type(output).__name__)
    try:
        text = json.dumps(output, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise fail(
            f"a value that is not JSON-serialisable ({exc})",
            "a value that is not JSON-serialisable",
        ) from exc
    except RecursionError as exc:
        raise fail(f"a value nested too deeply (more than {MAX_JSON_DEPTH} levels)") from exc
    size = len(text.encode("utf-8")) if not text.isascii() else len(text)
    if size > max_mb * 2**20:
        raise fail(
            f"a result of {size / 2**20:.1f} MB of JSON; the limit is {max_mb:g} MB "
            "(WARDEN_MAX_RESULT_MB)",
            size_mb=round(size / 2**20, 1),
            limit_mb=max_mb,
        )
    result: dict[str, Any] = json.loads(text)
    if json_depth(result) > MAX_JSON_DEPTH:
        raise fail(f"a value nested too deeply (more than {MAX_JSON_DEPTH} levels)")
    if has_unstorable_text(result):
        raise fail(
            "a string containing a NUL character (\\u0000) or an unpaired surrogate, which "
            "cannot be stored"
        )
    schema = tool.get("output_schema")
    if schema:
        error = jsonschema.exceptions.best_match(
            schema_errors(plugin, tool, "output_schema", result)
        )
        if error is not None:
            where = "/".join(map(str, error.absolute_path)) or "/"
            raise fail(
                f"output violating its output_schema at {where}: {error.message}",
                f"output violating its output_schema ('{error.validator}')",
                path=where,
                schema_error=error.message,
            )
    return result, size


def timeout_resolve(plugin: PluginRecord, requested: float | None) -> float:
    """Return the soft limit: the plugin's timeout_s, lowered (never raised) by the request."""
    if requested is None:
        return plugin.timeout_s
    if not math.isfinite(requested) or requested <= 0:
        raise WardenError(
            "ValidationError", "timeout_s must be a positive number", details={"field": "timeout_s"}
        )
    return min(plugin.timeout_s, requested)
