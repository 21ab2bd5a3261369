"""One web tier and two worker hosts (GPU and CPU) on PostgreSQL + Redis, each a real host in its
own network namespace (issue #8). Skipped, with the reason, where namespaces cannot be made.

Part 1 proves the topology and what Warden already does across hosts. Part 2 is what #8's product
work (per-host availability, location-independent plugin identity, inputs in the database) must
make pass; it fails until that lands.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.multihost.netns import (
    Api,
    Cluster,
    Unsupported,
    netns_pids,
    postgres_bindir,
    preflight,
)

pytestmark = pytest.mark.slow

HOSTS = {"gpu-host", "cpu-host"}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    """The whole topology, built once for this module and always torn down."""
    try:
        preflight()
    except Unsupported as exc:
        pytest.skip(f"multi-host test (hosts in network namespaces) skipped: {exc}")
    built = Cluster()
    try:
        try:
            built.start()
        except Unsupported as exc:
            pytest.skip(f"multi-host test (hosts in network namespaces) skipped: {exc}")
        yield built
    finally:
        built.stop()


@pytest.fixture
def hosts(cluster: Cluster) -> Cluster:
    """The cluster with both worker hosts running (one an earlier test took down is restarted)."""
    cluster.ensure_workers()
    return cluster


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Api:
    """The web host's API, as the token-holding client in the root namespace sees it."""
    return Api(cluster.base_url, cluster.token)


def postgres_major() -> int:
    """The major version of the PostgreSQL server binaries the cluster runs."""
    bindir = postgres_bindir()
    assert bindir is not None
    return int(bindir.parent.name)


def netns_of(pid: int) -> str:
    """The name of the network namespace process `pid` runs in."""
    return subprocess.run(
        ["ip", "netns", "identify", str(pid)], capture_output=True, text=True, timeout=10
    ).stdout.strip()


def in_namespaces_of(pid: int, *args: str) -> str:
    """Run a command in process `pid`'s UTS and mount namespaces; its stdout."""
    return subprocess.run(
        ["nsenter", "-t", str(pid), "--uts", "--mount", *args],
        capture_output=True,
        text=True,
        timeout=10,
        check=True,
    ).stdout


def finished(cluster: Cluster, api: Api, job_id: str, timeout: float = 30) -> dict[str, Any]:
    """Poll the job over HTTP until it is SUCCESS or FAILED; return it."""

    def terminal() -> dict[str, Any] | None:
        job = api.job(job_id)
        return job if job["status"] in ("SUCCESS", "FAILED") else None

    return dict(cluster.wait(terminal, timeout, f"job {job_id} to finish"))


