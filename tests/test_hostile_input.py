"""Input that once produced a 500 (and its siblings): every answer is a 4xx envelope or a 200."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from rest_framework.authtoken.models import Token

from execution_app.models import Job
from project.errors import ERROR_STATUS
from tests.conftest import RUNTIME_PLUGINS
from tests.jobs import pending_job

ENVELOPE_KEYS = {"type", "message", "details", "plugin", "job_id", "timestamp"}


@pytest.fixture
def client(db: None, sync_plugins: Any, samples: Any) -> Client:
    """A Django test client with a real token, `echo` and `faulty` synced, no worker."""
    sync_plugins(samples("echo"), RUNTIME_PLUGINS)
    token = Token.objects.create(user=User.objects.create_user("hostile")).key
    return Client(HTTP_AUTHORIZATION=f"Token {token}")


def make_job() -> Job:
    return pending_job("echo", None)


def error_of(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.content[:500]
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == ENVELOPE_KEYS
    assert ERROR_STATUS[body["error"]["type"]] == status
    return body["error"]


def nested(steps: int) -> Any:
    """A value `2 * steps` levels deep."""
    value: Any = 1
    for _ in range(steps):
        value = {"a": [value]}
    return value


def nested_text(steps: int) -> str:
    """`nested(steps)` as JSON text, built without recursion."""
    return '{"a": [' * steps + "1" + "]}" * steps


# --- GET /v1/jobs: limit and offset -----------------------------------------------------------


@pytest.mark.parametrize("limit", ["99999999999999999999999", str(2**63), "1001", "5000"])
def test_it_clamps_a_huge_limit_to_1000(client: Client, limit: str) -> None:
    job = make_job()

    response = client.get(f"/v1/jobs?limit={limit}")

    assert response.status_code == 200, response.content[:300]
    assert [j["job_id"] for j in response.json()["results"]] == [str(job.pk)]


def test_it_never_serves_more_than_1000_jobs_a_page(client: Client) -> None:
    Job.objects.bulk_create(
        Job(plugin_name="echo", tool="echo", timeout_s=1, hard_timeout_s=2, memory_mb=1)
        for _ in range(1001)
    )

    page = client.get("/v1/jobs?limit=5000").json()

    assert (page["count"], len(page["results"])) == (1001, 1000)
    assert page["next"].endswith("limit=1000&offset=1000")


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("limit=0", "limit"),
        ("limit=1.5", "limit"),
        ("limit=1e3", "limit"),
        ("limit=5_0", "limit"),
        ("limit=%D9%A3", "limit"),  # an Arabic-Indic digit: int() would accept it
        ("limit=", "limit"),
        ("offset=-5", "offset"),
        ("offset=x", "offset"),
        ("offset=%2B5", "offset"),
    ],
)
def test_it_rejects_a_bad_limit_or_offset(client: Client, query: str, field: str) -> None:
    error = error_of(client.get(f"/v1/jobs?{query}"), 400)

    assert error["type"] == "ValidationError"
    assert error["details"]["field"] == field


def test_it_answers_an_empty_page_past_the_end(client: Client) -> None:
    response = client.get(f"/v1/jobs?offset={10**25}")

    assert response.status_code == 200
    assert response.json()["results"] == []


# --- deeply nested JSON ------------------------------------------------------------------------


@pytest.mark.parametrize("steps", [32, 100, 225, 450])  # 65 to 901 levels: below json's limit
@pytest.mark.parametrize("path", ["/v1/analyze-execution", "/v1/analyze-execution/async"])
def test_it_rejects_args_nested_too_deeply(client: Client, path: str, steps: int) -> None:
    body = '{"plugin": "echo", "args": {"x": ' + nested_text(steps) + "}}"

    error = error_of(client.post(path, body, content_type="application/json"), 400)

    assert error["type"] == "ValidationError"
    assert "nested" in error["message"]
    assert Job.objects.count() == 0


def test_it_accepts_args_nested_to_the_limit(client: Client, settings: Any) -> None:
    from execution_app.validation import MAX_JSON_DEPTH
    from project.storable import json_depth

    args = {"x": nested((MAX_JSON_DEPTH - 2) // 2)}
    assert json_depth(args) <= MAX_JSON_DEPTH
    body = json.dumps({"plugin": "echo", "args": args})

    response = client.post("/v1/analyze-execution/async", body, content_type="application/json")

    assert response.status_code in (202, 503), response.content[:300]  # 503: no worker here


def test_it_rejects_multipart_args_nested_too_deeply(client: Client) -> None:
    response = client.post(
        "/v1/analyze-execution/async",
        {"plugin": "echo", "args": '{"x": ' + nested_text(450) + "}"},
    )

    assert error_of(response, 400)["type"] == "ValidationError"


# --- multipart parts and headers that do not fit the columns ----------------------------------


def multipart(file_content_type: str, plugin: str = "echo", data: bytes = b"plain bytes") -> bytes:
    """An analyze body whose `file` part declares `file_content_type`."""
    return (
        f'--x\r\nContent-Disposition: form-data; name="plugin"\r\n\r\n{plugin}\r\n'.encode()
        + b'--x\r\nContent-Disposition: form-data; name="file"; filename="a.bin"\r\n'
        + f"Content-Type: {file_content_type}\r\n\r\n".encode()
        + data
        + b"\r\n--x--\r\n"
    )


@pytest.mark.parametrize(
    "content_type",
    ["application/" + "x" * 200, "text/" + "p" * 120, "not a mime type", "image\\png"],
)
def test_it_rejects_an_upload_whose_content_type_does_not_fit(
    client: Client, content_type: str
) -> None:
    response = client.post(
        "/v1/analyze-execution/async",
        multipart(content_type),
        content_type="multipart/form-data; boundary=x",
    )

    error = error_of(response, 400)
    assert (error["type"], error["details"]) == ("ValidationError", {"field": "mime_type"})
    assert Job.objects.count() == 0


def test_it_stores_a_long_but_valid_upload_parameter_list_as_its_type(client: Client) -> None:
    response = client.post(
        "/v1/analyze-execution/async",
        multipart("image/png; charset=" + "c" * 150, "faulty", b"\x89PNG\r\n\x1a\n0000"),
        content_type="multipart/form-data; boundary=x",
    )

    assert response.status_code in (202, 503), response.content[:300]  # 503: no worker here
    assert Job.objects.get().input_mime_type == "image/png"


# --- NUL and other unstorable characters in paths, queries and headers ------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/v1/plugins/ec%00ho/health",
        "/v1/jobs?plugin=ec%00ho",
        "/v1/jobs?status=%00",
        "/v1/jobs?limit=1%00",
        "/v1/jobs/%00",
        "/v1/plugins?x%00=1",
        "/admin/execution_app/job/?q=%00",
        "/admin/execution_app/job/?plugin_name=%00",
    ],
)
def test_it_answers_400_for_nul_in_a_path_or_query(
    client: Client, admin_client: Client, path: str
) -> None:
    caller = admin_client if path.startswith("/admin/") else client
    error = error_of(caller.get(path), 400)

    assert error["type"] == "ValidationError"
    assert "NUL" in error["message"]


def test_it_answers_401_for_nul_in_a_token(db: None, api_client: Any) -> None:
    api_client.credentials(HTTP_AUTHORIZATION="Token abc\x00def")

    response = api_client.get("/v1/jobs")

    assert response.status_code in (400, 401)
    assert response.json()["error"]["type"] in ("ValidationError", "AuthenticationFailed")


def test_it_answers_400_when_a_tool_schema_refers_nowhere(client: Client) -> None:
    # A record synced before manifests were checked for this: its schema cannot be evaluated.
    from plugins_app.models import PluginRecord

    echo = PluginRecord.objects.get(name="echo")
    echo.tools = [{**echo.tools[0], "input_schema": {"$ref": "https://example.com/s.json"}}]
    echo.save(update_fields=["tools"])

    response = client.post(
        "/v1/analyze-execution/async", {"plugin": "echo"}, content_type="application/json"
    )

    error = error_of(response, 400)
    assert error["type"] == "PluginUnavailable"
    assert error["message"] == (
        "Plugin 'echo' cannot check tool 'echo': its input_schema has a $ref that resolves "
        "nowhere; fix manifest.json and re-probe"
    )
    assert Job.objects.count() == 0


def test_it_rejects_an_empty_status_filter(client: Client) -> None:
    # Found by `make fuzz`: `?status=` was read as "no filter", although the schema's enum
    # allows no empty status.
    error = error_of(client.get("/v1/jobs?status="), 400)

    assert error["message"] == "Unknown status '' (one of PENDING, RUNNING, SUCCESS, FAILED)"


def test_it_stops_counting_jobs_past_the_bound(client: Client, monkeypatch: Any) -> None:
    from project.pagination import StrictLimitOffsetPagination

    monkeypatch.setattr(StrictLimitOffsetPagination, "count_exact_up_to", 20)
    Job.objects.bulk_create(
        Job(plugin_name="echo", tool="echo", timeout_s=1, hard_timeout_s=2, memory_mb=1)
        for _ in range(40)
    )

    first = client.get("/v1/jobs?limit=10").json()
    deep = client.get("/v1/jobs?limit=10&offset=25").json()
    last = client.get("/v1/jobs?limit=10&offset=30").json()
    exact = client.get("/v1/jobs?limit=10&status=PENDING&offset=35").json()

    assert (first["count"], first["count_exact"], len(first["results"])) == (21, False, 10)
    assert first["next"].endswith("limit=10&offset=10")
    assert (deep["count"], deep["count_exact"], len(deep["results"])) == (36, False, 10)
    assert deep["next"].endswith("limit=10&offset=35")
    assert (last["count"], last["count_exact"], len(last["results"])) == (40, True, 10)
    assert last["next"] is None
    assert (exact["count"], exact["count_exact"], len(exact["results"])) == (40, True, 5)
