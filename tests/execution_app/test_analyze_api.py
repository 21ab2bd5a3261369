"""Bad analyze requests: each gets its envelope, and nothing is queued or counted."""

from __future__ import annotations

import base64
import io

import pytest
from django.conf import settings

from execution_app.models import Job
from plugins_app.models import PluginHost, PluginRecord
from tests.conftest import RUNTIME_PLUGINS

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def plugins(sync_plugins, samples):
    sync_plugins(samples("echo", "video_tracker"), RUNTIME_PLUGINS)


def post(client, body, **kwargs):
    response = client.post(
        "/v1/analyze-execution", body, format=kwargs.pop("format", "json"), **kwargs
    )
    assert response.status_code != 500
    return response


def error_of(response, status, error_type):
    assert response.status_code == status, response.content
    error = response.json()["error"]
    assert set(error) == {"type", "message", "details", "plugin", "job_id", "timestamp"}
    assert error["type"] == error_type
    return error


def assert_nothing_queued_or_counted():
    assert Job.objects.count() == 0
    faulty = PluginRecord.objects.get(name="faulty")
    assert (faulty.state, faulty.success_count, faulty.error_count) == ("INITIALIZED", 0, 0)


def test_it_requires_a_token(plugins, api_client):
    error = error_of(post(api_client, {"plugin": "faulty"}), 401, "AuthenticationFailed")
    assert error["message"] == "Authentication credentials were not provided."
    assert_nothing_queued_or_counted()


def test_it_rejects_a_wrong_token(plugins, api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    error_of(post(api_client, {"plugin": "faulty"}), 401, "AuthenticationFailed")


def test_it_rejects_an_unknown_plugin(plugins, auth_client):
    error = error_of(post(auth_client, {"plugin": "nope"}), 400, "PluginNotFound")
    assert error["message"] == "No plugin named 'nope'"
    assert_nothing_queued_or_counted()


def test_it_rejects_an_unknown_tool(plugins, auth_client):
    error = error_of(post(auth_client, {"plugin": "faulty", "tool": "fly"}), 400, "ValidationError")
    assert error["message"].startswith(
        "Plugin 'faulty' has no tool 'fly' (tools: ok, image, raise,"
    )
    assert error["details"]["field"] == "tool"
    assert_nothing_queued_or_counted()


def test_it_checks_args_against_the_input_schema(plugins, auth_client):
    response = post(auth_client, {"plugin": "faulty", "tool": "ok", "args": {"n": -1}})
    error = error_of(response, 400, "ValidationError")
    assert error["message"] == (
        "args of tool 'ok' do not match its input_schema: n: -1 is less than the minimum of 0"
    )
    assert error["details"]["errors"] == [
        {"path": "n", "message": "-1 is less than the minimum of 0"}
    ]
    assert_nothing_queued_or_counted()


def test_it_requires_args_to_be_an_object(plugins, auth_client):
    error = error_of(post(auth_client, {"plugin": "faulty", "args": [1]}), 400, "ValidationError")
    assert error["details"]["fields"]["args"] == ["must be a JSON object"]


def test_it_rejects_invalid_base64(plugins, auth_client):
    body = {"plugin": "faulty", "tool": "image", "image": "%%%not-base64%%%"}
    error = error_of(post(auth_client, body), 400, "ValidationError")
    assert error["message"].startswith("Invalid request: image: not valid base64")
    assert_nothing_queued_or_counted()


def test_it_rejects_a_file_of_the_wrong_type(plugins, auth_client):
    body = {"plugin": "faulty", "tool": "image", "image": base64.b64encode(b"GIF89a....").decode()}
    error = error_of(post(auth_client, body), 400, "ValidationError")
    assert error["message"] == "Tool 'image' accepts image/png, not image/gif"
    assert_nothing_queued_or_counted()


def test_it_rejects_a_mime_type_that_contradicts_the_content(plugins, auth_client):
    body = {
        "plugin": "faulty",
        "tool": "image",
        "image": base64.b64encode(PNG).decode(),
        "mime_type": "image/jpeg",
    }
    error = error_of(post(auth_client, body), 400, "ValidationError")
    assert error["message"] == "The file's content is image/png but mime_type says image/jpeg"


def test_it_rejects_an_empty_file(plugins, auth_client):
    upload = io.BytesIO(b"")
    upload.name = "empty.png"
    response = post(
        auth_client, {"plugin": "faulty", "tool": "image", "file": upload}, format="multipart"
    )
    error = error_of(response, 400, "ValidationError")
    assert error["message"] == "The uploaded file is empty"
    assert_nothing_queued_or_counted()


def test_it_rejects_an_oversized_file(plugins, auth_client, settings):
    settings.WARDEN_MAX_UPLOAD_MB = 1
    upload = io.BytesIO(PNG + b"\0" * (2 * 2**20))
    upload.name = "big.png"
    response = post(
        auth_client, {"plugin": "faulty", "tool": "image", "file": upload}, format="multipart"
    )
    error = error_of(response, 413, "PayloadTooLarge")
    assert error["details"] == {"size": len(PNG) + 2 * 2**20, "limit": 2**20}
    assert_nothing_queued_or_counted()


def test_it_rejects_an_oversized_body_before_parsing_it(plugins, auth_client):
    huge = "A" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE + 2**20 + 16)
    error = error_of(post(auth_client, {"plugin": "faulty", "image": huge}), 413, "PayloadTooLarge")
    assert error["message"].startswith("Request body is ")


