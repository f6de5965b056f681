"""The state record under /run/nsgen/<topology>/, shared by setup.sh, teardown.sh and
`nsgen up`/`down`, and the per-topology lock.

Layout (all plain text, so the scripts and nsgen read the same record):
  digest       sha256 of the topology that was set up
  journal      "begin N" before step N runs, "done N" after, "complete" at the end
  plan.json    (nsgen up only) the steps' titles and undo texts, so `down` needs no YAML
  netns-dir.NS marks an /etc/netns/NS/ directory this topology created
  log.jsonl    (nsgen up, by default) the step log
Shared by all topologies: /run/nsgen/.sysctl/KEY/ (a root-namespace sysctl's original value
and which topologies changed it; see templates/_helpers.sh).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nsgen.errors import NsgenError

STATE_ROOT = Path("/run/nsgen")


class BusyError(NsgenError):
    """Another nsgen run holds the topology's lock for longer than we were willing to wait."""

    exit_code = 5


@dataclass(frozen=True)
class Journal:
    begun: frozenset[int]
    done: frozenset[int]
    complete: bool


class StateDir:
    """One topology's record."""

    def __init__(self, topology: str, root: Path = STATE_ROOT) -> None:
        self.topology = topology
        self.path = root / topology

    def exists(self) -> bool:
        return self.path.is_dir()

    def create(self, digest: str) -> None:
        """Claim the record (fails if it exists) and write the digest."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(self.path)
        (self.path / "digest").write_text(digest + "\n")

    def digest(self) -> str | None:
        try:
            return (self.path / "digest").read_text().strip()
        except FileNotFoundError:
            return None

    def append(self, line: str) -> None:
        with open(self.path / "journal", "a", encoding="ascii") as journal:
            journal.write(line + "\n")
            journal.flush()
            os.fsync(journal.fileno())

    def journal(self) -> Journal:
        begun, done, complete = set(), set(), False
        try:
            lines = (self.path / "journal").read_text().splitlines()
        except FileNotFoundError:
            lines = []
        for line in lines:
            word, _, number = line.partition(" ")
            if word == "begin":
                begun.add(int(number))
            elif word == "done":
                done.add(int(number))
            elif word == "complete":
                complete = True
        return Journal(frozenset(begun), frozenset(done), complete)

    def write_plan(self, record: dict[str, Any]) -> None:
        tmp = self.path / "plan.json.tmp"
        tmp.write_text(json.dumps(record, indent=1, sort_keys=True))
        tmp.rename(self.path / "plan.json")

    def read_plan(self) -> dict[str, Any] | None:
        try:
            return json.loads((self.path / "plan.json").read_text())  # type: ignore[no-any-return]
        except FileNotFoundError:
            return None

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=False)


@contextmanager
def topology_lock(topology: str, timeout: float, root: Path = STATE_ROOT) -> Iterator[None]:
    """An exclusive flock on /run/nsgen/<topology>.lock for the duration of a with-block.

    The lock file is removed on release (while still held), so no file is left behind; a
    waiter that then locks the removed file notices the inode changed and tries again.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / f"{topology}.lock"
    deadline = time.monotonic() + timeout
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise
                    if time.monotonic() >= deadline:
                        raise BusyError(
                            f"{topology}: another nsgen run holds {path} (waited {timeout:g} s); "
                            "try again when it has finished"
                        ) from None
                    time.sleep(0.05)
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    try:
        yield
    finally:
        try:
            os.unlink(path)
        finally:
            os.close(fd)
