"""A job owns its process tree: what it starts is counted toward its memory and dies at its end.

Two mechanisms, chosen once per worker (`WARDEN_CONTAINMENT`: auto, cgroup, tree):

- **cgroup** (v1 `memory`, `pids`, `freezer` hierarchies, or a delegated cgroup v2 subtree; needs
  write access, i.e. root or delegation): each worker child lives in a cgroup of its own (its
  *slot*, created when the child starts), so every process it starts, at any depth and however it
  daemonises, is born inside. A job is what joined the slot during the run of its tool. Memory is
  the slot's charge growth over the run (copy-on-write pages of a fork count once), with a kernel
  limit at 110 % of `memory_mb` set for the run as a backstop; ending the job SIGKILLs the
  processes that appeared during it. When the child itself is killed, the main process freezes the
  slot, kills every member and removes it. Reusing the slot keeps the per-job cost at a few reads
  and writes of cgroup files.
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
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

MB = 2**20
PR_SET_CHILD_SUBREAPER = 36
PAGE = os.sysconf("SC_PAGE_SIZE")
BACKSTOP_FACTOR = 1.10
KILL_WAIT_S = 2.0
SLOT_PREFIX = "slot-"
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
    """Resident anonymous and shared-memory (tmpfs, memfd) bytes of `pid`, 0 if gone: what it
    holds that page cache reclaim cannot take back."""
    try:
        with open(f"/proc/{pid}/status", "rb") as handle:
            text = handle.read()
    except OSError:
        return 0
    total = 0
    for line in text.splitlines():
        if line.startswith((b"RssAnon:", b"RssShmem:")):
            total += int(line.split()[1]) * 1024
    return total


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


def child_keys() -> set[tuple[int, int | None]]:
    """This process's children now, as (pid, start time) pairs."""
    return {(p, process_start_ticks(p)) for p in children_of(os.getpid())}


def reap_new_zombies(before: set[tuple[int, int | None]]) -> None:
    """Reap the exited children of this process that were not among `before` (a job's killed
    processes and adopted orphans; a plugin's own earlier children keep their exit status)."""
    reap(
        p
        for p in children_of(os.getpid())
        if is_zombie(p) and (p, process_start_ticks(p)) not in before
    )


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


def _write(path: str, value: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def _write_optional(path: str, value: str) -> None:
    """Write a cgroup setting the kernel may not offer (no swap accounting, no pids controller)."""
    try:
        _write(path, value)
    except OSError as exc:
        logger.debug("cgroup setting %s unavailable: %s", path, exc)


def _read(path: str) -> str:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 65536).decode()
    finally:
        os.close(fd)


def _procs(path: str) -> list[int]:
    try:
        return [int(p) for p in _read(f"{path}/cgroup.procs").split()]
    except (OSError, ValueError):
        return []


def _stat_value(text: str, keys: set[str]) -> int:
    total = 0
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key in keys:
            total += int(value)
    return total


def _own_cgroups() -> dict[str, str]:
    """Map each v1 controller (and "" for the v2 unified hierarchy) to this process's path."""
    paths: dict[str, str] = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    return paths


def _v1_mounts() -> dict[str, str]:
    """Map each v1 controller to the mount point of its hierarchy."""
    mounts: dict[str, str] = {}
    for line in _read("/proc/self/mounts").splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[2] == "cgroup":
            for option in parts[3].split(","):
                mounts.setdefault(option, parts[1])
    return mounts


@dataclass
class CgroupLayout:
    """Where a worker keeps its children's slots: per hierarchy, its own cgroup and their parent."""

    version: int
    homes: dict[str, str]  # the worker's own cgroup per hierarchy
    bases: dict[str, str]  # <home>/warden-<main pid>: the parent of its children's slots
    memory: str  # the key of the hierarchy that accounts memory

    def slot_dirs(self, child_pid: int) -> dict[str, str]:
        """The cgroup directories of worker child `child_pid`'s slot, per hierarchy."""
        return {key: f"{base}/{SLOT_PREFIX}{child_pid}" for key, base in self.bases.items()}

    @property
    def memory_files(self) -> tuple[str, str, str, str, set[str]]:
        """File names of (usage, limit, OOM events, unlimited value, anonymous stat keys)."""
        if self.version == 1:
            return (
                "memory.usage_in_bytes",
                "memory.limit_in_bytes",
                "memory.oom_control",
                "-1",
                {"rss", "shmem"},
            )
        return ("memory.current", "memory.max", "memory.events", "max", {"anon", "shmem"})


