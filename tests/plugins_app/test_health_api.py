"""Health API: GET /v1/plugins and /v1/plugins/{name}/health, and the error envelope."""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.utils import timezone
from rest_framework.test import APIClient

from plugins_app.models import PluginRecord
from tests.plugins_app.faults import copy_plugins

HEALTH_FIELDS = {
    "name",
    "version",
    "description",
    "state",
    "reason",
    "hint",
    "accepting_jobs",
    "requires_gpu",
    "tools",
    "success_count",
    "error_count",
    "consecutive_failures",
    "uptime_seconds",
    "loaded_at",
    "last_used",
    "last_execution_time_ms",
    "avg_execution_time_ms",
    "hosts",
}
HOST_FIELDS = {"host", "queues", "state", "reason", "hint", "probed_at", "alive"}
ENVELOPE_FIELDS = {"type", "message", "details", "plugin", "job_id", "timestamp"}
NO_TOOL_DETAILS = [
    {
        "name": "run",
        "description": None,
        "input_types": [],
        "input_schema": None,
        "output_schema": None,
    }
]


def parse_utc(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


def assert_envelope(
    body: dict[str, Any], error_type: str, message: str, plugin: str | None = None
) -> None:
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) == ENVELOPE_FIELDS
    assert (error["type"], error["message"]) == (error_type, message)
    assert (error["plugin"], error["job_id"]) == (plugin, None)
    parse_utc(error["timestamp"])


@pytest.fixture
def synced(sync_plugins: Any, tmp_path: Path) -> Path:
    """Three plugins, one per state; created in an order that is not sorted by name."""
    first, second = tmp_path / "a", tmp_path / "b"
    copy_plugins(first, "validate_error", "missing_package")
    copy_plugins(second, "healthy")
    sync_plugins(first, second)
    return tmp_path


def test_it_lists_every_plugin_sorted_by_name_with_every_field(
    synced: Path, api_client: APIClient
) -> None:
    creation_order = list(PluginRecord.objects.order_by("id").values_list("name", flat=True))

    response = api_client.get("/v1/plugins")

    assert response.status_code == 200
    body = response.json()
    assert creation_order == ["missing_package", "validate_error", "healthy"]
    assert [p["name"] for p in body] == ["healthy", "missing_package", "validate_error"]
    assert [p["state"] for p in body] == ["INITIALIZED", "UNAVAILABLE", "FAILED"]
    for plugin in body:
        assert set(plugin) == HEALTH_FIELDS


def test_it_reports_an_initialized_plugin(synced: Path, api_client: APIClient) -> None:
    response = api_client.get("/v1/plugins/healthy/health")

    assert response.status_code == 200
    body = response.json()
    loaded_at = parse_utc(body.pop("loaded_at"))
    uptime = body.pop("uptime_seconds")
    [host] = body.pop("hosts")
    assert loaded_at == PluginRecord.objects.get(name="healthy").loaded_at
    assert set(host) == HOST_FIELDS
    assert (host["host"], host["state"], host["reason"], host["hint"]) == (
        settings.WARDEN_HOST_NAME,
        "INITIALIZED",
        None,
        None,
    )
    # Whether a worker is alive depends on what else this test session started.
    assert host["alive"] in (None, False, True)
    assert isinstance(uptime, float)
    assert 0 <= uptime <= (timezone.now() - loaded_at).total_seconds()
    assert body == {
        "name": "healthy",
        "version": "1.0.0",
        "description": "Fault suite reference: imports, inits and validates cleanly",
        "state": "INITIALIZED",
        "reason": None,
        "hint": None,
        "accepting_jobs": True,
        "requires_gpu": False,
        "tools": NO_TOOL_DETAILS,
        "success_count": 0,
        "error_count": 0,
        "consecutive_failures": 0,
        "last_used": None,
        "last_execution_time_ms": None,
        "avg_execution_time_ms": None,
    }


