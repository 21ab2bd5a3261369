"""docs/plugins.md "Running ForgeSyte plugins", end to end as a new user runs it: pip install the
example OCR package, `manage.py plugins sync`, then a real stack (Redis, worker, gunicorn) reads
the text of an uploaded image. Its own database, var dir and Redis; the package goes into a
throw-away `--target` folder instead of the shared virtualenv."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import urllib.request
import uuid
from pathlib import Path

import pytest

from tests.harness import (
    PYTHON,
    ROOT,
    free_port,
    process_env,
    start_gunicorn,
    start_redis,
    start_worker,
)

pytestmark = pytest.mark.slow
EXAMPLE = ROOT / "examples" / "forgesyte_ocr"


def hello_png() -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    image = Image.new("RGB", (520, 120), "white")
    font = ImageFont.load_default(size=56)
    ImageDraw.Draw(image).text((20, 25), "Hello Warden", fill="black", font=font)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def multipart(fields: dict[str, str], name: str, data: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
        for key, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
        "Content-Type: image/png\r\n\r\n".encode()
        + data
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [PYTHON, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_it_runs_a_pip_installed_forgesyte_ocr_package(tmp_path: Path) -> None:
    source = shutil.copytree(EXAMPLE, tmp_path / "forgesyte_ocr")  # pip builds in the source tree
    site = tmp_path / "site"
    # offline and into a folder; docs/plugins.md's `.venv/bin/pip install` does the same build
    offline = ["--quiet", "--no-deps", "--no-index", "--no-build-isolation"]
    pip = [PYTHON, "-m", "pip", "install", *offline, "--target", str(site), str(source)]
    subprocess.run(pip, check=True, timeout=300)
    assert (site / "forgesyte_ocr" / "manifest.json").is_file()
    redis_port, web_port = free_port(), free_port()
    env = process_env(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'warden.sqlite3'}",
            "WARDEN_VAR_DIR": str(tmp_path / "var"),
            "WARDEN_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
            "WARDEN_PLUGIN_DIRS": str(tmp_path / "no-folder-plugins"),
            "WARDEN_SYNC_ON_WORKER_START": "0",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)]),
        }
    )
    (tmp_path / "var").mkdir()

    manage(env, "migrate", "-v", "0")
    synced = manage(env, "plugins", "sync")

    assert re.search(r"^forgesyte_ocr\s+1\.0\.0\s+INITIALIZED\s*$", synced, re.M), synced
    token = re.search(r"^API token: (\w+)$", manage(env, "warden_bootstrap"), re.M)
    assert token, "warden_bootstrap printed no token"
    redis = start_redis(redis_port, tmp_path / "redis")
    worker = start_worker(env, tmp_path / "worker.log", name="walkthrough", queues="cpu")
    web = start_gunicorn(env, tmp_path / "web.log", web_port)
    try:
        body, content_type = multipart({"plugin": "forgesyte_ocr"}, "hello.png", hello_png())
        request = urllib.request.Request(
            f"http://127.0.0.1:{web_port}/v1/analyze-execution",
            data=body,
            headers={"Authorization": f"Token {token[1]}", "Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            answer = json.loads(response.read())
    finally:
        web.stop()
        worker.stop()
        redis.stop()

    assert (answer["plugin"], answer["tool"], answer["status"]) == (
        "forgesyte_ocr",
        "analyze",
        "SUCCESS",
    )
    assert answer["result"]["text"] == "Hello Warden"
    assert [b["text"] for b in answer["result"]["blocks"]] == ["Hello", "Warden"]
    assert answer["result"]["language"] == "eng"