def _cgroup_v1(worker_tag: str) -> CgroupLayout | None:
    mounts, own = _v1_mounts(), _own_cgroups()
    if "memory" not in mounts or "memory" not in own:
        return None
    homes: dict[str, str] = {
        ctl: os.path.join(mounts[ctl], own[ctl].lstrip("/")).rstrip("/")
        for ctl in ("memory", "pids", "freezer")
        if ctl in mounts and ctl in own
    }
    bases: dict[str, str] = {ctl: f"{home}/{worker_tag}" for ctl, home in homes.items()}
    for base in bases.values():
        os.makedirs(base, exist_ok=True)
    return CgroupLayout(1, homes, bases, "memory")


def _cgroup_v2(worker_tag: str) -> CgroupLayout | None:
    """A delegated v2 subtree: the worker moves into `<own>/worker`, slots go to `<own>/<tag>/`.

    The "no internal processes" rule needs both the worker and the slots in leaves below a
    cgroup whose subtree_control enables memory and pids.
    """
    root = "/sys/fs/cgroup"
    if not os.path.exists(f"{root}/cgroup.controllers"):
        return None
    own = os.path.join(root, _own_cgroups().get("", "/").lstrip("/")).rstrip("/")
    available = _read(f"{own}/cgroup.controllers").split()
    if "memory" not in available:
        return None
    enable = " ".join(f"+{c}" for c in ("memory", "pids") if c in available)
    home = own if os.path.basename(own) == "worker" else f"{own}/worker"
    parent = os.path.dirname(home)
    os.makedirs(home, exist_ok=True)
    original = _own_cgroups().get("", "/")
    _write(f"{home}/cgroup.procs", str(os.getpid()))
    try:
        _write(f"{parent}/cgroup.subtree_control", enable)
        base = f"{parent}/{worker_tag}"
        os.makedirs(base, exist_ok=True)
        _write(f"{base}/cgroup.subtree_control", enable)
    except OSError:
        # Another process in our cgroup (the "no internal processes" rule), or no delegation:
        # move back where we were and let the caller fall back to tree mode.
        _write_optional(os.path.join(root, original.lstrip("/"), "cgroup.procs"), str(os.getpid()))
        raise
    return CgroupLayout(2, {"": home}, {"": base}, "")


def cgroup_kill(layout: CgroupLayout, dirs: dict[str, str]) -> set[int]:
    """SIGKILL every process of a slot (the main process, when its child is stopped or dead) and
    wait until they are gone; return the pids killed.

    With cgroup v2 `cgroup.kill` does it atomically; with v1 the freezer (when present) stops
    every member first, so none can fork while the group is being killed.
    """
    main = dirs[layout.memory]
    freezer = dirs.get("freezer")

    def members() -> list[int]:
        found = _procs(main)
        if freezer is not None:
            found += [p for p in _procs(freezer) if p not in found]
        return found

    killed: set[int] = set()
    alive = members()
    if not alive:
        return killed
    if layout.version == 2:
        _write_optional(f"{main}/cgroup.kill", "1")
    frozen = False
    if freezer is not None:
        try:
            _write(f"{freezer}/freezer.state", "FROZEN")
            frozen = True
            alive = members()  # what was forked before the freeze took hold
        except OSError:
            pass
    deadline = time.monotonic() + KILL_WAIT_S
    try:
        while alive and time.monotonic() < deadline:
            kill_pids(alive)
            killed.update(alive)
            if frozen:
                _write(f"{freezer}/freezer.state", "THAWED")
                frozen = False
            # No reaping here: in the main process a member may be a pool child, whose exit
            # status belongs to the pool; orphans are reaped by the sweeper.
            time.sleep(0.001)
            alive = members()
        return killed
    finally:
        if frozen:
            _write_optional(f"{freezer}/freezer.state", "THAWED")