def test_it_rejects_an_unavailable_plugin_with_its_reason(plugins, auth_client):
    error = error_of(post(auth_client, {"plugin": "video_tracker"}), 400, "PluginUnavailable")
    assert error["message"] == (
        "Plugin 'video_tracker' is not accepting jobs (UNAVAILABLE: No CUDA GPU "
        "(torch.cuda.is_available() is False; nvidia-smi not found); this plugin requires a GPU)"
    )
    assert error["details"]["state"] == "UNAVAILABLE"
    assert Job.objects.count() == 0


def test_it_rejects_a_plugin_that_failed_to_load(plugins, auth_client):
    PluginHost.objects.filter(plugin__name="echo").update(
        state="FAILED", reason="InitError: ValueError: model path not configured"
    )
    error = error_of(post(auth_client, {"plugin": "echo"}), 400, "PluginUnavailable")
    assert error["message"] == (
        "Plugin 'echo' is not accepting jobs (FAILED: InitError: ValueError: model path not configured)"
    )


def test_it_requires_the_plugin_field(plugins, auth_client):
    error = error_of(post(auth_client, {"tool": "ok"}), 400, "ValidationError")
    assert error["details"]["fields"] == {"plugin": ["This field is required."]}


def test_it_rejects_malformed_json(plugins, auth_client):
    response = auth_client.post(
        "/v1/analyze-execution", "{not json", content_type="application/json"
    )
    error = error_of(response, 400, "ValidationError")
    assert error["message"].startswith("JSON parse error")


def test_it_rejects_an_unsupported_content_type(plugins, auth_client):
    response = auth_client.post("/v1/analyze-execution", "plugin=echo", content_type="text/plain")
    error = error_of(response, 415, "UnsupportedMediaType")
    assert error["message"] == 'Unsupported media type "text/plain" in request.'


def test_it_rejects_get_on_analyze(plugins, auth_client):
    error = error_of(auth_client.get("/v1/analyze-execution"), 405, "MethodNotAllowed")
    assert error["message"] == 'Method "GET" not allowed.'


def test_it_rejects_a_non_positive_timeout(plugins, auth_client):
    error = error_of(
        post(auth_client, {"plugin": "faulty", "timeout_s": 0}), 400, "ValidationError"
    )
    assert "timeout_s" in error["details"]["fields"]
