"""Detached labs' records, and how a process finds a lab's keeper alive and joins its
namespaces.

A lab started by `nsgen lab up` lives in the sandbox its keeper (nsgen.keeper) holds. Its
record is kept outside that sandbox, in LABS_DIR/NAME/ (/run/nsgen-labs/NAME/, a tmpfs that a
reboot empties, as it ends every lab):

  lab.json     name, topology file, topology name, since, state ("starting" until the
               topology is up, then "up"), --dns, the nodes `lab exec` can enter, and the
               keeper's PID with its start time (/proc/PID/stat field 22, in clock ticks since
               boot): a PID the kernel reuses for another process has another start time
  before.json  the snapshot (nsgen.snapshot) taken inside the lab just before `up`, which
               `lab down` compares the state after teardown with

A keeper counts as alive only if a pidfd opened on its PID shows the recorded start time and
the process is not a zombie; every later step (joining, signalling) goes through that pidfd,
so it cannot reach another process that inherited the PID.
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from nsgen import kernel
from nsgen.errors import NsgenError, UsageError
from nsgen.sandbox import LABS_DIR, UPSTREAM_NETNS

HOST_NODE = "host"
UPSTREAM_NODE = "upstream"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_UNCLAIMED_GRACE = 60.0
"""Seconds a record directory may exist without lab.json (a `lab up` starting its keeper)."""


class LabGone(NsgenError):
    """The lab's keeper has ended: its sandbox, and everything in it, went with it."""


def labs_root() -> Path:
    return Path(LABS_DIR)


def check_lab_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise UsageError(
            f"lab name {name!r}: letters, digits, '_', '-' and '.', starting with a letter or "
            "digit, at most 64 characters"
        )
    return name


@dataclass
class LabRecord:
    name: str
    file: str
    topology: str
    since: str
    keeper_pid: int
    keeper_start: int
    state: str = "starting"
    dns: bool = False
    nodes: dict[str, str] = field(default_factory=dict)
    """node name -> network namespace inside the lab ("" for the lab's root namespace)"""

    @property
    def path(self) -> Path:
        return labs_root() / self.name

    def save(self) -> None:
        """Write lab.json whole or not at all (a reader never sees half of it)."""
        temporary = self.path / "lab.json.new"
        temporary.write_text(json.dumps(asdict(self), indent=2) + "\n")
        os.replace(temporary, self.path / "lab.json")

    def save_before(self, snapshot: dict[str, Any]) -> None:
        (self.path / "before.json").write_text(json.dumps(snapshot, sort_keys=True))

    def before(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.path / "before.json").read_text())
        return data

    def node_netns(self, node: str) -> str:
        """The network namespace NODE names inside the lab ("" for its root namespace)."""
        if node in self.nodes:
            return self.nodes[node]
        known = ", ".join(self.nodes)
        raise UsageError(f"lab {self.name} has no node {node!r} (its nodes: {known})")


def lab_nodes(namespaces: list[str]) -> dict[str, str]:
    """What `lab exec`/`lab shell` can enter: `host` (the lab's root namespace), every
    namespace of the topology (containers, pods and nodes are namespaces of their names) and
    `upstream` (also as nsgen-upstream, which a namespace named upstream leaves as the only
    name of the simulated upstream)."""
    nodes = {HOST_NODE: ""}
    nodes.update({name: name for name in namespaces})
    nodes.setdefault(UPSTREAM_NODE, UPSTREAM_NETNS)
    nodes[UPSTREAM_NETNS] = UPSTREAM_NETNS
    return nodes


def claim(name: str) -> Path:
    """Create LABS_DIR/NAME/ for a new lab, or refuse if a lab of that name is alive (a gone
    one's record is removed first)."""
    root = labs_root()
    root.mkdir(parents=True, exist_ok=True)
    path = root / name
    for _ in range(2):
        try:
            path.mkdir()
            return path
        except FileExistsError:
            record = read(name)
            if record is not None and keeper(record) is not None:
                raise NsgenError(
                    f"lab {name} is already up (keeper PID {record.keeper_pid}); "
                    f"nsgen lab down {name} first, or give another --name"
                ) from None
            if record is None and not _abandoned(path):
                raise NsgenError(f"lab {name} is being started by another nsgen") from None
            remove(name)
    raise NsgenError(f"{path}: cannot claim the lab's record")


def _abandoned(path: Path) -> bool:
    try:
        return time.time() - path.stat().st_mtime > _UNCLAIMED_GRACE
    except FileNotFoundError:
        return True


def read(name: str) -> LabRecord | None:
    try:
        data = json.loads((labs_root() / name / "lab.json").read_text())
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError):
        return None
    return LabRecord(**data)


def remove(name: str) -> None:
    shutil.rmtree(labs_root() / name, ignore_errors=True)


def names() -> list[str]:
    """Every lab with a record directory, sorted."""
    root = labs_root()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if p.is_dir())