def _rmdir_quiet(path: str) -> None:
    deadline = time.monotonic() + KILL_WAIT_S
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno != errno.EBUSY or time.monotonic() > deadline:
                logger.warning("could not remove cgroup %s: %s", path, exc)
                return
            time.sleep(0.005)


def _remove_tree(path: str) -> None:
    """Kill every process under cgroup `path` and remove it with its sub-cgroups."""
    if not os.path.isdir(path):
        return
    for entry in sorted(os.listdir(path)):
        if os.path.isdir(f"{path}/{entry}"):
            _remove_tree(f"{path}/{entry}")
    kill_pids(_procs(path))
    _rmdir_quiet(path)


def _clean_stale(layout: CgroupLayout) -> None:
    """Remove the slots of workers on this host that died without cleaning up."""
    for base in layout.bases.values():
        parent = os.path.dirname(base)
        for entry in os.listdir(parent):
            pid = entry[len(WORKER_PREFIX) :]
            if (
                entry.startswith(WORKER_PREFIX)
                and pid.isdigit()
                and f"{parent}/{entry}" != base
                and not os.path.exists(f"/proc/{pid}")
            ):
                logger.info("removing stale cgroups of a dead worker: %s/%s", parent, entry)
                _remove_tree(f"{parent}/{entry}")


class CgroupSlot:
    """A worker child's own cgroups (worker child side), joined once when the child starts."""

    def __init__(self, layout: CgroupLayout, max_pids: int) -> None:
        self.layout = layout
        self.pid = os.getpid()
        self.dirs = layout.slot_dirs(self.pid)
        self.memory = self.dirs[layout.memory]
        usage, self._limit, self._events, self._unlimited, self._anon_keys = layout.memory_files
        for path in self.dirs.values():
            if os.path.isdir(path):  # a dead child with this pid left it: clear it out
                cgroup_kill(layout, {layout.memory: path})
            os.makedirs(path, exist_ok=True)
        self._memsw = layout.version == 1 and os.path.exists(
            f"{self.memory}/memory.memsw.limit_in_bytes"
        )
        pids = self.dirs.get("pids", self.memory if layout.version == 2 else None)
        if max_pids and pids is not None:
            _write_optional(f"{pids}/pids.max", str(max_pids))
        me = str(self.pid)
        for path in self.dirs.values():
            _write(f"{path}/cgroup.procs", me)
        self._usage_fd = os.open(f"{self.memory}/{usage}", os.O_RDONLY)

    def usage(self) -> int:
        """Bytes charged to the slot now."""
        return int(os.pread(self._usage_fd, 32, 0))

    def anon(self) -> int:
        """Anonymous and shared memory charged to the slot (no reclaimable page cache)."""
        return _stat_value(_read(f"{self.memory}/memory.stat"), self._anon_keys)

    def oom_kills(self) -> int:
        """Processes the kernel OOM-killed inside the slot so far."""
        return _stat_value(_read(f"{self.memory}/{self._events}"), {"oom_kill"})

    def members(self) -> list[int]:
        """Every process in the slot (this child included)."""
        return _procs(self.memory)

    def set_limit(self, limit: int | None) -> None:
        """Set (or with None lift) the slot's kernel memory limit."""
        value = str(limit) if limit is not None else self._unlimited
        path = f"{self.memory}/{self._limit}"
        memsw = f"{self.memory}/memory.memsw.limit_in_bytes"
        if not self._memsw:
            _write(path, value)
        elif limit is None:  # raise: memsw first, it must stay >= the memory limit
            _write(memsw, value)
            _write(path, value)
        else:
            _write(path, value)
            _write(memsw, value)


# --- the per-worker containment ----------------------------------------------------------------


