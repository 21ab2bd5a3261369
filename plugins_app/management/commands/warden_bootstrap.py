"""Create the admin superuser and its API token when missing, then print how to log in."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction
from rest_framework.authtoken.models import Token

PASSWORD_FILE_NAME = "admin-password"


def password_file() -> Path:
    """Return where the generated admin password is kept (read at call time: tests move it)."""
    var_dir = getattr(settings, "VAR_DIR", Path(settings.BASE_DIR) / "var")
    return Path(var_dir) / PASSWORD_FILE_NAME


def read_stored_password(path: Path) -> str | None:
    """Return the password stored at `path`, or None when there is none."""
    try:
        value = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def store_password(path: Path, password: str) -> None:
    """Write `password` to `path`, readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(password + "\n")


class Command(BaseCommand):
    help = (
        "Create the admin superuser (WARDEN_ADMIN_USER, default 'admin'; password from "
        "WARDEN_ADMIN_PASSWORD or generated once into var/admin-password) and its API token, "
        "if missing, and print the credentials. Safe to run repeatedly."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        default_base = os.environ.get(
            "WARDEN_BASE_URL", f"http://127.0.0.1:{os.environ.get('PORT') or '8000'}"
        )
        parser.add_argument(
            "--base-url",
            default=default_base,
            help="Base URL printed in front of /admin/ (default: %(default)s).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("WARDEN_ADMIN_USER") or "admin"
        env_password = os.environ.get("WARDEN_ADMIN_PASSWORD") or None
        path = password_file()
        user_model = get_user_model()

        with transaction.atomic():
            lookup = {user_model.USERNAME_FIELD: username}
            user = user_model._default_manager.filter(**lookup).first()
            if user is None:
                password = env_password or read_stored_password(path)
                if password is None:
                    password = secrets.token_urlsafe(18)
                    store_password(path, password)
                user = user_model._default_manager.db_manager().create_superuser(
                    **lookup, email="", password=password
                )
            else:
                changed = False
                for flag in ("is_active", "is_staff", "is_superuser"):
                    if not getattr(user, flag, True):
                        setattr(user, flag, True)
                        changed = True
                if env_password is not None and not user.check_password(env_password):
                    user.set_password(env_password)
                    changed = True
                if changed:
                    user.save()
                password = env_password or read_stored_password(path)
                if password is not None and not user.check_password(password):
                    password = None  # changed since it was stored; do not print a stale one
            token, _ = Token.objects.get_or_create(user=user)

        if password is None:
            password = "(unknown: set WARDEN_ADMIN_PASSWORD, or run manage.py changepassword)"
        base_url = str(options["base_url"]).rstrip("/")
        self.stdout.write(f"Admin: {base_url}/admin/  user={username} password={password}")
        self.stdout.write(f"API token: {token.key}")
