"""Real hosts on one machine for the multi-host test: network, UTS and mount namespaces, each
running the processes a Warden deployment runs. Polls, never sleeps; every wait is bounded.

    root namespace (pytest) 10.77.N.1 ──┐
    <id>-br  bridge br0 ────────────────┼── <id>-db   10.77.N.10  PostgreSQL, Redis
                                        ├── <id>-web  10.77.N.20  gunicorn, celery beat
                                        ├── <id>-gpu  10.77.N.31  worker w@gpu-host  (cpu,gpu)
                                        └── <id>-cpu  10.77.N.32  worker w@cpu-host  (cpu)

Only the root end of one veth pair lives outside the namespaces this module creates; nothing has
a default route, so no traffic can leave the subnet. See tests/multihost/README.md.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.harness import PYTHON, ROOT, Proc, redis_server_binary, wait_until

PREFIX = "warden-mh"
PLUGINS = ROOT / "tests" / "plugins" / "multihost"
# Bind-mounted at a different absolute path on each worker host.
MOUNTED_PLUGINS = PLUGINS / "mounted"
# Seen at this same absolute path (the checkout's) by every worker host.
SHARED_PLUGINS = PLUGINS / "shared"
PG_PORT = 5432
REDIS_PORT = 6379
WEB_PORT = 8000
# Worker-side limits short enough for the reaper test: a job killed with its host is reaped
# about timeout_s + HARD_GRACE + LOAD_TIMEOUT + REAPER_GRACE (+ one interval) after it started.
FAST_LIMITS = {
    "WARDEN_HARD_GRACE_S": "2",
    "WARDEN_LOAD_TIMEOUT_S": "3",
    "WARDEN_REAPER_GRACE_S": "1",
    "WARDEN_REAPER_INTERVAL_S": "1",
}
# Each worker host mounts a tmpfs over /srv in its private mount namespace (nothing is written to
# the machine's /srv) and bind-mounts the plugin folder read-only below it.
MOUNT_BASE = "/srv"
_WORKER_SETUP = (
    'set -e; hostname "$1"; mount -t tmpfs -o mode=0755,size=1m warden-mh "$2"; '
    'mkdir -p "$3"; mount --bind "$4" "$3"; mount -o remount,bind,ro "$3"; shift 4; exec "$@"'
)


class Unsupported(Exception):
    """This machine cannot build the namespaces; the message says what is missing."""


def _run(
    args: list[str], *, timeout: float = 30, check: bool = True, env: dict[str, str] | None = None
) -> str:
    """Run a short command; return its stdout. Raises RuntimeError (with stderr) on failure."""
    try:
        done = subprocess.run(
            args,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=ROOT,
        )
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"{' '.join(args)}: no answer within {timeout} s") from exc
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def postgres_bindir() -> Path | None:
    """The newest PostgreSQL server binary folder (initdb + postgres), or None."""
    found = []
    for folder in glob.glob("/usr/lib/postgresql/*/bin"):
        path = Path(folder)
        if (path / "initdb").exists() and (path / "postgres").exists():
            found.append((int(path.parent.name) if path.parent.name.isdigit() else 0, path))
    return max(found)[1] if found else None


def preflight() -> None:
    """Raise Unsupported unless this machine can run the multi-host topology."""
    if not sys.platform.startswith("linux"):
        raise Unsupported("network namespaces need Linux")
    if os.geteuid() != 0:
        raise Unsupported("creating network namespaces needs root")
    for program in ("ip", "unshare", "nsenter", "setpriv", "hostname", "mount"):
        if shutil.which(program) is None:
            raise Unsupported(f"program '{program}' not found")
    try:
        _run(["unshare", "--uts", "--mount", "--propagation", "private", "true"], timeout=10)
    except RuntimeError as exc:
        raise Unsupported(f"cannot create UTS and mount namespaces: {exc}") from None
    if postgres_bindir() is None:
        raise Unsupported("no PostgreSQL server binaries (/usr/lib/postgresql/*/bin/initdb)")
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        raise Unsupported("no 'postgres' system user to run PostgreSQL as") from None
    try:
        redis_server_binary()
    except Exception as exc:
        raise Unsupported(f"no redis-server: {exc}") from None
    if not Path(MOUNT_BASE).is_dir():
        raise Unsupported(f"no {MOUNT_BASE} directory to mount the worker hosts' plugins under")


def _owner_alive(name: str) -> bool:
    """Whether the pytest process named in a namespace or temp dir name still runs."""
    match = re.match(rf"{PREFIX}-(\d+)-", name)
    if match is None:
        return True
    try:
        os.kill(int(match.group(1)), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def netns_pids(netns: str) -> list[int]:
    """PIDs of the processes in network namespace `netns` (empty if it is gone)."""
    out = _run(["ip", "netns", "pids", netns], check=False, timeout=10)
    return [int(p) for p in out.split()]


def kill_netns(netns: str, timeout: float = 5) -> None:
    """SIGKILL every process of `netns` until none is left (bounded by `timeout`)."""

    def empty() -> bool:
        pids = netns_pids(netns)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return not pids

    with contextlib.suppress(AssertionError):
        wait_until(empty, timeout, f"the processes of {netns} to die", interval=0.05)


def delete_netns(netns: str) -> None:
    """Kill what runs in `netns`, then delete it (its interfaces go with it)."""
    kill_netns(netns)
    _run(["ip", "netns", "del", netns], check=False, timeout=10)


def clean_stale() -> None:
    """Remove namespaces and temp dirs left by an earlier run whose pytest process is gone."""
    for line in _run(["ip", "netns", "list"], check=False, timeout=10).splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(f"{PREFIX}-") and not _owner_alive(name):
            delete_netns(name)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"):
        if not _owner_alive(folder.name):
            shutil.rmtree(folder, ignore_errors=True)


def base_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a process on a namespace host: this machine's basics, none of the test
    run's own Warden/Django/Celery settings (a shared media root would hide what #8 is about)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WARDEN_", "DJANGO_", "CELERY_", "DATABASE_"))
        and k.lower() not in {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
        and k != "PYTHONPATH"
    }
    env["PYTHONPATH"] = str(ROOT)
    env["DJANGO_SETTINGS_MODULE"] = "project.settings"
    # One secret for every host, as docs/operations.md asks (production settings refuse to start
    # without one).
    env["DJANGO_SECRET_KEY"] = os.environ.get("DJANGO_SECRET_KEY") or "multihost-" + "s3cr3t-" * 8
    env.update(extra)
    return env


@dataclass
class WorkerHost:
    """A worker host: its own network, UTS and mount namespaces."""

    role: str
    hostname: str
    address: str
    netns: str
    queues: str
    plugin_mount: str
    fake_gpu: bool
    var_dir: Path
    # Extra environment for the host's worker from its next start (e.g. LD_PRELOAD a fake clock).
    env: dict[str, str] = field(default_factory=dict)
    proc: Proc | None = None
    starts: int = 0

    @property
    def nodename(self) -> str:
        """The Celery node name (`-n w@%h`)."""
        return f"w@{self.hostname}"


@dataclass
class Cluster:
    """Builds, runs and tears down the multi-host topology (see the module docstring)."""

    run_id: str = field(default_factory=lambda: f"{PREFIX}-{os.getpid()}-{secrets.token_hex(2)}")
    subnet: str = ""
    workdir: Path = field(default_factory=Path)
    namespaces: list[str] = field(default_factory=list)
    root_veth: str = ""
    procs: dict[str, Proc] = field(default_factory=dict)
    workers: dict[str, WorkerHost] = field(default_factory=dict)
    token: str = ""

    # --- addresses -------------------------------------------------------------------------------

    def ns(self, role: str) -> str:
        """The name of this run's namespace for `role` (br, db, web, gpu, cpu)."""
        return f"{self.run_id}-{role}"

    def addr(self, host: int) -> str:
        """The address of host number `host` on this run's subnet."""
        return f"{self.subnet}.{host}"

    @property
    def db_addr(self) -> str:
        return self.addr(10)

    @property
    def web_addr(self) -> str:
        return self.addr(20)

    @property
    def base_url(self) -> str:
        return f"http://{self.web_addr}:{WEB_PORT}"

    @property
    def database_url(self) -> str:
        return f"postgres://postgres@{self.db_addr}:{PG_PORT}/warden"

    @property
    def redis_url(self) -> str:
        return f"redis://{self.db_addr}:{REDIS_PORT}/0"

    def common_env(self, var_dir: Path, **extra: str) -> dict[str, str]:
        """Environment every Warden process of the cluster shares, with its own var dir."""
        return base_env(
            {
                "DATABASE_URL": self.database_url,
                "WARDEN_REDIS_URL": self.redis_url,
                "WARDEN_VAR_DIR": str(var_dir),
                "WARDEN_CONTAINMENT": "tree",
                **FAST_LIMITS,
                **extra,
            }
        )

    # --- build -----------------------------------------------------------------------------------

    def start(self) -> None:
        """Build the namespaces and start every process; raise Unsupported if netns fail."""
        clean_stale()
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.workdir.chmod(0o755)  # the postgres user must reach its cluster below it
        self._network()
        self._database()
        self._web()
        # One after the other, so every test starts from the same registry: on today's code two
        # syncs at once race on the plugin rows (test_8_..._sync_at_the_same_time does that).
        for worker in self._worker_hosts():
            self.workers[worker.role] = worker
            self.start_worker(worker.role)

    def _pick_subnet(self) -> str:
        used = _run(["ip", "-o", "-4", "addr", "show"], timeout=10)
        routes = _run(["ip", "-4", "route", "show"], timeout=10)
        for third in random.sample(range(1, 255), 254):
            subnet = f"10.77.{third}"
            if f"{subnet}." not in used and f"{subnet}." not in routes:
                return subnet
        raise Unsupported("no free 10.77.x.0/24 subnet")

    def _network(self) -> None:
        self.subnet = self._pick_subnet()
        bridge_ns = self.ns("br")
        try:
            _run(["ip", "netns", "add", bridge_ns])
        except RuntimeError as exc:
            raise Unsupported(f"cannot create a network namespace: {exc}") from exc
        self.namespaces.append(bridge_ns)
        ip_br = ["ip", "-n", bridge_ns]
        _run([*ip_br, "link", "set", "lo", "up"])
        _run([*ip_br, "link", "add", "br0", "type", "bridge"])
        _run([*ip_br, "link", "set", "br0", "up"])
        for role, host in (("db", 10), ("web", 20), ("gpu", 31), ("cpu", 32)):
            netns = self.ns(role)
            _run(["ip", "netns", "add", netns])
            self.namespaces.append(netns)
            port = f"p-{role}"
            _run([*ip_br, "link", "add", port, "type", "veth", "peer", "eth0", "netns", netns])
            _run([*ip_br, "link", "set", port, "master", "br0", "up"])
            _run(["ip", "-n", netns, "addr", "add", f"{self.addr(host)}/24", "dev", "eth0"])
            _run(["ip", "-n", netns, "link", "set", "eth0", "up"])
            _run(["ip", "-n", netns, "link", "set", "lo", "up"])
        # The test process's own way in: one veth end here, on the same private subnet.
        self.root_veth = f"wm{self.run_id.rsplit('-', 1)[1]}{os.getpid() % 10000:04d}"[:15]
        veth = ["ip", "link", "add", self.root_veth, "type", "veth"]
        _run([*veth, "peer", "p-root", "netns", bridge_ns])
        _run([*ip_br, "link", "set", "p-root", "master", "br0", "up"])
        _run(["ip", "addr", "add", f"{self.addr(1)}/24", "dev", self.root_veth])
        _run(["ip", "link", "set", self.root_veth, "up"])

    def _in_ns(self, role: str, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns(role), *args]

    def _start(self, name: str, role: str, args: list[str], env: dict[str, str]) -> Proc:
        proc = Proc(self._in_ns(role, args), env=env, log=self.workdir / f"{name}.log")
        self.procs[name] = proc
        return proc

    def _database(self) -> None:
        import psycopg
        import redis

        bindir = postgres_bindir()
        assert bindir is not None
        pg = self.workdir / "pg"
        pg.mkdir()
        shutil.chown(pg, "postgres", "postgres")
        as_postgres = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]
        _run(
            [
                *as_postgres,
                *(str(bindir / "initdb"), "-D", str(pg / "data")),
                *("-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"),
            ],
            timeout=120,
        )
        with (pg / "data" / "pg_hba.conf").open("a") as hba:
            hba.write(f"host all all {self.subnet}.0/24 trust\n")
        # Its own IPC namespace: its shared memory dies with it, so teardown may SIGKILL it.
        server = [
            "unshare",
            "--ipc",
            *as_postgres,
            str(bindir / "postgres"),
            "-D",
            str(pg / "data"),
            "-p",
            str(PG_PORT),
            "-k",
            str(pg),
            "-c",
            f"listen_addresses={self.db_addr}",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            # SysV, not /dev/shm files: freed with the IPC namespace however PostgreSQL dies.
            "-c",
            "dynamic_shared_memory_type=sysv",
        ]
        postgres = self._start("postgres", "db", server, base_env({}))
        redis_dir = self.workdir / "redis"
        redis_dir.mkdir()
        self._start(
            "redis",
            "db",
            [
                *(redis_server_binary(), "--bind", self.db_addr, "--port", str(REDIS_PORT)),
                *("--save", "", "--appendonly", "no", "--protected-mode", "no"),
                *("--dir", str(redis_dir)),
            ],
            base_env({}),
        )

        def pg_up() -> bool:
            assert postgres.alive(), postgres.log_text()
            try:
                with psycopg.connect(
                    host=self.db_addr,
                    port=PG_PORT,
                    user="postgres",
                    dbname="postgres",
                    connect_timeout=1,
                    autocommit=True,
                ) as conn:
                    conn.execute("CREATE DATABASE warden")
                return True
            except psycopg.OperationalError:
                return False

        wait_until(pg_up, 60, f"PostgreSQL on {self.db_addr}", interval=0.1)
        client = redis.Redis(host=self.db_addr, port=REDIS_PORT, socket_connect_timeout=0.5)
        wait_until(lambda: _pings(client), 30, f"Redis on {self.db_addr}", interval=0.05)

    def _web(self) -> None:
        var = self.workdir / "web-var"
        (var / "no-plugins").mkdir(parents=True)
        env = self.common_env(
            var,
            DJANGO_ALLOWED_HOSTS=self.web_addr,
            WARDEN_PLUGIN_DIRS=str(var / "no-plugins"),  # the web host has no plugins
        )
        setup = (
            "import django; django.setup()\n"
            "from django.core.management import call_command\n"
            "from django.contrib.auth.models import User\n"
            "from rest_framework.authtoken.models import Token\n"
            "call_command('migrate', interactive=False, verbosity=0)\n"
            "print(Token.objects.create(user=User.objects.create_user('multihost')).key)\n"
        )
        out = _run(self._in_ns("web", [PYTHON, "-c", setup]), timeout=180, env=env)
        self.token = out.strip().splitlines()[-1]
        gunicorn = self._start(
            "gunicorn",
            "web",
            [
                *(PYTHON, "-m", "gunicorn", "project.wsgi:application"),
                *("--bind", f"{self.web_addr}:{WEB_PORT}", "--worker-class", "gthread"),
                *("--workers", "1", "--threads", "8", "--timeout", "120", "--no-control-socket"),
            ],
            env,
        )
        self._start(
            "beat",
            "web",
            [
                *(PYTHON, "-m", "celery", "-A", "project", "beat", "-l", "INFO"),
                *("-s", str(var / "celerybeat-schedule")),
            ],
            env,
        )
        import requests

        session = requests.Session()
        session.trust_env = False  # never a proxy: traffic stays on the namespaces' subnet

        def up() -> bool:
            assert gunicorn.alive(), gunicorn.log_text()
            try:
                return session.get(f"{self.base_url}/v1/plugins", timeout=1).status_code == 200
            except requests.RequestException:
                return False

        wait_until(up, 60, f"gunicorn on {self.web_addr}", interval=0.1)

    def _worker_hosts(self) -> list[WorkerHost]:
        return [
            WorkerHost(
                role="gpu",
                hostname="gpu-host",
                address=self.addr(31),
                netns=self.ns("gpu"),
                queues="cpu,gpu",
                plugin_mount=f"{MOUNT_BASE}/warden-plugins",
                fake_gpu=True,
                var_dir=self.workdir / "gpu-var",
            ),
            WorkerHost(
                role="cpu",
                hostname="cpu-host",
                address=self.addr(32),
                netns=self.ns("cpu"),
                queues="cpu",
                plugin_mount=f"{MOUNT_BASE}/cpu-b/plugins",
                fake_gpu=False,
                var_dir=self.workdir / "cpu-var",
            ),
        ]

    # --- worker hosts ----------------------------------------------------------------------------

    def start_worker(self, role: str) -> WorkerHost:
        """Start (or restart) the worker of host `role` in fresh UTS and mount namespaces; return
        once it has synced its plugins and announces its queues in Redis."""
        self.wait_announced(role, self.launch_worker(role))
        return self.workers[role]

    def launch_worker(self, role: str) -> float:
        """Start the worker of host `role` without waiting; the time (epoch) it was started."""
        worker = self.workers[role]
        worker.var_dir.mkdir(parents=True, exist_ok=True)
        worker.starts += 1
        env = self.common_env(
            worker.var_dir,
            WARDEN_PLUGIN_DIRS=os.pathsep.join([worker.plugin_mount, str(SHARED_PLUGINS)]),
            WARDEN_SYNC_ON_WORKER_START="1",
            WARDEN_FAKE_GPU="1" if worker.fake_gpu else "0",
        )
        env.update(worker.env)
        started = time.time()
        args = ["unshare", "--uts", "--mount", "--propagation", "private", "--"]
        args += ["sh", "-c", _WORKER_SETUP, "warden-host", worker.hostname, MOUNT_BASE]
        args += [worker.plugin_mount, str(MOUNTED_PLUGINS)]
        args += [PYTHON, "-m", "celery", "-A", "project", "worker", "-P", "prefork", "-c", "1"]
        args += ["-Q", worker.queues, "-n", "w@%h", "-l", "INFO"]
        args += ["--without-gossip", "--without-mingle"]
        worker.proc = self._start(f"worker-{role}-{worker.starts}", role, args, env)
        return started

    def wait_announced(self, role: str, since: float, timeout: float = 90) -> None:
        """Wait until host `role`'s worker announced all its queues in Redis at or after `since`
        (it announces once its plugin sync at start is done)."""
        worker = self.workers[role]
        proc = worker.proc
        assert proc is not None

        def announced() -> bool:
            assert proc.alive(), proc.log_text()
            return all(
                (self.announced_at(queue, worker.nodename) or 0) >= since
                for queue in worker.queues.split(",")
            )

        self.wait(announced, timeout, f"worker {worker.nodename} to sync and announce itself")

    def stop_workers(self, *roles: str, timeout: float = 30) -> None:
        """Warm shutdown of these hosts' workers at once (SIGTERM to each main process, as
        systemd stops a unit); return when they have exited."""
        procs = [self.workers[role].proc for role in roles]
        for proc in procs:
            assert proc is not None
            if proc.alive():
                os.kill(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for role, proc in zip(roles, procs, strict=True):
            assert proc is not None
            try:
                proc.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise AssertionError(
                    f"worker {self.workers[role].nodename} did not stop within {timeout} s"
                ) from None
            kill_netns(self.workers[role].netns)  # pool children that outlived it, if any

    def kill_host(self, role: str) -> list[int]:
        """SIGKILL every process in host `role`'s network namespace (the host "dies"); return the
        PIDs that were killed."""
        worker = self.workers[role]
        pids = netns_pids(worker.netns)
        kill_netns(worker.netns)
        if worker.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.popen.wait(timeout=10)
        return pids

    def ensure_workers(self) -> None:
        """Restart any worker host that is not running (an earlier test killed or stopped it)."""
        for role, worker in self.workers.items():
            if worker.proc is None or not worker.proc.alive():
                self.start_worker(role)

    # --- observation -----------------------------------------------------------------------------

    def redis(self) -> Any:
        import redis

        return redis.Redis(
            host=self.db_addr, port=REDIS_PORT, socket_connect_timeout=2, socket_timeout=5
        )

    def announced_at(self, queue: str, nodename: str) -> float | None:
        """When worker `nodename` last announced `queue` in Redis (epoch seconds), or None."""
        import redis

        try:
            score = self.redis().zscore(f"warden:workers:{queue}", nodename)
        except redis.RedisError:
            return None
        return None if score is None else float(score)

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        """Rows of one query on the cluster's PostgreSQL (from the root namespace)."""
        import psycopg

        with psycopg.connect(
            host=self.db_addr, port=PG_PORT, user="postgres", dbname="warden", connect_timeout=2
        ) as conn:
            return list(conn.execute(query, params).fetchall())

    def log_tails(self, lines: int = 40) -> str:
        """The last lines of every process log, for a failure message."""
        parts = []
        for name, proc in self.procs.items():
            with contextlib.suppress(OSError, ValueError):
                tail = proc.log_path.read_text(errors="replace").splitlines()[-lines:]
                state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
                parts.append(f"--- {name} ({state}) ---\n" + "\n".join(tail))
        return "\n".join(parts)

    def wait(self, predicate: Callable[[], Any], timeout: float, what: str) -> Any:
        """wait_until, with every process's log tail in the failure message."""
        try:
            return wait_until(predicate, timeout, what, interval=0.05)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{self.log_tails()}") from None

    # --- teardown --------------------------------------------------------------------------------

    def stop(self) -> None:
        """Kill every process, delete the namespaces, the root veth and the temp dir. Bounded:
        every step has a timeout, and a failing step does not stop the next."""
        for netns in reversed(self.namespaces):
            kill_netns(netns)
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
            with contextlib.suppress(OSError):
                proc.log.close()
        for netns in reversed(self.namespaces):
            delete_netns(netns)
        if self.root_veth:
            _run(["ip", "link", "del", self.root_veth], check=False, timeout=10)
        if self.workdir != Path() and os.environ.get("WARDEN_MULTIHOST_KEEP") != "1":
            shutil.rmtree(self.workdir, ignore_errors=True)


class Api:
    """The cluster's HTTP API, reached from the root namespace over the subnet (never a proxy)."""

    def __init__(self, base_url: str, token: str) -> None:
        import requests

        self.base_url = base_url
        self.session = requests.Session()
        self.session.trust_env = False
        self.session.headers["Authorization"] = f"Token {token}"

    def get(self, path: str) -> Any:
        """GET `path`; the requests.Response."""
        return self.session.get(self.base_url + path, timeout=60)

    def post(self, path: str, **kwargs: Any) -> Any:
        """POST `path` (json= or data=/files=); the requests.Response."""
        return self.session.post(self.base_url + path, timeout=60, **kwargs)

    def analyze(self, plugin: str, tool: str, args: dict[str, Any] | None = None) -> Any:
        """Run a tool synchronously; the requests.Response (200 result or error envelope)."""
        return self.post(
            "/v1/analyze-execution", json={"plugin": plugin, "tool": tool, "args": args or {}}
        )

    def submit(self, plugin: str, tool: str, args: dict[str, Any] | None = None) -> str:
        """Queue a tool run; its job id. Fails the test unless the API answers 202."""
        response = self.post(
            "/v1/analyze-execution/async",
            json={"plugin": plugin, "tool": tool, "args": args or {}},
        )
        assert response.status_code == 202, response.text
        return str(response.json()["job_id"])

    def job(self, job_id: str) -> dict[str, Any]:
        """GET /v1/jobs/{id}."""
        response = self.get(f"/v1/jobs/{job_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def health(self, name: str) -> dict[str, Any]:
        """GET /v1/plugins/{name}/health."""
        response = self.get(f"/v1/plugins/{name}/health")
        assert response.status_code == 200, response.text
        return dict(response.json())


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


@contextlib.contextmanager
def running_cluster() -> Iterator[Cluster]:
    """A started Cluster, torn down on exit whatever happens (also when start fails)."""
    cluster = Cluster()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
