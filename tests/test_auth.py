"""Token authentication remembers a valid token briefly per process (project/auth.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db


@pytest.fixture
def token_client():
    token = Token.objects.create(user=User.objects.create_user("bob"))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client, token


def test_it_looks_a_remembered_token_up_only_once(token_client, settings):
    settings.WARDEN_TOKEN_CACHE_S = 60
    client, _ = token_client
    assert client.get("/v1/jobs").status_code == 200

    with CaptureQueriesContext(connection) as queries:
        assert client.get("/v1/jobs").status_code == 200

    assert not [q for q in queries.captured_queries if "authtoken_token" in q["sql"]]


def test_it_refuses_a_deleted_token_at_once_without_the_memory(token_client, settings):
    settings.WARDEN_TOKEN_CACHE_S = 0
    client, token = token_client
    assert client.get("/v1/jobs").status_code == 200

    token.delete()

    response = client.get("/v1/jobs")
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "AuthenticationFailed"


def test_it_never_remembers_an_invalid_token(settings):
    settings.WARDEN_TOKEN_CACHE_S = 60
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")

    assert client.get("/v1/jobs").status_code == 401
    assert client.get("/v1/jobs").status_code == 401
