"""Database unreachable: the API answers 503 ServiceUnavailable in the envelope, not a 500."""

from __future__ import annotations

import pytest
from django.db import connection

from tests.harness import free_port


@pytest.fixture
def database_gone(transactional_db):
    """Point the default connection at a database that cannot be reached, then restore it."""
    settings_dict = connection.settings_dict
    original = dict(settings_dict)
    connection.close()
    if settings_dict["ENGINE"].endswith("sqlite3"):
        settings_dict["NAME"] = "/nonexistent-warden-dir/db.sqlite3"
    else:
        settings_dict["HOST"], settings_dict["PORT"] = "127.0.0.1", str(free_port())
    try:
        yield
    finally:
        connection.close()
        settings_dict.update(original)


def test_it_answers_503_when_the_database_cannot_be_reached(database_gone, api_client):
    response = api_client.get("/v1/plugins")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "ServiceUnavailable"
    # The driver's text (file path, host, port, user) stays in the log.
    assert error["message"] == "Database unavailable (OperationalError); try again shortly"


def test_it_answers_503_for_an_analyze_call_when_the_database_is_gone(database_gone, api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")

    response = api_client.post("/v1/analyze-execution", {"plugin": "echo"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "ServiceUnavailable"
