"""Production settings: no process starts with DEBUG off and no real secret key; with one and
WARDEN_HTTPS on, `manage.py check --deploy` has nothing to say."""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tests.harness import PYTHON, ROOT, free_port, process_env

REFUSAL = "Refusing to start: DJANGO_SECRET_KEY is not set and DEBUG is off"


def production_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = process_env({"WARDEN_VAR_DIR": str(tmp_path), "DJANGO_DEBUG": "0", **extra})
    for name in ("DJANGO_SECRET_KEY", "DJANGO_SECRET_KEY_FILE", "WARDEN_HTTPS"):
        env.pop(name, None)
    env.update(extra)
    return env


def run(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return run([PYTHON, "manage.py", *args], env)


def test_it_passes_check_deploy_with_production_settings(tmp_path: Path) -> None:
    env = production_env(
        tmp_path,
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="warden.example.com",
        WARDEN_HTTPS="true",
        WARDEN_BEHIND_PROXY="true",
    )

    done = manage("check", "--deploy", "--fail-level", "WARNING", env=env)

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "System check identified no issues (0 silenced)."


@pytest.mark.parametrize(
    ("key", "problem"),
    [
        (None, "DJANGO_SECRET_KEY is not set and DEBUG is off"),
        ("warden-insecure-development-key-change-me", "is a published development key"),
        ("short-but-random-a8Z", "is too weak"),
    ],
)
def test_it_fails_the_system_check_without_a_real_secret(
    tmp_path: Path, key: str | None, problem: str
) -> None:
    env = production_env(tmp_path, **({"DJANGO_SECRET_KEY": key} if key else {}))

    done = manage("check", env=env)

    assert done.returncode == 1
    assert "(warden.E001)" in done.stderr and problem in done.stderr


def test_it_reads_the_secret_from_the_key_file(tmp_path: Path) -> None:
    (tmp_path / "secret-key").write_text(secrets.token_urlsafe(50) + "\n")

    done = manage("check", env=production_env(tmp_path))

    assert done.returncode == 0, done.stderr


def test_it_runs_without_a_secret_in_debug_mode(tmp_path: Path) -> None:
    done = manage("check", env=production_env(tmp_path, DJANGO_DEBUG="1"))

    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_it_refuses_to_start_gunicorn_without_a_secret(tmp_path: Path) -> None:
    args = [PYTHON, "-m", "gunicorn", "project.wsgi:application", "--bind"]
    done = run([*args, f"127.0.0.1:{free_port()}"], production_env(tmp_path))

    assert done.returncode != 0
    assert REFUSAL in done.stderr


@pytest.mark.slow
@pytest.mark.parametrize("program", ["worker", "beat"])
def test_it_refuses_to_start_celery_without_a_secret(tmp_path: Path, program: str) -> None:
    env = production_env(tmp_path, WARDEN_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")

    done = run([PYTHON, "-m", "celery", "-A", "project", program, "-l", "INFO"], env)

    assert done.returncode != 0
    assert REFUSAL in done.stdout + done.stderr
