"""ForgeSyte plugins through the API on a real prefork worker: uploads, pydantic results,
ValueError as a client error, base64 inputs, older analyze() plugins, crashes and time limits."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import pytest

from execution_app.models import Job
from plugins_app.models import PluginRecord
from tests.execution_app.test_live_api import png_bytes

pytestmark = pytest.mark.slow


@pytest.fixture
def forgesyte_live(
    transactional_db: None, celery_worker: Any, sync_plugins: Any, forgesyte_sites: Any
) -> Any:
    """The worker runs jobs; the ForgeSyte fixture packages are installed and synced."""
    assert celery_worker.alive(), celery_worker.log_text()
    forgesyte_sites("tools", "noman", "legacy", "hostapp_fallback")
    sync_plugins()
    assert sorted(PluginRecord.objects.values_list("name", "state")) == [
        ("forgesyte_fsfix_tools", "INITIALIZED"),
        ("forgesyte_hostapp_fallback", "INITIALIZED"),
        ("forgesyte_legacy", "INITIALIZED"),
        ("forgesyte_noman", "INITIALIZED"),
    ]
    return celery_worker


def upload(client: Any, plugin: str, tool: str, args: dict[str, Any] | None = None) -> Any:
    image = io.BytesIO(png_bytes())
    image.name = "pixel.png"
    body = {"plugin": plugin, "tool": tool, "file": image, "args": json.dumps(args or {})}
    response = client.post("/v1/analyze-execution", body, format="multipart")
    assert response.status_code != 500
    return response


def analyze(client: Any, plugin: str, tool: str, args: dict[str, Any], **extra: Any) -> Any:
    body = {"plugin": plugin, "tool": tool, "args": args, **extra}
    response = client.post("/v1/analyze-execution", body, format="json")
    assert response.status_code != 500
    return response


def counts(name: str) -> tuple[str, int, int]:
    plugin = PluginRecord.objects.get(name=name)
    return plugin.state, plugin.success_count, plugin.error_count


def test_it_runs_a_forgesyte_tool_on_an_upload_and_returns_its_pydantic_result(
    forgesyte_live: Any, auth_client: Any
) -> None:
    response = upload(
        auth_client, "forgesyte_fsfix_tools", "describe", {"options": {"label": "cat"}}
    )

    assert response.status_code == 200, response.json()
    body = response.json()
    assert (body["plugin"], body["tool"], body["status"]) == (
        "forgesyte_fsfix_tools",
        "describe",
        "SUCCESS",
    )
    assert body["result"] == {"size": len(png_bytes()), "label": "cat", "magic": "PNG"}
    assert counts("forgesyte_fsfix_tools") == ("INITIALIZED", 1, 0)


def test_it_makes_a_forgesyte_value_error_a_client_error(
    forgesyte_live: Any, auth_client: Any
) -> None:
    response = analyze(auth_client, "forgesyte_fsfix_tools", "shout_text", {"text": ""})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["message"], error["details"]) == (
        "ValidationError",
        "text must not be empty",
        {"raised_by": "plugin"},
    )
    assert counts("forgesyte_fsfix_tools") == ("INITIALIZED", 0, 0)
    # the same (async) tool with good input
    response = analyze(auth_client, "forgesyte_fsfix_tools", "shout_text", {"text": "warden"})
    assert (response.status_code, response.json()["result"]) == (200, {"text": "WARDEN"})
    assert counts("forgesyte_fsfix_tools") == ("INITIALIZED", 1, 0)


def test_it_gives_base64_text_to_a_tool_that_takes_image_base64(
    forgesyte_live: Any, auth_client: Any
) -> None:
    image = base64.b64encode(png_bytes()).decode()

    response = analyze(auth_client, "forgesyte_noman", "read_b64", {"prefix": "got"}, image=image)

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"text": "got:PNG", "length": len(png_bytes())}
    missing = analyze(auth_client, "forgesyte_noman", "count", {})
    assert missing.status_code == 400
    assert missing.json()["error"]["message"] == (
        "args of tool 'count' do not match its input_schema: /: 'text' is a required property"
    )
    assert not Job.objects.filter(plugin_name="forgesyte_noman", tool="count").exists()


def test_it_runs_an_older_analyze_plugin_with_its_options(
    forgesyte_live: Any, auth_client: Any
) -> None:
    response = upload(auth_client, "forgesyte_legacy", "analyze", {"options": {"k": 1}})

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"bytes": len(png_bytes()), "options": {"k": 1}}


def test_it_runs_a_plugin_that_falls_back_when_forgesyte_app_is_absent(
    forgesyte_live: Any, auth_client: Any
) -> None:
    response = analyze(auth_client, "forgesyte_hostapp_fallback", "hello", {"who": "warden"})

    assert response.status_code == 200, response.json()
    assert response.json()["result"] == {"hello": "warden", "standalone": True}


def test_it_survives_a_forgesyte_tool_that_ends_its_process(
    forgesyte_live: Any, auth_client: Any
) -> None:
    response = analyze(auth_client, "forgesyte_fsfix_tools", "crash", {})

    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["type"], error["details"]["exit_code"]) == ("PluginCrashed", 3)
    assert error["message"] == (
        "Tool 'crash' of plugin 'forgesyte_fsfix_tools' crashed its worker process (exit code 3); "
        "the worker replaced it"
    )
    assert counts("forgesyte_fsfix_tools") == ("FAILED", 0, 1)
    assert forgesyte_live.alive()
    again = analyze(auth_client, "forgesyte_fsfix_tools", "shout_text", {"text": "back"})
    assert (again.status_code, again.json()["result"]) == (200, {"text": "BACK"})
    assert counts("forgesyte_fsfix_tools") == ("INITIALIZED", 1, 1)


def test_it_fails_a_forgesyte_tool_that_swallows_the_soft_limit(
    transactional_db: None,
    celery_worker: Any,
    sync_plugins: Any,
    forgesyte_sites: Any,
    auth_client: Any,
    settings: Any,
) -> None:
    """Needs the honest soft limit (issue #6): the late result must be discarded."""
    settings.WARDEN_DEFAULT_TIMEOUT_S = 1  # ForgeSyte plugins declare no limits of their own
    forgesyte_sites("tools")
    sync_plugins()
    assert PluginRecord.objects.get(name="forgesyte_fsfix_tools").timeout_s == 1.0

    response = analyze(auth_client, "forgesyte_fsfix_tools", "spin", {"seconds": 30})

    assert response.status_code == 400, response.json()
    error = response.json()["error"]
    assert (error["type"], error["details"]["kind"], error["details"]["limit_s"]) == (
        "TimeoutError",
        "soft",
        1.0,
    )
    assert error["message"] == (
        "Tool 'spin' of plugin 'forgesyte_fsfix_tools' exceeded its 1 s time limit (it returned "
        "late, after ignoring the interruption; its result was discarded)"
    )
    job = Job.objects.get(pk=error["job_id"])
    assert (job.status, job.result) == ("FAILED", None)
    assert counts("forgesyte_fsfix_tools") == ("FAILED", 0, 1)