def test_it_serves_the_serialized_records_with_each_uptime_brought_up_to_now(
    synced: Path, api_client: APIClient
) -> None:
    from plugins_app.apis import _render
    from plugins_app.selectors import plugin_health, plugin_list

    loaded = {p.name: p.loaded_at for p in PluginRecord.objects.all()}
    expected = json.loads(json.dumps(_render([plugin_health(p, None) for p in plugin_list()])))
    uptimes: dict[str, list[float]] = {}
    for _ in range(2):  # the second request is served from this process's cached body
        before = timezone.now()
        body = api_client.get("/v1/plugins").json()
        after = timezone.now()
        one = api_client.get("/v1/plugins/healthy/health").json()
        assert one == next(r for r in body if r["name"] == "healthy") | {
            "uptime_seconds": one["uptime_seconds"]
        }
        for record, serialized in zip(body, expected, strict=True):
            name, uptime = record["name"], record.pop("uptime_seconds")
            serialized.pop("uptime_seconds", None)
            record["hosts"] = [h | {"alive": None} for h in record["hosts"]]
            serialized["hosts"] = [h | {"alive": None} for h in serialized["hosts"]]
            assert record == serialized
            if loaded[name] is None:
                assert uptime is None
                continue
            low = (before - loaded[name]).total_seconds() - 0.001
            high = (after - loaded[name]).total_seconds() + 0.001
            assert low <= uptime <= high
            uptimes.setdefault(name, []).append(uptime)
    assert uptimes["healthy"][1] > uptimes["healthy"][0]


