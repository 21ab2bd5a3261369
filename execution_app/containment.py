"""A job owns its process tree: what it starts is counted toward its memory and dies at its end.

Two mechanisms, chosen once per worker (`WARDEN_CONTAINMENT`: auto, cgroup, tree):

- **cgroup** (v1 `memory`, `pids`, `freezer` hierarchies, or a delegated cgroup v2 subtree; needs
  write access, i.e. root or delegation): for the run of each tool the worker child joins a fresh
  cgroup, and every process it starts, at any depth and however it daemonises, is born inside it.
  Memory is the cgroup's own charge (copy-on-write pages of a fork are not counted twice), a kernel
  limit at 110 % of `memory_mb` backstops the watchdog, and ending the job freezes the group,
  SIGKILLs every member and removes it.
- **tree** (portable, no privileges): the worker's main process and each worker child are child
  subreapers (`PR_SET_CHILD_SUBREAPER`), so an orphan is re-parented to the job's worker child (or,
  when that died, to the main process) instead of init, and stays findable. Memory is the child's
  RSS growth plus its descendants' anonymous RSS (a plain fork counts from when it was first seen);
  ending the job SIGKILLs every descendant started during the job.

Processes a plugin starts while it loads (`__init__`) belong to the worker child, not to a job: they
live as long as the child and die with it (the main process's sweeper kills orphans).
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

MB = 2**20
PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")
CGROUP_V1_ROOT = Path("/sys/fs/cgroup")
BACKSTOP_FACTOR = 1.10
KILL_WAIT_S = 2.0
JOB_PREFIX = "job-"
PROBE_MODULE = b"plugins_app.probe_child"
WORKER_PREFIX = "warden-"


def set_subreaper() -> bool:
    """Make this process a child subreaper (Linux); return whether it worked."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return bool(libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0)
    except (OSError, AttributeError):
        return False


# --- /proc helpers -----------------------------------------------------------------------------


def children_of(pid: int) -> list[int]:
    """Direct children of `pid` (zombies included), from /proc/<pid>/task/*/children."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return found
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                found.extend(int(p) for p in handle.read().split())
        except OSError:
            continue
    return found


def descendants_of(pid: int) -> list[int]:
    """Every descendant of `pid`, parents before their children."""
    found: list[int] = []
    queue = [pid]
    while queue:
        kids = children_of(queue.pop())
        found.extend(kids)
        queue.extend(kids)
    return found


def _stat_fields(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            text = handle.read().decode()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()  # fields from "state" on


def process_start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (identifies it across pid reuse)."""
    fields = _stat_fields(pid)
    return int(fields[19]) if fields else None


def is_zombie(pid: int) -> bool:
    """Whether `pid` has exited and waits to be reaped (or is gone)."""
    fields = _stat_fields(pid)
    return fields is None or fields[0] in ("Z", "X")


def anon_rss(pid: int) -> int:
    """Resident anonymous memory of `pid` in bytes (statm resident - shared), 0 if gone."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            parts = handle.read().split()
        return max(0, int(parts[1]) - int(parts[2])) * PAGE
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read()
    except OSError:
        return b""


def kill_pids(pids: Iterable[int]) -> int:
    """SIGKILL each pid that still exists; return how many signals were sent."""
    sent = 0
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
            sent += 1
        except (ProcessLookupError, PermissionError):
            pass
    return sent


def reap(pids: Iterable[int]) -> None:
    """Reap those of `pids` that are this process's exited children (never blocks)."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass


def reap_zombie_children() -> None:
    """Reap every exited child of this process (killed job processes, adopted orphans)."""
    reap(p for p in children_of(os.getpid()) if is_zombie(p))


def reap_killed(pids: Iterable[int], timeout_s: float = KILL_WAIT_S) -> None:
    """Wait (bounded) until every killed pid is gone: reaped here when it is (or becomes, once its
    own parent died) this process's child, or reaped by someone else."""
    pending = set(pids)
    deadline = time.monotonic() + timeout_s
    while pending and time.monotonic() < deadline:
        for pid in list(pending):
            try:
                done, _ = os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                done = 0 if os.path.exists(f"/proc/{pid}") else pid
            if done:
                pending.discard(pid)
        if pending:
            time.sleep(0.001)


def kill_descendants(pid: int, *, keep: Callable[[int], bool] = lambda _pid: False) -> set[int]:
    """SIGKILL every descendant of `pid` (except those `keep` spares), repeating until none is left
    alive (a process may fork while the tree is being killed). Returns the pids killed."""
    killed: set[int] = set()
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        alive = [p for p in descendants_of(pid) if not keep(p) and not is_zombie(p)]
        if not alive or time.monotonic() > deadline:
            return killed
        kill_pids(alive)
        killed.update(alive)