@dataclass
class Containment:
    """The mechanism this worker uses; created in the main process, inherited by its children."""

    mode: str  # "cgroup-v1", "cgroup-v2" or "tree"
    layout: CgroupLayout | None = None
    why: str = ""
    job_max_pids: int = 0
    slot: CgroupSlot | None = field(default=None, repr=False)

    def child_setup(self) -> None:
        """In a new worker child: join its own cgroup slot (cgroup mode). On failure this child
        falls back to tree mode, and says why."""
        if self.layout is None:
            return
        try:
            self.slot = CgroupSlot(self.layout, self.job_max_pids)
        except OSError as exc:
            logger.warning("worker child %d uses tree containment: %s", os.getpid(), exc)
            self.mode, self.layout, self.why = "tree", None, f"slot set-up failed: {exc}"

    def job(self, job_id: str, *, limit_mb: int) -> JobTree:
        """The process tree of `job_id` as the worker child about to run it sees it."""
        if self.slot is not None:
            return CgroupJobTree(self.slot, job_id, limit_mb)
        return ProcessJobTree(job_id)

    def kill(self, job_id: str, child_pid: int) -> None:
        """SIGKILL the worker child `child_pid` and every process of its job (main process side,
        only once the child is known to be running that job: see slots.slot_stop)."""
        dirs = self.layout.slot_dirs(child_pid) if self.layout is not None else None
        if self.layout is not None and dirs and os.path.isdir(dirs[self.layout.memory]):
            cgroup_kill(self.layout, dirs)
        else:
            kill_descendants(child_pid)
        kill_pids([child_pid])

    def release(self, child_pid: int | None, oom_base: int = 0) -> int:
        """After worker child `child_pid` died: kill what is left in its slot and remove it (main
        process side). Returns how many kernel OOM kills the slot saw since `oom_base`. In tree
        mode the orphans are the sweeper's: they are now this process's children."""
        if self.layout is None or child_pid is None:
            return 0
        dirs = self.layout.slot_dirs(child_pid)
        memory = dirs[self.layout.memory]
        if not os.path.isdir(memory):
            return 0
        _, _, events, _, _ = self.layout.memory_files
        try:
            oom = _stat_value(_read(f"{memory}/{events}"), {"oom_kill"}) - oom_base
        except OSError:
            oom = 0
        cgroup_kill(self.layout, dirs)
        for path in dirs.values():
            _rmdir_quiet(path)
        return max(0, oom)

    def sweep_slots(self, alive: set[int]) -> None:
        """Remove the slots of children that died (main process, periodically), killing what
        they left behind; `alive` are the pool's current children."""
        if self.layout is None:
            return
        base = self.layout.bases[self.layout.memory]
        try:
            entries = os.listdir(base)
        except OSError:
            return
        for entry in entries:
            pid = entry[len(SLOT_PREFIX) :]
            if (
                entry.startswith(SLOT_PREFIX)
                and pid.isdigit()
                and int(pid) not in alive
                and (not os.path.exists(f"/proc/{pid}") or is_zombie(int(pid)))
            ):
                self.release(int(pid))

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


# --- one job's tree, from inside the worker child ------------------------------------------------


