"""Tests of the warden_bootstrap management command (admin superuser + API token)."""

import io
import re
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from rest_framework.authtoken.models import Token

LINE = re.compile(r"^Admin: (?P<url>\S+)  user=(?P<user>\S+) password=(?P<password>\S+)$", re.M)
TOKEN = re.compile(r"^API token: (?P<token>\S+)$", re.M)


def bootstrap(*args: str) -> tuple[str, str, str]:
    """Run the command; return the (user, password, token) it printed."""
    out = io.StringIO()
    call_command("warden_bootstrap", *args, stdout=out)
    text = out.getvalue()
    admin, token = LINE.search(text), TOKEN.search(text)
    assert admin is not None, text
    assert token is not None, text
    return admin["user"], admin["password"], token["token"]


@pytest.fixture(autouse=True)
def var_dir(settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the password file out of the real var/ and the developer's environment out."""
    settings.VAR_DIR = tmp_path
    monkeypatch.delenv("WARDEN_ADMIN_USER", raising=False)
    monkeypatch.delenv("WARDEN_ADMIN_PASSWORD", raising=False)
    return tmp_path


@pytest.mark.django_db
def test_creates_superuser_token_and_password_file(var_dir: Path) -> None:
    username, password, key = bootstrap()

    user = get_user_model().objects.get(username="admin")
    assert username == "admin"
    assert user.is_staff and user.is_superuser and user.is_active
    assert user.check_password(password)
    assert Token.objects.get(user=user).key == key
    stored = var_dir / "admin-password"
    assert stored.read_text().strip() == password
    assert stored.stat().st_mode & 0o077 == 0


@pytest.mark.django_db
def test_second_run_keeps_token_and_password() -> None:
    first = bootstrap()
    second = bootstrap()

    assert second == first
    assert get_user_model().objects.filter(username="admin").count() == 1
    assert Token.objects.count() == 1


@pytest.mark.django_db
def test_user_and_password_from_environment(monkeypatch: pytest.MonkeyPatch, var_dir: Path) -> None:
    monkeypatch.setenv("WARDEN_ADMIN_USER", "ops")
    monkeypatch.setenv("WARDEN_ADMIN_PASSWORD", "s3cret-from-env")

    username, password, _ = bootstrap("--base-url", "http://example.test:9000/")

    assert (username, password) == ("ops", "s3cret-from-env")
    user = get_user_model().objects.get(username="ops")
    assert user.is_superuser and user.check_password("s3cret-from-env")
    assert not (var_dir / "admin-password").exists()


@pytest.mark.django_db
def test_prints_base_url() -> None:
    out = io.StringIO()
    call_command("warden_bootstrap", "--base-url", "http://example.test:9000/", stdout=out)
    assert "Admin: http://example.test:9000/admin/  user=admin password=" in out.getvalue()


@pytest.mark.django_db
def test_stale_password_file_is_not_printed(var_dir: Path) -> None:
    _, password, key = bootstrap()
    user = get_user_model().objects.get(username="admin")
    user.set_password("changed-in-the-admin")
    user.save()

    out = io.StringIO()
    call_command("warden_bootstrap", stdout=out)

    assert password not in out.getvalue()
    assert "unknown" in out.getvalue()
    assert f"API token: {key}" in out.getvalue()
