"""scripts/postgres.sh (the PostgreSQL pass of `make test`) works from a checkout in a private
directory, such as a clone in root's home or in a `mktemp -d` folder (both mode 700)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.harness import ROOT

pytestmark = pytest.mark.slow


@pytest.fixture
def private_checkout(tmp_path: Path) -> Path:
    """The script in a checkout whose every parent the `postgres` user cannot enter."""
    outer = tmp_path / "home"
    checkout = outer / "warden"
    (checkout / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "postgres.sh", checkout / "scripts" / "postgres.sh")
    for folder in (tmp_path, outer, checkout):
        folder.chmod(0o700)
    return checkout


def script(checkout: Path, action: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WARDEN_VAR_DIR"}
    return subprocess.run(
        [str(checkout / "scripts" / "postgres.sh"), action],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_it_runs_a_cluster_for_a_checkout_in_a_private_directory(private_checkout: Path) -> None:
    import psycopg

    started = script(private_checkout, "start")
    if started.returncode == 3:
        pytest.skip(started.stderr.strip())
    try:
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        with psycopg.connect(url.rsplit("/", 1)[0] + "/postgres", connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        cluster = Path((private_checkout / "var" / "postgres-test.dir").read_text().strip())
        assert cluster.is_dir()
    finally:
        stopped = script(private_checkout, "stop")

    assert stopped.returncode == 0, stopped.stderr
    assert not cluster.exists()
    assert not (private_checkout / "var" / "postgres-test.dir").exists()