def test_it_never_modifies_the_cached_records_while_encoding_a_body(
    synced: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """gunicorn threads share the cache: one thread's encoding must not show in another's."""
    from plugins_app import selectors
    from plugins_app.apis import _encode, _render

    monkeypatch.setattr(selectors, "_rendered", None)  # built here, whatever ran before
    seen: list[list[Any]] = []

    def encode(data: Any) -> str:
        cached = selectors._rendered
        assert cached is not None
        seen.append([r["uptime_seconds"] for r in cached.records])
        return _encode(data)

    selectors.health_body(None, _render, encode)
    selectors.health_body(None, _render, encode, "healthy")

    assert len(seen) == 2
    assert all(u is None or isinstance(u, float) for uptimes in seen for u in uptimes)
    assert any(isinstance(u, float) for u in seen[0])


def test_it_shows_every_registry_change_on_the_next_request(
    synced: Path, api_client: APIClient
) -> None:
    from django.db.models import F

    from execution_app.models import Job
    from plugins_app.models import PluginHost

    def healthy() -> dict[str, Any]:
        return api_client.get("/v1/plugins/healthy/health").json()

    assert (healthy()["state"], healthy()["success_count"]) == ("INITIALIZED", 0)
    plugin = PluginRecord.objects.get(name="healthy")

    job = Job.objects.create(
        plugin=plugin, plugin_name="healthy", tool="run", status="RUNNING",
        timeout_s=1, hard_timeout_s=2, memory_mb=100,
    )  # fmt: skip
    assert healthy()["state"] == "RUNNING"
    Job.objects.filter(pk=job.pk).update(status="SUCCESS")
    assert healthy()["state"] == "INITIALIZED"

    PluginRecord.objects.filter(pk=plugin.pk).update(
        success_count=7, metrics_version=F("metrics_version") + 1
    )
    assert healthy()["success_count"] == 7

    PluginHost.objects.filter(plugin=plugin).update(reason="a reason", updated_at=timezone.now())
    assert [h["reason"] for h in healthy()["hosts"]] == ["a reason"]


def test_it_shows_a_change_stamped_earlier_than_the_newest_row(
    synced: Path, api_client: APIClient
) -> None:
    """A host whose clock is behind (or two writes committing in the other order) writes an
    `updated_at` older than the newest row's: the change must still show."""
    from datetime import timedelta

    from plugins_app.models import PluginHost

    other = PluginHost.objects.exclude(plugin__name="healthy").first()
    assert other is not None
    PluginHost.objects.filter(pk=other.pk).update(updated_at=timezone.now() + timedelta(hours=1))
    assert api_client.get("/v1/plugins/healthy/health").json()["hosts"][0]["reason"] is None

    entry = PluginHost.objects.get(plugin__name="healthy")
    entry.reason = "written by a host whose clock is behind"
    entry.save()  # auto_now: stamped now, an hour before the newest row

    [host] = api_client.get("/v1/plugins/healthy/health").json()["hosts"]
    assert host["reason"] == "written by a host whose clock is behind"


def test_it_reports_a_failed_plugin_with_reason_and_hint(
    synced: Path, api_client: APIClient
) -> None:
    response = api_client.get("/v1/plugins/validate_error/health")

    assert response.status_code == 200
    body = response.json()
    assert body["state"] == "FAILED"
    assert body["reason"] == "ValidationFailed: RuntimeError: license file /etc/xyz.lic not found"
    assert body["hint"] == (
        "fix the RuntimeError raised by validate() of plugin 'validate_error', then re-probe; the "
        "traceback is in `manage.py plugins check validate_error` and the admin"
    )
    assert (body["accepting_jobs"], body["uptime_seconds"], body["loaded_at"]) == (
        False,
        None,
        None,
    )
    assert "Traceback" not in json.dumps(body)  # tracebacks are for operators, not clients


def test_it_reports_an_unavailable_plugin_with_reason_and_hint(
    synced: Path, api_client: APIClient
) -> None:
    response = api_client.get("/v1/plugins/missing_package/health")

    assert response.status_code == 200
    body = response.json()
    assert (body["state"], body["reason"], body["hint"]) == (
        "UNAVAILABLE",
        "Missing Python package 'nonexistent_pkg_xyz' (install with: pip install "
        "nonexistent_pkg_xyz)",
        "pip install nonexistent_pkg_xyz",
    )
    assert (body["accepting_jobs"], body["uptime_seconds"], body["loaded_at"]) == (
        False,
        None,
        None,
    )


def test_it_answers_404_in_the_envelope_for_an_unknown_plugin(
    synced: Path, api_client: APIClient
) -> None:
    response = api_client.get("/v1/plugins/nope/health")

    assert response.status_code == 404
    assert_envelope(response.json(), "PluginNotFound", "No plugin named 'nope'", plugin="nope")
    assert response.json()["error"]["details"] == {}


def test_it_requires_a_token_when_health_is_not_public(
    synced: Path, api_client: APIClient, auth_client: APIClient, settings: Any
) -> None:
    settings.WARDEN_PUBLIC_HEALTH = False

    for path in ("/v1/plugins", "/v1/plugins/healthy/health"):
        denied = api_client.get(path)
        assert denied.status_code == 401
        assert denied["WWW-Authenticate"] == 'Token realm="api"'
        assert_envelope(
            denied.json(), "AuthenticationFailed", "Authentication credentials were not provided."
        )
        assert auth_client.get(path).status_code == 200

    assert [p["name"] for p in auth_client.get("/v1/plugins").json()] == [
        "healthy",
        "missing_package",
        "validate_error",
    ]


def test_it_rejects_a_wrong_token_when_health_is_not_public(
    synced: Path, api_client: APIClient, settings: Any
) -> None:
    settings.WARDEN_PUBLIC_HEALTH = False
    api_client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    response = api_client.get("/v1/plugins")

    assert response.status_code == 401
    assert_envelope(response.json(), "AuthenticationFailed", "Invalid token.")


def test_it_answers_405_in_the_envelope_for_post(synced: Path, api_client: APIClient) -> None:
    response = api_client.post("/v1/plugins", {"name": "x"}, format="json")

    assert response.status_code == 405
    assert_envelope(response.json(), "MethodNotAllowed", 'Method "POST" not allowed.')
    assert PluginRecord.objects.count() == 3


def test_it_answers_404_in_the_envelope_for_an_unknown_url(api_client: APIClient) -> None:
    response = api_client.get("/v1/nope")

    assert response.status_code == 404
    assert response["Content-Type"] == "application/json"
    assert_envelope(response.json(), "NotFound", "No such endpoint: /v1/nope")


def test_it_never_imports_plugin_code_to_answer(synced: Path, api_client: APIClient) -> None:
    api_client.get("/v1/plugins")
    api_client.get("/v1/plugins/healthy/health")

    assert [m for m in sys.modules if m.startswith("warden_plugins")] == []


@pytest.mark.django_db
def test_it_serves_an_openapi_document(api_client: APIClient) -> None:
    response = api_client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")

    assert response.status_code == 200
    schema = json.loads(response.content)
    assert schema["openapi"].startswith("3.")
    assert schema["info"]["title"] == "Warden API"
    assert {"/v1/plugins", "/v1/plugins/{name}/health"} <= set(schema["paths"])
    health = schema["components"]["schemas"]["PluginHealth"]
    assert set(health["properties"]) == HEALTH_FIELDS


@pytest.mark.django_db
def test_it_serves_the_api_docs_page(api_client: APIClient) -> None:
    response = api_client.get("/api/docs/")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert b"swagger-ui" in response.content
