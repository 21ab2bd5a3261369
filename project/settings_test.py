"""Settings for the test suite: a private var dir and Redis port per test process."""

import os
import socket
import tempfile


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


os.environ.setdefault("WARDEN_VAR_DIR", tempfile.mkdtemp(prefix="warden-test-"))
os.environ.setdefault("WARDEN_REDIS_URL", f"redis://127.0.0.1:{_free_port()}/0")
os.environ.setdefault("WARDEN_HARD_GRACE_S", "2")
os.environ.setdefault("WARDEN_SYNC_ON_WORKER_START", "0")
os.environ.setdefault("WARDEN_PROBE_TIMEOUT_S", "10")
os.environ.setdefault("WARDEN_PROBE_MEMORY_MB", "400")
os.environ.setdefault("WARDEN_PLUGIN_DIRS", "plugin_packages")
os.environ.setdefault("WARDEN_JOB_MAX_PIDS", "64")
os.environ.setdefault("WARDEN_LOAD_TIMEOUT_S", "5")
# Tests time limits on a shared, loaded machine: children at the worker's own priority.
os.environ.setdefault("WARDEN_WORKER_NICE", "0")
# A real-looking key: the processes the tests start run with DEBUG off, as in production.
os.environ.setdefault("DJANGO_SECRET_KEY", "warden-test-" + "k3y-" * 12)

from .settings import *  # noqa: E402, F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