class JobTree:
    """The processes of one job as its worker child sees them; a context manager around the run."""

    job_id: str
    # memory_bytes() already excludes page cache (no confirmation read needed).
    precise = False
    _children_before: set[tuple[int, int | None]] = set()

    def __enter__(self) -> JobTree:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def slot_info(self) -> dict[str, Any]:
        """What the main process needs to find the job's processes if this child dies."""
        return {}

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
    """The job is what joined the child's slot during the run; its memory is the slot's growth."""

    def __init__(self, slot: CgroupSlot, job_id: str, limit_mb: int) -> None:
        self.slot = slot
        self.job_id = job_id
        self.limit_mb = limit_mb
        self._oom_base = slot.oom_kills()
        self._before: set[tuple[int, int | None]] = set()
        self._usage_base = 0
        self._anon_base = 0
        self._oom = 0
        self._limited = False

    def slot_info(self) -> dict[str, Any]:
        return {"oom_base": self._oom_base}

    def __enter__(self) -> CgroupJobTree:
        self._children_before = child_keys()
        self._before = {(p, process_start_ticks(p)) for p in self.slot.members()}
        self._usage_base = self.slot.usage()
        self._anon_base = self.slot.anon()
        self.slot.set_limit(self._usage_base + int(self.limit_mb * MB * BACKSTOP_FACTOR))
        self._limited = True
        return self

    def _new_members(self) -> list[int]:
        me = os.getpid()
        return [
            p
            for p in self.slot.members()
            if p != me and (p, process_start_ticks(p)) not in self._before
        ]

    def memory_bytes(self) -> int:
        return max(0, self.slot.usage() - self._usage_base)

    def confirmed_memory_bytes(self) -> int:
        return max(0, self.slot.anon() - self._anon_base)

    def kill_others(self) -> None:
        kill_pids(self._new_members())

    def oom_kills(self) -> int:
        return self._oom

    def close(self) -> None:
        killed: set[int] = set()
        deadline = time.monotonic() + KILL_WAIT_S
        while time.monotonic() < deadline:
            alive = [p for p in self._new_members() if not is_zombie(p)]
            if not alive:
                break
            kill_pids(alive)
            killed.update(alive)
        reap_killed(killed)
        reap_new_zombies(self._children_before)  # also helpers the plugin never waited for
        try:
            self._oom = self.slot.oom_kills() - self._oom_base
        except OSError:
            self._oom = 0
        if self._limited:
            self.slot.set_limit(None)
            self._limited = False


class ProcessJobTree(JobTree):
    """The job is what the worker child (a subreaper) started during the run: its descendants."""

    precise = True

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
        self._children_before = child_keys()
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
        reap_new_zombies(self._children_before)


# --- the main process's sweeper ------------------------------------------------------------------
# --- the main process's sweeper ------------------------------------------------------------------


def billiard_children() -> set[int]:
    """Pids of the processes this process started through billiard: the pool's children (and an
    embedded beat). Raises RuntimeError if the set changed while it was read (try again)."""
    from billiard import process

    return {p.pid for p in tuple(process._children) if p.pid}


class OrphanSweeper:
    """Worker main process: reap and kill processes re-parented to it that it did not start.

    A worker child that dies (crash, memory kill, hard limit, cancel) leaves its descendants to
    the main process, a subreaper; this thread SIGKILLs them (and what they started) and reaps
    them. Spared: billiard's children (the pool, an embedded beat), the plugin probes of this
    process's own syncs, anything younger than `min_age_s`, and anything not seen on the previous
    pass too, so a process forked a moment ago and not yet registered is never mistaken for an
    orphan. A pid billiard knows is never reaped here: its exit status belongs to the pool.
    """

    def __init__(
        self, pool_pids: Callable[[], set[int]], *, interval_s: float = 0.25, min_age_s: float = 0.5
    ) -> None:
        self.pool_pids = pool_pids
        self.interval_s = interval_s
        self.min_age_ticks = int(min_age_s * os.sysconf("SC_CLK_TCK"))
        self._seen: set[tuple[int, int | None]] = set()

    def sweep(self) -> int:
        """One pass; return how many orphans were killed."""
        from plugins_app.probe import ACTIVE_PROBES

        try:
            spared = self.pool_pids() | set(ACTIVE_PROBES)
        except RuntimeError:  # the pool changed while it was read: next pass
            return 0
        now = _uptime_ticks()
        killed = 0
        seen: set[tuple[int, int | None]] = set()
        for pid in children_of(os.getpid()):
            if pid in spared:
                continue
            if is_zombie(pid):
                reap([pid])
                continue
            key = (pid, process_start_ticks(pid))
            if key[1] is None or now - key[1] < self.min_age_ticks:
                continue
            seen.add(key)
            if key not in self._seen:
                continue  # first sighting: confirm on the next pass
            kill_descendants(pid)
            killed += kill_pids([pid])
            reap_killed([pid], timeout_s=0.2)
        self._seen = seen
        return killed


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
