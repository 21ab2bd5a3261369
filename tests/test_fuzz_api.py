"""Hostile bodies through the WSGI app with no worker: parsers and validation answer every one
with a 4xx envelope, and what passes validation is refused with 503 for want of a worker (the
same bodies against a live worker, and schemathesis, are in tests/test_fuzz_live.py)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from rest_framework.authtoken.models import Token
from werkzeug.test import Client

from execution_app import workers
from execution_app.models import Job
from project.errors import ERROR_STATUS
from project.wsgi import application
from tests.conftest import RUNTIME_PLUGINS

ENVELOPE_KEYS = {"type", "message", "details", "plugin", "job_id", "timestamp"}
JSON = "application/json"
FORM = "application/x-www-form-urlencoded"
MULTIPART = "multipart/form-data; boundary=x"
NO_WORKER = "No worker is consuming queue "
ANALYZE_PATHS = ("/v1/analyze-execution", "/v1/analyze-execution/async")
READY_PATH = "/health/ready"


@dataclass
class FuzzEnv:
    token: str
    client: Client


@pytest.fixture
def fuzz_env(
    db: None, redis_proc: Any, sync_plugins: Any, samples: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FuzzEnv]:
    """Plugins synced, a user with a real token, a real Redis on which no worker announces itself.

    Requests go through the WSGI app in this thread, inside the test's transaction; like Django's
    test client, keep the request signals from closing that connection.
    """
    sync_plugins(samples("echo"), RUNTIME_PLUGINS)
    user = User.objects.create_user("fuzzer", password="pw-fuzzer")
    token = Token.objects.create(user=user)
    # A worker of another test in this session may be announcing itself on the shared Redis;
    # this test's API must see none, so dispatch answers 503 instead of queueing.
    monkeypatch.setattr(workers, "KEY_PREFIX", "warden-fuzz:workers")
    monkeypatch.setattr(workers, "_seen_live", {})  # no cached "a worker is live" answer
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield FuzzEnv(token=token.key, client=Client(application))
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def assert_contract(status: int, content_type: str, body: bytes, path: str, request: str) -> None:
    """No 500s (503 only from analyze, for want of a worker); every error is the exact envelope."""
    where = f"{request}\n-> {status} {body[:2000]!r}"
    if path == READY_PATH and status == 503:  # not ready (no worker here): its own shape
        payload = json.loads(body)
        assert set(payload) == {"status", "checks"} and payload["status"] == "unavailable", where
        assert any(c["status"] == "fail" and c["reason"] for c in payload["checks"].values()), where
        return
    assert status < 500 or (status == 503 and path in ANALYZE_PATHS), where
    if status < 400:
        return
    assert content_type.startswith(JSON), where
    payload = json.loads(body)
    if status == 503:  # Redis and the database are up here: the only cause is the missing worker
        assert payload["error"]["message"].startswith(NO_WORKER), where
    assert set(payload) == {"error"}, where
    error = payload["error"]
    assert set(error) == ENVELOPE_KEYS, where
    assert error["type"] in ERROR_STATUS, where
    assert isinstance(error["message"], str) and error["message"], where
    assert isinstance(error["details"], dict), where
    assert error["plugin"] is None or isinstance(error["plugin"], str), where
    assert error["job_id"] is None or isinstance(error["job_id"], str), where
    assert isinstance(error["timestamp"], str), where


# --- hand-written nasty bodies for the analyze endpoints -------------------------------------

DEEP = 5_000


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


NASTY_JSON: list[Any] = [
    {},
    [],
    [{"plugin": "echo"}],
    "echo",
    None,
    42,
    True,
    {"plugin": None},
    {"plugin": ""},
    {"plugin": 42},
    {"plugin": ["echo"]},
    {"plugin": {"name": "echo"}},
    {"plugin": "e" * 10_000},
    {"plugin": "echo\x00"},
    {"plugin": "\u00e9cho \u2603 \U0001f600"},
    {"plugin": "../../etc/passwd"},
    {"plugin": "echo", "tool": 7},
    {"plugin": "echo", "tool": ""},
    {"plugin": "echo", "tool": "nope"},
    {"plugin": "echo", "tool": ["echo"]},
    {"plugin": "echo", "tool": "echo\x00"},
    {"plugin": "echo", "args": []},
    {"plugin": "echo", "args": "not json"},
    {"plugin": "echo", "args": '{"a": 1}'},
    {"plugin": "echo", "args": 12},
    {"plugin": "echo", "args": {"n": 10**400}},
    {"plugin": "echo", "args": {"n": -(10**400), "f": 1e308, "tiny": 5e-324}},
    {"plugin": "echo", "args": {"s": "\x00\x01\x02 \u202e \ufeff \U0010ffff"}},
    {"plugin": "echo", "args": {"\x00": None, "": [], "\u2603": {"a": {"b": {"c": [1, [2]]}}}}},
    {"plugin": "echo", "args": {"x": nested(200)}},
    {"plugin": "echo", "tool": "sleep", "args": {"seconds": -1}},
    {"plugin": "echo", "tool": "sleep", "args": {"seconds": "1"}},
    {"plugin": "echo", "tool": "sleep", "args": {"seconds": 10**30}},
    {"plugin": "echo", "timeout_s": -1},
    {"plugin": "echo", "timeout_s": 0},
    {"plugin": "echo", "timeout_s": 1e-300},
    {"plugin": "echo", "timeout_s": 10**400},
    {"plugin": "echo", "timeout_s": "NaN"},
    {"plugin": "echo", "timeout_s": "nan"},
    {"plugin": "echo", "timeout_s": "Infinity"},
    {"plugin": "echo", "timeout_s": "-inf"},
    {"plugin": "echo", "timeout_s": "1e309"},
    {"plugin": "echo", "timeout_s": "ten"},
    {"plugin": "echo", "timeout_s": [1]},
    {"plugin": "echo", "timeout_s": True},
    {"plugin": "echo", "timeout_s": 3600.0001},
    {"plugin": "echo", "image": "aGVs bG8=\n"},
    {"plugin": "echo", "image": " aGVsbG8=\t\r\n"},
    {"plugin": "echo", "image": "not base64!"},
    {"plugin": "echo", "image": "aGVsbG8"},
    {"plugin": "echo", "image": "===="},
    {"plugin": "echo", "image": ""},
    {"plugin": "echo", "image": "data:image/png;base64,aGVsbG8="},
    {"plugin": "echo", "image": "data:,"},
    {"plugin": "echo", "image": 12345},
    {"plugin": "echo", "image": ["aGVsbG8="]},
    {"plugin": "echo", "image": "aGVsbG8=", "file": "aGVsbG8="},
    {"plugin": "echo", "mime_type": ""},
    {"plugin": "echo", "mime_type": 5},
    {"plugin": "echo", "mime_type": "x" * 1000},
    {"plugin": "echo", "mime_type": "image/png\x00"},
    {"plugin": "echo", "mime_type": "image/png", "image": "aGVsbG8="},
    {"plugin": "faulty", "tool": "nope", "args": {"a": 1}},
    {"plugin": "echo", "unknown_field": {"a": 1}},
    {"plugin": "echo", "plugin ": "x", "PLUGIN": "y"},
]
NASTY_RAW: list[tuple[bytes, str]] = [
    (b"", JSON),
    (b"{", JSON),
    (b"null", JSON),
    (b'{"plugin": "echo", "timeout_s": NaN}', JSON),
    (b'{"plugin": "echo", "timeout_s": Infinity}', JSON),
    (b'{"plugin": "echo", "timeout_s": -Infinity}', JSON),
    (b'{"plugin": "echo", "timeout_s": 1e999}', JSON),
    (b'{"plugin": "echo", "args": {"x": NaN}}', JSON),
    (b'{"plugin": "echo", "args": {"x": 1e999}}', JSON),
    (b'{"plugin": "echo", "args": {"x": -1e999}}', JSON),
    (b'{"plugin": "echo", "args": {"x": 1' + b"0" * 5000 + b"}}", JSON),
    (b'{"plugin": "\\ud800"}', JSON),
    (b'{"plugin": "echo", "tool": "\\udfff"}', JSON),
    (b'{"plugin": "echo", "mime_type": "\\ud83d"}', JSON),
    (b'{"plugin": "echo", "args": {"\\ud800": "\\udc00x\\ud800"}}', JSON),
    (b'{"plugin": "echo", "image": "\\ud800"}', JSON),
    (b'{"plugin": "echo\xff\xfe"}', JSON),
    (b'\xef\xbb\xbf{"plugin": "echo"}', JSON),
    (b'{"plugin": "echo", "plugin": "faulty"}', JSON),
    (b'{"plugin": "echo"}', "application/json; charset=latin-1"),
    (b'{"plugin": "echo"}', "application/json; charset=nonsense"),
    (b'{"plugin": "echo"}', "text/plain"),
    (b'{"plugin": "echo"}', "application/xml"),
    (b'{"plugin": "echo"}', ""),
    (b"plugin=echo&args=%7B&timeout_s=nan", "application/x-www-form-urlencoded"),
    (b"plugin=echo&args=%5B1%5D&image=%25%25", "application/x-www-form-urlencoded"),
    (b"plugin=%00&tool=%ff%fe", "application/x-www-form-urlencoded"),
    (b"plugin=echo&plugin=faulty&timeout_s=1e999", "application/x-www-form-urlencoded"),
    (b'--x\r\nContent-Disposition: form-data; name="plugin"\r\n\r\necho', "multipart/form-data"),
    (b"garbage", MULTIPART),
    (
        b'--x\r\nContent-Disposition: form-data; name="plugin"\r\n\r\necho\r\n'
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="\xff.png"\r\n'
        b"Content-Type: image/png\r\n\r\n\x89PNG\x00\x00\r\n"
        b'--x\r\nContent-Disposition: form-data; name="args"\r\n\r\n{"a": NaN}\r\n--x--\r\n',
        MULTIPART,
    ),
    (
        b'--x\r\nContent-Disposition: form-data; name="plugin"\r\n\r\necho\r\n'
        b'--x\r\nContent-Disposition: form-data; name="file"; filename="a"\r\n\r\nAAAA\r\n'
        b'--x\r\nContent-Disposition: form-data; name="image"\r\n\r\naGVsbG8=\r\n--x--\r\n',
        MULTIPART,
    ),
]


def post(env: FuzzEnv, path: str, data: bytes, content_type: str) -> Any:
    return env.client.post(
        path,
        data=data,
        content_type=content_type,
        headers={"Authorization": f"Token {env.token}"},
    )


def encode_form(fields: dict[str, str], content_type: str) -> bytes:
    if content_type == FORM:
        return urlencode(fields).encode()
    parts = [
        f'--x\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        for name, value in fields.items()
    ]
    return ("".join(parts) + "--x--\r\n").encode()


def contract_violations(env: FuzzEnv, path: str, bodies: list[tuple[bytes, str]]) -> list[str]:
    """POST each (body, content type) to `path`; return the requests whose answer broke the rule."""
    violations = []
    for data, content_type in bodies:
        response = post(env, path, data, content_type)
        request = f"POST {path} Content-Type: {content_type!r} {data[:200]!r}"
        try:
            assert_contract(
                response.status_code, response.content_type, response.data, path, request
            )
        except AssertionError as exc:
            violations.append(str(exc).split("\nassert ")[0])
    return violations


@pytest.mark.parametrize("path", ANALYZE_PATHS)
def test_it_answers_nasty_json_with_an_envelope(fuzz_env: FuzzEnv, path: str) -> None:
    bodies = [(json.dumps(body).encode(), JSON) for body in NASTY_JSON]
    assert contract_violations(fuzz_env, path, bodies) == []
    assert not Job.objects.exclude(status="FAILED").exists()  # nothing was queued


@pytest.mark.parametrize("path", ANALYZE_PATHS)
def test_it_answers_nasty_raw_bodies_with_an_envelope(fuzz_env: FuzzEnv, path: str) -> None:
    assert contract_violations(fuzz_env, path, NASTY_RAW) == []
    assert not Job.objects.exclude(status="FAILED").exists()


@pytest.mark.parametrize("path", ANALYZE_PATHS)
def test_it_answers_deeply_nested_json_with_an_envelope(fuzz_env: FuzzEnv, path: str) -> None:
    # Found by this suite: json.loads raises RecursionError, which DRF's JSONParser lets through.
    bodies = [
        (b'{"plugin": "echo", "args": {"x": ' + b"[" * DEEP + b"]" * DEEP + b"}}", JSON),
        (b'{"plugin": "echo", "args": ' + b'{"a":' * DEEP + b"1" + b"}" * DEEP + b"}", JSON),
    ]
    assert contract_violations(fuzz_env, path, bodies) == []


@pytest.mark.parametrize("path", ANALYZE_PATHS)
def test_it_answers_503_when_no_worker_consumes_the_queue(fuzz_env: FuzzEnv, path: str) -> None:
    response = post(fuzz_env, path, json.dumps({"plugin": "echo", "args": {"a": 1}}).encode(), JSON)
    assert response.status_code == 503, response.data
    error = response.json["error"]
    assert error["type"] == "ServiceUnavailable"
    assert error["message"] == (
        "No worker is consuming queue 'cpu'; start one (see docs/operations.md)"
    )
    assert error["plugin"] == "echo"
    job = Job.objects.get()
    assert (str(job.pk), job.status, job.error_type) == (
        error["job_id"],
        "FAILED",
        "ServiceUnavailable",
    )


@pytest.mark.parametrize("content_type", [FORM, MULTIPART])
def test_it_rejects_form_args_that_overflow_to_infinity(
    fuzz_env: FuzzEnv, content_type: str
) -> None:
    # Found by this suite: a form or multipart body carries args as a JSON string; json.loads
    # turns 1e999 into inf, which the JSON column rejects, and the IntegrityError is answered as
    # 503 "Database unavailable" although the database is up and the input is at fault.
    bodies = [
        (encode_form({"plugin": "echo", "args": f'{{"x": {number}}}'}, content_type), content_type)
        for number in ("1e999", "-1e999", "[1e999]")
    ]
    assert contract_violations(fuzz_env, ANALYZE_PATHS[1], bodies) == []
    assert Job.objects.count() == 0


@pytest.fixture
def unreachable_broker(settings: Any) -> Iterator[None]:
    """Point the worker-liveness check at a port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{port}/0"
    workers._client.cache_clear()  # the Redis client is built once from the settings
    yield
    workers._client.cache_clear()


@pytest.mark.parametrize("path", ANALYZE_PATHS)
def test_it_answers_503_when_the_broker_is_unreachable(
    fuzz_env: FuzzEnv, unreachable_broker: None, path: str
) -> None:
    response = post(fuzz_env, path, json.dumps({"plugin": "echo"}).encode(), JSON)
    assert response.status_code == 503, response.data
    error = response.json["error"]
    assert error["type"] == "ServiceUnavailable"
    # Host and port stay in the log and the job's traceback (admin), out of the envelope.
    assert error["message"] == "Message broker unreachable (ConnectionError); try again shortly"
    job = Job.objects.get()
    assert (str(job.pk), job.status, job.error_type) == (
        error["job_id"],
        "FAILED",
        "ServiceUnavailable",
    )
    assert "127.0.0.1" not in json.dumps(job.error) and "127.0.0.1" in job.traceback