# --- cgroups -----------------------------------------------------------------------------------


def _write(path: Path, value: str) -> None:
    with open(path, "w") as handle:
        handle.write(value)


def _write_optional(path: Path, value: str) -> None:
    """Write a cgroup setting the kernel may not offer (no swap accounting, no pids controller)."""
    try:
        _write(path, value)
    except OSError as exc:
        logger.debug("cgroup setting %s unavailable: %s", path, exc)


def _read(path: Path) -> str:
    with open(path) as handle:
        return handle.read()


def _procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in _read(path / "cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def _own_cgroups() -> dict[str, str]:
    """Map each v1 controller (and "" for the v2 unified hierarchy) to this process's path."""
    paths: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _v1_mounts() -> dict[str, Path]:
    """Map each v1 controller to the mount point of its hierarchy."""
    mounts: dict[str, Path] = {}
    for line in _read(Path("/proc/self/mounts")).splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            for option in parts[3].split(","):
                mounts.setdefault(option, Path(parts[1]))
    return mounts


@dataclass
class CgroupLayout:
    """Where a worker keeps its jobs' cgroups: per controller, its home and its jobs' parent."""

    version: int
    homes: dict[str, Path]  # the worker's own cgroup per hierarchy (processes move back here)
    bases: dict[str, Path]  # the parent of this worker's job cgroups per hierarchy
    memory: str  # the key of the hierarchy that accounts memory

    def job_dirs(self, job_id: str) -> dict[str, Path]:
        """The cgroup directories of `job_id`, per hierarchy."""
        return {key: base / f"{JOB_PREFIX}{job_id}" for key, base in self.bases.items()}


def _cgroup_v1(worker_tag: str) -> CgroupLayout | None:
    mounts, own = _v1_mounts(), _own_cgroups()
    if "memory" not in mounts or "memory" not in own:
        return None
    homes: dict[str, Path] = {
        ctl: mounts[ctl] / own[ctl].lstrip("/")
        for ctl in ("memory", "pids", "freezer")
        if ctl in mounts and ctl in own
    }
    bases: dict[str, Path] = {ctl: home / worker_tag for ctl, home in homes.items()}
    for base in bases.values():
        base.mkdir(exist_ok=True)
    return CgroupLayout(1, homes, bases, "memory")


def _cgroup_v2(worker_tag: str) -> CgroupLayout | None:
    """A delegated v2 subtree: the worker moves into `<own>/worker`, jobs go to `<own>/<tag>/`.

    The "no internal processes" rule needs both the worker and the jobs in leaves below a
    cgroup whose subtree_control enables memory and pids.
    """
    root = Path("/sys/fs/cgroup")
    if not (root / "cgroup.controllers").exists():
        return None
    own = root / _own_cgroups().get("", "/").lstrip("/")
    if "memory" not in _read(own / "cgroup.controllers").split():
        return None
    home = own / "worker" if own.name != "worker" else own
    parent = home.parent
    home.mkdir(exist_ok=True)
    _write(home / "cgroup.procs", str(os.getpid()))
    _write(parent / "cgroup.subtree_control", "+memory +pids")
    base = parent / worker_tag
    base.mkdir(exist_ok=True)
    _write(base / "cgroup.subtree_control", "+memory +pids")
    return CgroupLayout(2, {"": home}, {"": base}, "")


def _remove_tree(path: Path) -> None:
    """Kill every process under cgroup `path` and remove it with its sub-cgroups."""
    if not path.is_dir():
        return
    for child in sorted(path.iterdir()):
        if child.is_dir():
            _remove_tree(child)
    kill_pids(_procs(path))
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        try:
            path.rmdir()
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                logger.warning("could not remove cgroup %s: %s", path, exc)
                return
            kill_pids(_procs(path))
            time.sleep(0.01)


def _clean_stale(layout: CgroupLayout) -> None:
    """Remove the job cgroups of workers on this host that died without cleaning up."""
    for base in layout.bases.values():
        for other in base.parent.glob(f"{WORKER_PREFIX}*"):
            pid = other.name.rsplit("-", 1)[-1]
            if other != base and pid.isdigit() and not Path(f"/proc/{pid}").exists():
                logger.info("removing stale job cgroups of a dead worker: %s", other)
                _remove_tree(other)


# --- the per-worker containment ----------------------------------------------------------------


@dataclass
class Containment:
    """The mechanism this worker uses; created in the main process, inherited by its children."""

    mode: str  # "cgroup-v1", "cgroup-v2" or "tree"
    layout: CgroupLayout | None = None
    why: str = ""
    job_max_pids: int = 0

    @property
    def uses_cgroups(self) -> bool:
        """Whether jobs are contained by cgroups (else by process-tree walks)."""
        return self.layout is not None

    def job(self, job_id: str, *, limit_mb: int) -> JobTree:
        """The process tree of `job_id` as the worker child about to run it sees it."""
        if self.layout is not None:
            return CgroupJobTree(self.layout, job_id, limit_mb, self.job_max_pids)
        return ProcessJobTree(job_id)

    def kill(self, job_id: str, child_pid: int) -> None:
        """SIGKILL the worker child `child_pid` and every process of `job_id` (main process side,
        only once the child is known to be running that job: see slots.slot_stop)."""
        if self.layout is None:
            kill_descendants(child_pid)
            kill_pids([child_pid])
            return
        cgroup_kill(self.layout, self.layout.job_dirs(job_id), spare=None)
        kill_pids([child_pid])  # in case it had already left the job's cgroup

    def release(self, job_id: str) -> int:
        """Kill what is left of `job_id` after its worker child died and remove its cgroups (main
        process side). Returns how many kernel OOM kills the job's cgroup saw. In tree mode the
        orphans are the sweeper's: they are now this process's children."""
        if self.layout is None:
            return 0
        dirs = self.layout.job_dirs(job_id)
        if not dirs[self.layout.memory].exists():
            return 0
        oom = cgroup_oom_kills(self.layout, dirs)
        cgroup_kill(self.layout, dirs, spare=None)
        for path in dirs.values():
            _rmdir_quiet(path)
        return oom

    def shutdown(self) -> None:
        """Remove this worker's cgroup directories (worker shutdown)."""
        if self.layout is not None:
            for base in self.layout.bases.values():
                _remove_tree(base)


def containment_setup(setting: str, *, job_max_pids: int = 0) -> Containment:
    """Choose and prepare this worker's mechanism (worker main process, before the pool forks).

    `setting` is "auto" (cgroups when writable, else tree), "cgroup" (raise if unavailable) or
    "tree". The main process becomes a child subreaper in every mode.
    """
    if not set_subreaper():
        logger.warning("could not become a child subreaper; orphans of killed jobs go to init")
    if setting == "tree":
        return Containment("tree", why="WARDEN_CONTAINMENT=tree")
    tag = f"{WORKER_PREFIX}{os.getpid()}"
    problems = []
    for version, make in ((1, _cgroup_v1), (2, _cgroup_v2)):
        try:
            layout = make(tag)
        except OSError as exc:
            problems.append(f"cgroup v{version}: {type(exc).__name__}: {exc}")
            continue
        if layout is not None:
            _clean_stale(layout)
            return Containment(f"cgroup-v{version}", layout, job_max_pids=job_max_pids)
    why = "; ".join(problems) or "no writable cgroup memory controller"
    if setting == "cgroup":
        raise RuntimeError(f"WARDEN_CONTAINMENT=cgroup but cgroups are unusable: {why}")
    return Containment("tree", why=why)


def cgroup_oom_kills(layout: CgroupLayout, dirs: dict[str, Path]) -> int:
    """How many processes the kernel OOM-killed inside the job's memory cgroup."""
    name = "memory.oom_control" if layout.version == 1 else "memory.events"
    try:
        text = _read(dirs[layout.memory] / name)
    except OSError:
        return 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "oom_kill":
            return int(value)
    return 0


def cgroup_kill(layout: CgroupLayout, dirs: dict[str, Path], *, spare: int | None) -> set[int]:
    """SIGKILL every process of the job's cgroups except `spare`, and wait until they are gone.

    With cgroup v2 `cgroup.kill` does it atomically; with v1 the freezer (when present) stops
    every member first, so none can fork while the group is being killed.
    """
    main = dirs[layout.memory]
    if layout.version == 2 and spare is None:
        try:
            _write(main / "cgroup.kill", "1")
        except OSError:
            pass
    freezer = dirs.get("freezer") if spare is None else None
    frozen = False
    if freezer is not None and freezer.is_dir():
        try:
            _write(freezer / "freezer.state", "FROZEN")
            frozen = True
        except OSError:
            pass
    deadline = time.monotonic() + KILL_WAIT_S
    killed: set[int] = set()
    try:
        while True:
            members = [p for p in _procs(main) if p != spare]
            if freezer is not None:
                members += [p for p in _procs(freezer) if p != spare and p not in members]
            if not members or time.monotonic() > deadline:
                return killed
            kill_pids(members)
            killed.update(members)
            if frozen:
                _write(freezer / "freezer.state", "THAWED")  # type: ignore[operator]
                frozen = False
            # No reaping here: in the main process a member may be a pool child, whose exit
            # status belongs to the pool. The worker child reaps its own (reap_killed).
            time.sleep(0.002)
    finally:
        if frozen:
            try:
                _write(freezer / "freezer.state", "THAWED")  # type: ignore[operator]
            except OSError:
                pass


def _rmdir_quiet(path: Path) -> None:
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                logger.warning("could not remove job cgroup %s: %s", path, exc)
                return
            time.sleep(0.005)


# --- one job's tree, from inside the worker child ------------------------------------------------


class JobTree:
    """The processes of one job as its worker child sees them; a context manager around the run."""

    job_id: str

    def __enter__(self) -> JobTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def memory_bytes(self) -> int:
        """The job's memory so far (cheap; polled every few milliseconds)."""
        raise NotImplementedError

    def confirmed_memory_bytes(self) -> int:
        """The job's memory, excluding reclaimable page cache (read when the cheap figure is past
        the limit)."""
        return self.memory_bytes()

    def kill_others(self) -> None:
        """SIGKILL every process of the job except the calling process."""
        raise NotImplementedError

    def oom_kills(self) -> int:
        """How many of the job's processes the kernel OOM-killed."""
        return 0

    def close(self) -> None:
        """End the job's tree: kill everything it started (the calling process survives)."""
        raise NotImplementedError


class CgroupJobTree(JobTree):
    """The job runs in its own cgroup(s); the worker child joins for the run and leaves after."""

    def __init__(self, layout: CgroupLayout, job_id: str, limit_mb: int, max_pids: int) -> None:
        self.layout = layout
        self.job_id = job_id
        self.limit_mb = limit_mb
        self.max_pids = max_pids
        self.dirs = layout.job_dirs(job_id)
        self._usage_fd: int | None = None
        self._oom = 0
        self._joined = False

    def __enter__(self) -> CgroupJobTree:
        try:
            self._create_and_join()
        except BaseException:
            self.close()  # leave and remove what was created
            raise
        return self

    def _create_and_join(self) -> None:
        memory = self.dirs[self.layout.memory]
        for path in self.dirs.values():
            path.mkdir(exist_ok=True)
        backstop = str(int(self.limit_mb * MB * BACKSTOP_FACTOR))
        if self.layout.version == 1:
            _write(memory / "memory.limit_in_bytes", backstop)
            # With swap accounting, no swapping past the limit either.
            _write_optional(memory / "memory.memsw.limit_in_bytes", backstop)
            usage = memory / "memory.usage_in_bytes"
            pids_dir = self.dirs.get("pids")
        else:
            _write(memory / "memory.max", backstop)
            _write_optional(memory / "memory.swap.max", "0")
            usage = memory / "memory.current"
            pids_dir = memory
        if self.max_pids and pids_dir is not None:
            _write_optional(pids_dir / "pids.max", str(self.max_pids))
        me = str(os.getpid())
        for path in self.dirs.values():
            _write(path / "cgroup.procs", me)
            self._joined = True
        self._usage_fd = os.open(usage, os.O_RDONLY)

    def memory_bytes(self) -> int:
        if self._usage_fd is None:
            return 0
        return int(os.pread(self._usage_fd, 32, 0))

    def confirmed_memory_bytes(self) -> int:
        keys = {"rss", "shmem"} if self.layout.version == 1 else {"anon", "shmem"}
        try:
            text = _read(self.dirs[self.layout.memory] / "memory.stat")
        except OSError:
            return self.memory_bytes()
        total = 0
        for line in text.splitlines():
            key, _, value = line.partition(" ")
            if key in keys:
                total += int(value)
        return total

    def kill_others(self) -> None:
        kill_pids(p for p in _procs(self.dirs[self.layout.memory]) if p != os.getpid())

    def oom_kills(self) -> int:
        return self._oom

    def close(self) -> None:
        if self._usage_fd is not None:
            os.close(self._usage_fd)
            self._usage_fd = None
        me = str(os.getpid())
        if self._joined:
            for key, home in self.layout.homes.items():
                try:
                    _write(home / "cgroup.procs", me)
                except OSError as exc:
                    logger.warning("could not leave job cgroup %s: %s", self.dirs[key], exc)
            self._joined = False
        self._oom = cgroup_oom_kills(self.layout, self.dirs)
        killed = cgroup_kill(self.layout, self.dirs, spare=None)
        for path in self.dirs.values():
            _rmdir_quiet(path)
        reap_killed(killed)
        reap_zombie_children()


class ProcessJobTree(JobTree):
    """The job is what the worker child (a subreaper) started during the run: its descendants."""

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.pid = os.getpid()
        self._before: set[tuple[int, int | None]] = set()
        self._baseline = 0
        self._forks: dict[tuple[int, int | None], int] = {}
        self._my_cmdline = _cmdline(self.pid)
        self._statm: int | None = None
        self._lock = threading.Lock()

    def _key(self, pid: int) -> tuple[int, int | None]:
        return (pid, process_start_ticks(pid))

    def _new_descendants(self) -> list[int]:
        return [p for p in descendants_of(self.pid) if self._key(p) not in self._before]

    def __enter__(self) -> ProcessJobTree:
        self._before = {self._key(p) for p in descendants_of(self.pid)}
        self._statm = os.open(f"/proc/{self.pid}/statm", os.O_RDONLY)
        self._baseline = self._own_rss()
        return self

    def _own_rss(self) -> int:
        if self._statm is None:
            return 0
        return int(os.pread(self._statm, 64, 0).split()[1]) * PAGE

    def memory_bytes(self) -> int:
        total = max(0, self._own_rss() - self._baseline)
        for pid in self._new_descendants():
            rss = anon_rss(pid)
            key = self._key(pid)
            with self._lock:
                if key not in self._forks:
                    # A plain fork shares the child's pages copy-on-write: count its growth
                    # from when it was first seen, not the memory it inherited.
                    self._forks[key] = rss if _cmdline(pid) == self._my_cmdline else 0
                elif self._forks[key] and _cmdline(pid) != self._my_cmdline:
                    self._forks[key] = 0  # it has exec'd another program since
                total += max(0, rss - self._forks[key])
        return total

    def kill_others(self) -> None:
        kill_pids(self._new_descendants())

    def close(self) -> None:
        if self._statm is not None:
            os.close(self._statm)
            self._statm = None
        before = {pid for pid, _ in self._before}
        killed = kill_descendants(
            self.pid, keep=lambda p: p in before and self._key(p) in self._before
        )
        reap_killed(killed)
        reap_zombie_children()


# --- the main process's sweeper ------------------------------------------------------------------


class OrphanSweeper:
    """Worker main process: reap and kill processes re-parented to it that are not pool children.

    A worker child that dies (crash, memory kill, hard limit, cancel) leaves its descendants to
    the main process, a subreaper; this thread SIGKILLs them (and what they started) and reaps
    them. A process must be older than `min_age_s` before it is touched, so a pool child that was
    forked a moment ago and is not yet in the pool's list is never mistaken for an orphan.
    """

    def __init__(
        self, pool_pids: Callable[[], set[int]], *, interval_s: float = 0.25, min_age_s: float = 0.5
    ) -> None:
        self.pool_pids = pool_pids
        self.interval_s = interval_s
        self.min_age_ticks = int(min_age_s * os.sysconf("SC_CLK_TCK"))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="warden-orphans", daemon=True)

    def start(self) -> None:
        """Sweep every `interval_s` seconds until stop()."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sweeping."""
        self._stop.set()

    def sweep(self) -> int:
        """One pass; return how many orphans were killed."""
        me = os.getpid()
        try:
            pool = self.pool_pids()
        except Exception:  # the pool is starting or stopping: try next time
            return 0
        now = _uptime_ticks()
        killed = 0
        for pid in children_of(me):
            if pid in pool:
                continue
            if is_zombie(pid):
                reap([pid])
                continue
            started = process_start_ticks(pid)
            if started is None or now - started < self.min_age_ticks:
                continue
            if PROBE_MODULE in _cmdline(pid):
                continue  # a plugin probe of this process's own sync, not an orphan
            kill_descendants(pid)
            killed += kill_pids([pid])
            reap_killed([pid], timeout_s=0.2)
        return killed

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sweep()
            except Exception:
                logger.exception("orphan sweep failed")


def _uptime_ticks() -> int:
    with open("/proc/uptime") as handle:
        return int(float(handle.read().split()[0]) * os.sysconf("SC_CLK_TCK"))


# --- this process's containment ------------------------------------------------------------------

_current: Containment | None = None


def worker_containment() -> Containment:
    """The containment chosen at worker start (inherited by the pool's children); tree mode when
    none was set up (a process that is not a Warden worker, e.g. a test calling ToolRunner)."""
    global _current
    if _current is None:
        _current = Containment("tree", why="not set up by a worker")
    return _current


def worker_containment_set(containment: Containment) -> None:
    """Install the containment chosen by the worker's main process."""
    global _current
    _current = containment