def lab_status(name: str) -> tuple[LabRecord | None, str]:
    """A lab's record and its state: starting, up, or gone (keeper ended; for a directory
    without a record, abandoned by a `lab up` that died before starting its keeper)."""
    record = read(name)
    if record is None:
        return None, "gone" if _abandoned(labs_root() / name) else "starting"
    pidfd = keeper(record)
    if pidfd is None:
        return record, "gone"
    os.close(pidfd)
    return record, record.state


# ---- the keeper ------------------------------------------------------------------------------


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot), or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # the command name (field 2) may hold spaces and parentheses: split after its last ')'
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def keeper(record: LabRecord) -> int | None:
    """A pidfd on the lab's keeper, or None if the keeper has ended (the PID is free, reused by
    another process, or held by a zombie)."""
    try:
        pidfd = os.pidfd_open(record.keeper_pid)
    except ProcessLookupError:
        return None
    # checked after the pidfd is open: if the start time matches now, the pidfd is the keeper's
    if start_time(record.keeper_pid) != record.keeper_start:
        os.close(pidfd)
        return None
    return pidfd


def live(name: str) -> tuple[LabRecord, int]:
    """The record and a pidfd on the keeper of a lab that is up; a gone lab's record is
    removed and LabGone raised."""
    record = read(check_lab_name(name))
    if record is None:
        raise NsgenError(f"no lab named {name} (nsgen lab list shows the labs)")
    pidfd = keeper(record)
    if pidfd is None:
        remove(name)
        raise LabGone(
            f"lab {name} is gone: its keeper (PID {record.keeper_pid}) has ended, and its "
            "sandbox with it; record removed"
        )
    return record, pidfd


def enter(pidfd: int, children_too: bool = False) -> None:
    """Join the lab's mount and network namespaces (this process), keeping the working
    directory where it can; with `children_too`, its PID namespace as well, for the processes
    this one starts from now on (they then die with the keeper). The kernel lets no process
    whose children go to another PID namespace start a thread: only a caller that needs no
    threads (`lab exec`) takes `children_too`; others use `children_in_lab` around a spawn."""
    here = os.getcwd()
    kinds = kernel.CLONE_NEWNS | kernel.CLONE_NEWNET
    try:
        kernel.setns(pidfd, kinds | (kernel.CLONE_NEWPID if children_too else 0))
    except OSError as error:
        raise LabGone(f"cannot join the lab: {error.strerror}") from None
    try:
        os.chdir(here)
    except OSError:
        os.chdir("/")


@contextmanager
def children_in_lab(pidfd: int) -> Iterator[None]:
    """Processes started inside the with-block belong to the lab's PID namespace (and so die
    with its keeper); afterwards this process's children are its own again."""
    own = os.open("/proc/self/ns/pid", os.O_RDONLY | os.O_CLOEXEC)
    try:
        kernel.setns(pidfd, kernel.CLONE_NEWPID)
        try:
            yield
        finally:
            kernel.setns(own, kernel.CLONE_NEWPID)
    finally:
        os.close(own)


def _namespace_inode(pid: int | str, kind: str) -> int | None:
    try:
        return os.stat(f"/proc/{pid}/ns/{kind}").st_ino
    except OSError:
        return None


def end_lab_processes(record: LabRecord, pidfd: int) -> int:
    """SIGKILL every process of the lab's PID namespace but the keeper (shells and commands
    started by `lab exec`/`lab shell`, the lab's dnsmasq): a process left in one of the lab's
    namespaces would keep it, and its links, alive through teardown. Each is signalled through
    a pidfd opened and checked first. Returns how many were ended."""
    lab = _namespace_inode(record.keeper_pid, "pid")
    if lab is None or start_time(record.keeper_pid) != record.keeper_start:
        return 0
    ended = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == record.keeper_pid:
            continue
        if _namespace_inode(entry, "pid") != lab:
            continue
        try:
            member = os.pidfd_open(int(entry))
        except ProcessLookupError:
            continue
        try:
            if _namespace_inode(entry, "pid") == lab:  # still the process we looked at
                signal.pidfd_send_signal(member, signal.SIGKILL)
                _wait_for_exit(member, 5.0)
                ended += 1
        except ProcessLookupError:
            pass
        finally:
            os.close(member)
    return ended


def _wait_for_exit(pidfd: int, seconds: float) -> bool:
    """A pidfd turns readable when its process has ended."""
    return bool(select.select([pidfd], [], [], seconds)[0])


def stop_keeper(pidfd: int) -> None:
    """End the keeper (SIGTERM, then SIGKILL after 5 s) and wait until it has."""
    for signum in (signal.SIGTERM, signal.SIGKILL):
        try:
            signal.pidfd_send_signal(pidfd, signum)
        except ProcessLookupError:
            return
        if _wait_for_exit(pidfd, 5.0):
            return
    raise NsgenError("the lab's keeper did not end after SIGKILL")


def kill_keeper(pid: int, start: int) -> None:
    """End a keeper that a failed `lab up` started (by PID, checked against its start time)."""
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    try:
        if start_time(pid) == start:
            stop_keeper(pidfd)
    finally:
        os.close(pidfd)
