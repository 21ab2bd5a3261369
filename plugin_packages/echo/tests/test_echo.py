"""Tests for the echo plugin; they load it straight from its folder (no Django needed)."""

from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path
from types import ModuleType

import pytest

PLUGIN_DIR = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parents[3]))  # repo root, for `import warden`

import warden  # noqa: E402


def load_plugin() -> ModuleType:
    spec = importlib.util.spec_from_file_location("echo_plugin", PLUGIN_DIR / "plugin.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def plugin():
    instance = load_plugin().Plugin()
    instance.validate()
    return instance


def test_it_echoes_args_and_image_size(plugin):
    result = plugin.run(
        "echo", {"a": 1, "b": [True, None], "image_bytes": b"\x89PNG....", "mime_type": "image/png"}
    )
    assert result == {
        "args": {"a": 1, "b": [True, None], "mime_type": "image/png"},
        "image_size": 8,
    }


def test_it_reports_null_image_size_without_a_file(plugin):
    assert plugin.run("echo", {}) == {"args": {}, "image_size": None}


def test_it_reports_zero_for_an_empty_file(plugin):
    assert plugin.run("echo", {"image_bytes": b""}) == {"args": {}, "image_size": 0}


def test_it_sleeps(plugin):
    started = time.monotonic()
    assert plugin.run("sleep", {"seconds": 0.2}) == {"slept_s": 0.2}
    assert time.monotonic() - started >= 0.2


@pytest.mark.parametrize("seconds", [-1, 31, "1", None, True])
def test_it_rejects_bad_sleep_seconds(plugin, seconds):
    with pytest.raises(warden.InvalidInput):
        plugin.run("sleep", {"seconds": seconds})


def test_it_rejects_an_unknown_tool(plugin):
    with pytest.raises(warden.InvalidInput, match="unknown tool 'nope'"):
        plugin.run("nope", {})