def together(*calls: Callable[[], Any]) -> list[Any]:
    """Run the calls at once, each in a thread; their results in order. Each worker host has one
    pool child, so two jobs that overlap in time run one on each host."""
    results: list[Any] = [None] * len(calls)

    def run(slot: int) -> None:
        results[slot] = calls[slot]()

    threads = [threading.Thread(target=run, args=(slot,)) for slot in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


def upload(api: Api, plugin: str, payload: bytes, **args: Any) -> Any:
    """POST a multipart analyze request with `payload` as its file; the response."""
    return api.post(
        "/v1/analyze-execution",
        data={"plugin": plugin, "tool": "size", "args": json.dumps(args)},
        files={"file": ("blob.bin", payload, "application/octet-stream")},
    )


# === Part 1: the topology, and what Warden already does across hosts (passes today) ============


def test_it_runs_each_tier_in_its_own_network_namespace(hosts: Cluster, api: Api) -> None:
    placement = {name: netns_of(proc.pid) for name, proc in hosts.procs.items() if proc.alive()}

    assert placement["postgres"] == hosts.ns("db")
    assert placement["redis"] == hosts.ns("db")
    assert placement["gunicorn"] == hosts.ns("web")
    assert placement["beat"] == hosts.ns("web")
    for role, worker in hosts.workers.items():
        assert worker.proc is not None
        assert netns_of(worker.proc.pid) == hosts.ns(role)
    [(server, version)] = hosts.sql(
        "SELECT host(inet_server_addr()), current_setting('server_version_num')"
    )
    assert (server, int(version) // 10000) == (hosts.db_addr, postgres_major())
    clients = {c["addr"].rsplit(":", 1)[0] for c in hosts.redis().client_list()}
    assert {hosts.web_addr, *(w.address for w in hosts.workers.values())} <= clients
    response = api.get("/v1/plugins")
    assert response.status_code == 200
    # <=: today a plugin has one record per folder path a host found it at.
    assert {"cpu_where", "gpu_where", "net_where"} <= {p["name"] for p in response.json()}


def test_it_announces_each_worker_host_under_its_own_hostname(hosts: Cluster) -> None:
    redis = hosts.redis()

    cpu_queue = sorted(n.decode() for n in redis.zrange("warden:workers:cpu", 0, -1))
    gpu_queue = sorted(n.decode() for n in redis.zrange("warden:workers:gpu", 0, -1))

    assert cpu_queue == ["w@cpu-host", "w@gpu-host"]
    assert gpu_queue == ["w@gpu-host"]
    assert socket.gethostname() not in HOSTS  # the test's own host is untouched
    for worker in hosts.workers.values():
        assert worker.proc is not None
        assert in_namespaces_of(worker.proc.pid, "hostname").strip() == worker.hostname
        listed = in_namespaces_of(worker.proc.pid, "ls", worker.plugin_mount).split()
        assert listed == ["cpu_where", "gpu_where"]
        assert not Path(worker.plugin_mount).exists()  # mounted in the host's namespace only
    assert hosts.workers["gpu"].plugin_mount != hosts.workers["cpu"].plugin_mount


def test_it_runs_a_job_submitted_to_the_web_on_a_worker_host(hosts: Cluster, api: Api) -> None:
    response = api.analyze("net_where", "where")

    assert response.status_code == 200, response.text
    body = response.json()
    host = body["result"]["host"]
    assert host in HOSTS
    assert api.job(body["job_id"])["status"] == "SUCCESS"
    # The job row lives in the db namespace's PostgreSQL; which host ran it is for operators.
    assert hosts.sql(
        "SELECT status, worker_host FROM execution_app_job WHERE id = %s", body["job_id"]
    ) == [("SUCCESS", host)]


def test_it_spreads_jobs_over_both_worker_hosts(hosts: Cluster, api: Api) -> None:
    responses = together(*[lambda: api.analyze("net_where", "sleep", {"seconds": 1.5})] * 2)

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert {r.json()["result"]["host"] for r in responses} == HOSTS


def test_it_reaps_the_job_of_a_killed_worker_host_while_the_other_host_keeps_serving(
    hosts: Cluster, api: Api
) -> None:
    errors_before = api.health("net_where")["error_count"]
    job_id = api.submit("net_where", "sleep", {"seconds": 60})
    hosts.wait(lambda: api.job(job_id)["status"] == "RUNNING", 30, "the job to run")
    [(running_host,)] = hosts.sql("SELECT worker_host FROM execution_app_job WHERE id = %s", job_id)
    dead = next(w for w in hosts.workers.values() if w.hostname == running_host)
    survivor = next(w for w in hosts.workers.values() if w is not dead)
    assert dead.proc is not None

    killed = hosts.kill_host(dead.role)

    assert dead.proc.pid in killed
    assert netns_pids(dead.netns) == []
    assert not dead.proc.alive()
    # The other host serves while the dead host's job is still RUNNING ...
    response = api.analyze("net_where", "where")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["host"] == survivor.hostname
    assert api.job(job_id)["status"] == "RUNNING"
    # ... and the reaper (beat, run by the surviving host) fails that job.
    job = finished(hosts, api, job_id, timeout=45)
    error = job["error"]["error"]
    assert (job["status"], error["type"]) == ("FAILED", "ServiceUnavailable")
    assert error["details"] == {"reaped": True}
    assert "its worker died or lost contact" in error["message"]
    assert hosts.sql("SELECT traceback FROM execution_app_job WHERE id = %s", job_id) == [
        (f"reaped: worker host {dead.hostname} died or lost contact",)
    ]
    health = api.health("net_where")
    assert health["error_count"] == errors_before  # a lost host is not the plugin's fault
    assert health["accepting_jobs"] is True
    response = api.analyze("net_where", "where")
    assert response.status_code == 200, response.text
    assert response.json()["result"]["host"] == survivor.hostname


# === Part 2: issue #8 — fails until per-host availability, location-independent plugin identity
# === and job inputs in the database land (CONTRACT.md §3 rule 7 applied per host) ============


def by_host(health: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The health record's `hosts` entries keyed by hostname (a Celery node name's host part)."""
    return {entry["host"].rsplit("@", 1)[-1]: entry for entry in health["hosts"]}


def test_8_it_runs_a_gpu_plugin_on_the_gpu_host_while_the_cpu_host_reports_it_unavailable(
    hosts: Cluster, api: Api
) -> None:
    health = api.health("gpu_where")

    assert (health["state"], health["accepting_jobs"]) == ("INITIALIZED", True)
    entries = by_host(health)
    assert set(entries) == HOSTS
    gpu, cpu = entries["gpu-host"], entries["cpu-host"]
    assert (gpu["state"], gpu["reason"], gpu["alive"]) == ("INITIALIZED", None, True)
    assert sorted(gpu["queues"]) == ["cpu", "gpu"]
    # alive: a live worker there consumes the plugin's queue ('gpu'); the CPU host's does not.
    assert (cpu["state"], cpu["alive"], cpu["queues"]) == ("UNAVAILABLE", False, ["cpu"])
    assert cpu["reason"].startswith("No CUDA GPU (")
    assert gpu["probed_at"] is not None and cpu["probed_at"] is not None
    response = api.analyze("gpu_where", "where")
    assert response.status_code == 200, response.text
    assert response.json()["result"] == {"host": "gpu-host"}


def test_8_it_runs_a_plugin_mounted_at_different_paths_on_both_hosts(
    hosts: Cluster, api: Api
) -> None:
    responses = together(*[lambda: api.analyze("cpu_where", "sleep", {"seconds": 1.5})] * 2)

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    assert {r.json()["result"]["host"] for r in responses} == HOSTS


def test_8_it_hands_an_upload_sent_to_the_web_to_the_worker_hosts(hosts: Cluster, api: Api) -> None:
    # net_where (same path everywhere) isolates the inputs from the plugin-path question.
    payloads = [os.urandom(300_000), os.urandom(200_000)]

    responses = together(*[lambda p=p: upload(api, "net_where", p, seconds=1.5) for p in payloads])

    assert [r.status_code for r in responses] == [200, 200], [r.text for r in responses]
    results = [r.json()["result"] for r in responses]
    assert [r["size"] for r in results] == [len(p) for p in payloads]
    assert {r["host"] for r in results} == HOSTS


def test_8_it_records_both_worker_hosts_when_they_sync_at_the_same_time(
    hosts: Cluster, api: Api
) -> None:
    # A deployment starts its hosts together; the fixture starts them one after the other.
    hosts.stop_workers(*hosts.workers)

    since = {role: hosts.launch_worker(role) for role in hosts.workers}
    for role, started in since.items():
        hosts.wait_announced(role, started)

    for worker in hosts.workers.values():
        assert worker.proc is not None
        assert "plugin sync at worker start failed" not in worker.proc.log_text()
    states = {
        name: {host: entry["state"] for host, entry in by_host(api.health(name)).items()}
        for name in ("cpu_where", "gpu_where", "net_where")
    }
    assert states == {
        "cpu_where": {"gpu-host": "INITIALIZED", "cpu-host": "INITIALIZED"},
        "gpu_where": {"gpu-host": "INITIALIZED", "cpu-host": "UNAVAILABLE"},
        "net_where": {"gpu-host": "INITIALIZED", "cpu-host": "INITIALIZED"},
    }


def test_8_it_sends_a_plugin_only_one_host_has_to_that_host(hosts: Cluster, api: Api) -> None:
    # Both hosts consume 'cpu'; only the CPU host has `only_here`. Without routing, about half
    # its jobs would land on the GPU host, which cannot run it.
    from tests.multihost.netns import SHARED_PLUGINS

    cpu = hosts.workers["cpu"]
    only_cpu = str(Path(__file__).resolve().parents[1] / "plugins" / "multihost" / "cpu_host_only")
    cpu.env["WARDEN_PLUGIN_DIRS"] = os.pathsep.join(
        [cpu.plugin_mount, str(SHARED_PLUGINS), only_cpu]
    )
    hosts.stop_workers("cpu")
    hosts.start_worker("cpu")

    health = api.health("only_here")
    assert (health["state"], health["accepting_jobs"]) == ("INITIALIZED", True)
    assert set(by_host(health)) == {"cpu-host"}
    responses = together(*[lambda: api.analyze("only_here", "where")] * 6)

    assert [r.status_code for r in responses] == [200] * 6, [r.text for r in responses]
    assert {r.json()["result"]["host"] for r in responses} == {"cpu-host"}
    queues = {
        row[0]
        for row in hosts.sql(
            "SELECT queue FROM execution_app_job WHERE plugin_name = %s", "only_here"
        )
    }
    assert queues == {"cpu@cpu-host"}


def test_8_it_keeps_a_gpu_plugins_availability_and_quarantine_when_a_cpu_worker_restarts(
    hosts: Cluster, api: Api
) -> None:
    for attempt in range(3):
        response = api.analyze("gpu_where", "crash")
        assert response.status_code == 400, response.text
        assert response.json()["error"]["type"] == "PluginCrashed", (attempt, response.text)
    before = api.health("gpu_where")
    assert (before["state"], before["accepting_jobs"]) == ("FAILED", False)
    assert before["reason"].startswith("Quarantined after 3 consecutive")

    hosts.stop_workers("cpu")
    hosts.start_worker("cpu")

    after = api.health("gpu_where")
    kept = ("state", "reason", "hint", "accepting_jobs", "error_count", "consecutive_failures")
    assert {k: after[k] for k in kept} == {k: before[k] for k in kept}
    assert by_host(after)["gpu-host"] == by_host(before)["gpu-host"]
    cpu = by_host(after)["cpu-host"]
    assert (cpu["state"], cpu["alive"], cpu["queues"]) == ("UNAVAILABLE", False, ["cpu"])
    assert cpu["probed_at"] > by_host(before)["cpu-host"]["probed_at"]  # it did re-probe
    response = api.analyze("gpu_where", "where")
    assert response.status_code == 400, response.text
    assert response.json()["error"]["type"] == "PluginUnavailable"
    assert "Quarantined" in response.json()["error"]["message"]
