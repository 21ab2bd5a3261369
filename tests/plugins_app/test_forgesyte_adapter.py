"""The ForgeSyte adapter (run inside probe and worker children) and the pure translation rules."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

import pytest
from pydantic import BaseModel

import warden
from plugins_app.dependencies import Missing, check_distribution
from plugins_app.forgesyte.adapter import ForgeSyteFormatError, adapter_class, tool_name
from plugins_app.forgesyte.translate import input_schema, mime_patterns, output_schema, plugin_name

PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)


class Box(BaseModel):
    text: str
    score: float


class Recorder:
    """A ForgeSyte plugin that records what its tools receive."""

    name = "recorder"
    tools = {
        "bytes_tool": {"inputs": {"image_bytes": "bytes", "options": "object"}, "handler": "h"},
        "b64_tool": {"input_schema": {"image_base64": {"type": "string"}}, "handler": "h"},
        "both": {"inputs": {"image_bytes": "bytes", "image_base64": "string"}, "handler": "h"},
        "plain": {"handler": "plain"},
        "Model-Result": {"handler": "h"},
    }

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def run_tool(self, tool_name: str, args: dict[str, Any]) -> Any:
        self.calls.append((tool_name, args))
        if tool_name == "Model-Result":
            return {"boxes": [Box(text="a", score=0.5)], "first": Box(text="b", score=1.0)}
        if args.get("fail"):
            raise ValueError(args["fail"])
        return {"ok": True}

    def h(self, **kwargs: Any) -> None: ...

    def plain(self, text: str) -> None: ...


def adapter(plugin_class: type[Any]) -> Any:
    return adapter_class(plugin_class)()


def test_it_passes_the_upload_the_way_each_tool_declares_it() -> None:
    wrapped = adapter(Recorder)
    upload = {"image_bytes": PNG, "mime_type": "image/png", "options": {"lang": "eng"}}

    for tool in ("bytes_tool", "b64_tool", "both", "plain"):
        assert wrapped.run(tool, dict(upload)) == {"ok": True}

    encoded = base64.b64encode(PNG).decode()
    assert wrapped.plugin.calls == [
        ("bytes_tool", {"options": {"lang": "eng"}, "image_bytes": PNG}),
        ("b64_tool", {"options": {"lang": "eng"}, "image_base64": encoded}),
        ("both", {"options": {"lang": "eng"}, "image_base64": encoded, "image_bytes": PNG}),
        ("plain", {"options": {"lang": "eng"}, "image_bytes": PNG}),
    ]


def test_it_adds_empty_options_only_where_they_are_declared_or_nothing_is() -> None:
    wrapped = adapter(Recorder)

    wrapped.run("bytes_tool", {})
    wrapped.run("plain", {"text": "x"})
    wrapped.run("model_result", {})

    assert wrapped.plugin.calls == [
        ("bytes_tool", {"options": {}}),
        ("plain", {"text": "x"}),
        ("Model-Result", {"options": {}}),
    ]


def test_it_maps_warden_tool_names_back_to_forgesyte_ids_and_converts_pydantic_results() -> None:
    assert tool_name("Model-Result") == "model_result"
    assert tool_name("3d") == "t_3d"

    result = adapter(Recorder).run("model_result", {})

    assert result == {"boxes": [{"text": "a", "score": 0.5}], "first": {"text": "b", "score": 1.0}}


def test_it_turns_a_value_error_into_invalid_input() -> None:
    with pytest.raises(warden.InvalidInput, match=r"^bad lang$"):
        adapter(Recorder).run("plain", {"fail": "bad lang"})


def test_it_calls_handlers_without_run_tool_and_awaits_async_ones() -> None:
    @dataclasses.dataclass
    class Result:
        n: int

    class NoRunTool:
        def __init__(self) -> None:
            self.tools = {"count": self.count, "later": {"handler": "later"}}

        def count(self, text: str) -> Result:
            return Result(len(text))

        async def later(self, image_base64: str) -> Box:
            return Box(text=image_base64[:4], score=2)

    wrapped = adapter(NoRunTool)

    assert wrapped.run("count", {"text": "abc"}) == {"n": 3}
    assert wrapped.run("later", {"image_bytes": PNG}) == {"text": "iVBO", "score": 2.0}


def test_it_calls_on_load_at_init_and_treats_validate_false_as_unusable() -> None:
    class Hooks:
        tools = {"t": {"handler": "t"}}

        def __init__(self) -> None:
            self.loaded = 0

        def on_load(self) -> None:
            self.loaded += 1

        def validate(self) -> bool:
            return False

        def t(self) -> dict[str, Any]:
            return {}

    wrapped = adapter(Hooks)

    assert wrapped.plugin.loaded == 1
    with pytest.raises(RuntimeError, match=r"Hooks.validate\(\) returned False$"):
        wrapped.validate()


def test_it_skips_a_validate_that_wants_arguments() -> None:
    class InputValidator(Recorder):
        def validate(self, args: dict[str, Any]) -> bool:
            raise AssertionError("must not be called without its arguments")

    assert adapter(InputValidator).validate() is None


def test_it_calls_analyze_with_options_for_an_older_plugin() -> None:
    class Legacy:
        def analyze(self, image_bytes: bytes, options: dict[str, Any] | None = None) -> Any:
            return {"n": len(image_bytes), "options": options}

    wrapped = adapter(Legacy)

    assert wrapped.run("analyze", {"image_bytes": PNG, "options": {"a": 1}}) == {
        "n": 16,
        "options": {"a": 1},
    }
    assert wrapped.run("analyze", {"image_bytes": PNG, "mime_type": "image/png", "k": 2}) == {
        "n": 16,
        "options": {"k": 2},
    }
    with pytest.raises(warden.InvalidInput, match=r"^tool 'analyze' needs an image"):
        wrapped.run("analyze", {})
    assert wrapped.describe() == {
        "class": f"{Legacy.__module__}.{Legacy.__qualname__}",
        "legacy": True,
        "tools": [{"id": "analyze", "declared": ["image_bytes", "options"]}],
    }


def test_it_refuses_a_class_with_neither_tools_nor_analyze() -> None:
    class Nothing:
        tools: dict[str, Any] = {}

    class NoHandler:
        tools = {"t": {"description": "no handler"}}

    with pytest.raises(ForgeSyteFormatError, match="has no `tools` dict and no analyze"):
        adapter(Nothing)
    with pytest.raises(ForgeSyteFormatError, match="has no run_tool\\(\\) and tool\\(s\\) 't'"):
        adapter(NoHandler)


def test_it_describes_tools_as_json() -> None:
    facts = adapter(Recorder).describe()

    assert facts["name"] == "recorder"
    assert facts["tools"][1] == {
        "id": "b64_tool",
        "declared": ["image_base64"],
        "input_schema": {"image_base64": {"type": "string"}},
    }
    assert facts["tools"][3] == {"id": "plain", "declared": ["text"]}


# --- translation rules -----------------------------------------------------------------------


def test_it_names_plugins_after_their_entry_point() -> None:
    assert plugin_name("ocr") == "forgesyte_ocr"
    assert plugin_name("yolo-tracker") == "forgesyte_yolo_tracker"
    assert plugin_name("Block.Mapper") == "forgesyte_block_mapper"


def test_it_maps_input_types_to_mime_patterns() -> None:
    assert mime_patterns(["image_bytes"]) == ["image/*"]
    assert mime_patterns(["video", "image_bytes", "image"]) == ["video/*", "image/*"]
    assert mime_patterns(["image/png", "pdf"]) == ["image/png", "application/pdf"]
    assert mime_patterns(["image_bytes", "json"]) is None  # an unknown word: accept any file
    assert mime_patterns([]) is None
    assert mime_patterns(None) is None


def test_it_strips_the_upload_from_a_pydantic_input_schema() -> None:
    class OCRInput(BaseModel):
        image_bytes: bytes
        options: dict[str, Any] | None = None

    schema = input_schema(OCRInput.model_json_schema(), {"language": "str", "psm": "int"})

    assert schema == {
        "title": "OCRInput",
        "type": "object",
        "properties": {
            "options": {
                "anyOf": [{"additionalProperties": True, "type": "object"}, {"type": "null"}],
                "default": None,
                "title": "Options",
            },
            "language": {"type": "string"},
            "psm": {"type": "integer"},
        },
    }


def test_it_keeps_flat_map_fields_usable_whatever_their_spelling() -> None:
    schema = input_schema(
        {
            "frame_base64": {"type": "string", "required": True},
            "image_base64": {"type": "string", "required": True},
            "threshold": {"type": "float", "default": 0.5, "min": 0.0},
            "weird": {"type": "tensor"},
            "broken": {"type": "string", "enum": "a,b"},
        }
    )

    assert schema == {
        "type": "object",
        "properties": {
            "frame_base64": {"type": "string"},
            "image_base64": {"type": "string"},
            "threshold": {"type": "number", "default": 0.5, "min": 0.0},
            "weird": {"description": "ForgeSyte type 'tensor'"},
            "broken": {"description": "ForgeSyte field"},
        },
        "required": ["frame_base64"],
    }


def test_it_checks_only_declared_output_types_of_flat_maps() -> None:
    assert output_schema(None, {"text": "string", "blocks": "array"}) == {
        "type": "object",
        "properties": {"text": {"type": ["string", "null"]}, "blocks": {"type": ["array", "null"]}},
    }
    assert output_schema({"type": "object", "required": ["x"]}, {"text": "string"}) == {
        "type": "object",
        "required": ["x"],
    }
    assert output_schema(None, None, {}) is None


# --- requirements (Requires-Dist) ------------------------------------------------------------


def test_it_accepts_installed_distributions_by_any_spelling_of_their_name() -> None:
    assert check_distribution("pydantic>=2", {}) == []
    assert check_distribution("PyDantic_Core", {}) == []
    assert check_distribution("celery[redis]", {}) == []


def test_it_skips_requirements_whose_marker_is_false_here() -> None:
    assert check_distribution('nope-not-installed; extra == "dev"', {}) == []
    assert check_distribution('nope-not-installed; python_version < "3"', {}) == []
    assert check_distribution('nope-not-installed; sys_platform == "linux"', {}) == [
        Missing(
            "Missing Python package 'nope-not-installed' (install with: pip install "
            "nope-not-installed)",
            "pip install nope-not-installed",
        )
    ]


def test_it_names_what_an_extra_needs_that_is_missing() -> None:
    missing = check_distribution("celery[sqs]", {})

    assert missing[0] == Missing(
        "Missing Python package 'boto3' (needed by 'celery[sqs]') (install with: pip install "
        "'boto3>=1.26.143')",
        "pip install 'boto3>=1.26.143'",
    )
    assert "Missing Python package 'pycurl' (needed by 'celery[sqs]')" in missing[1].reason


def test_it_reports_a_version_that_does_not_satisfy_the_requirement() -> None:
    assert check_distribution(
        "pydantic<2", {"hints": {"pydantic": "pip install 'pydantic<2'"}}
    ) == [
        Missing(
            "Python package 'pydantic' is version 2.14.3, but 'pydantic<2' is required "
            "(install with: pip install 'pydantic<2')",
            "pip install 'pydantic<2'",
        )
    ]
    assert check_distribution("not a requirement!", {}) == [
        Missing(
            "Cannot check requirement 'not a requirement!': Expected semicolon (after name "
            "with no version specifier) or end",
            None,
        )
    ]
