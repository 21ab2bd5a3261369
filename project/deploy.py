"""Refuse to run a production process (DEBUG off) without a real secret key."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured

# Known to everyone who has read this repository: never a secret.
PUBLIC_KEYS = frozenset(
    {"warden-insecure-development-key-change-me", "warden-insecure-debug-only-key"}
)
HOW = (
    "set DJANGO_SECRET_KEY (identical on every web and worker host) to 50 or more random "
    "characters, e.g. from: python -c 'import secrets; print(secrets.token_urlsafe(50))' "
    "(`make run` generates one into $WARDEN_VAR_DIR/secret-key)"
)


def secret_key_problem() -> str | None:
    """Why the configured SECRET_KEY must not be used with DEBUG off, or None if it may."""
    if settings.DEBUG:
        return None
    try:
        key = str(settings.SECRET_KEY or "")
    except ImproperlyConfigured:  # Django refuses to hand out an empty key
        key = ""
    if not key:
        return "DJANGO_SECRET_KEY is not set and DEBUG is off"
    if key in PUBLIC_KEYS or key.startswith("django-insecure-"):
        return "DJANGO_SECRET_KEY is a published development key and DEBUG is off"
    if len(key) < 50 or len(set(key)) < 5:
        return "DJANGO_SECRET_KEY is too weak (under 50 characters or 5 distinct ones)"
    return None


def refuse_insecure_start(**_: Any) -> None:
    """Raise ImproperlyConfigured when this process must not start (see secret_key_problem)."""
    problem = secret_key_problem()
    if problem is not None:
        raise ImproperlyConfigured(f"Refusing to start: {problem}; {HOW}")


@checks.register(checks.Tags.security)
def check_secret_key(**_: Any) -> list[checks.CheckMessage]:
    """System check (manage.py commands, `check --deploy`): the same rule, as an error."""
    problem = secret_key_problem()
    if problem is None:
        return []
    return [checks.Error(problem, hint=HOW, id="warden.E001")]
