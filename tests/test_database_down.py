"""Database unreachable: the API answers 503 ServiceUnavailable in the envelope, not a 500."""

from __future__ import annotations

import pytest
from django.db import connection


@pytest.fixture
def database_gone(transactional_db):
    """Point the default connection at a database file that cannot be opened, then restore it."""
    original = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = "/nonexistent-warden-dir/db.sqlite3"
    try:
        yield
    finally:
        connection.close()
        connection.settings_dict["NAME"] = original


def test_it_answers_503_when_the_database_cannot_be_opened(database_gone, api_client):
    response = api_client.get("/v1/plugins")

    assert response.status_code == 503
    error = response.json()["error"]
    assert error["type"] == "ServiceUnavailable"
    assert (
        error["message"] == "Database unavailable: OperationalError: unable to open database file"
    )


def test_it_answers_503_for_an_analyze_call_when_the_database_is_gone(database_gone, api_client):
    api_client.credentials(HTTP_AUTHORIZATION="Token 0123456789abcdef")

    response = api_client.post("/v1/analyze-execution", {"plugin": "echo"}, format="json")

    assert response.status_code == 503
    assert response.json()["error"]["type"] == "ServiceUnavailable"
