"""Read a topology file: its text (a file, or stdin for `-`), the YAML (nsgen.document: limits,
line and column of every value), then the model, the expanders and the cross-object checks.

Every stage reports every problem it finds at once, and stages that do not depend on each
other both run: the core model's field errors and the expanders' own field errors (of
`networks:`, `containers:`, `cluster:`) come out together. A stage that needs the one before
it runs only when that one found nothing: the expansion needs a valid core model, and the
cross-object checks need the expanded topology. Problems are listed in file order, each at
its line and column when the file has the value."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import gc
import os
import stat
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nsgen.document import MAX_BYTES, Document, Marks, parse_document
from nsgen.errors import MAX_PLACED, Problem, TopologyError, UsageError
from nsgen.expand import check_sugar, expand, split_sugar
from nsgen.messages import described, shown
from nsgen.model import Topology
from nsgen.validate import check_topology

STDIN = "-"
"""The FILE argument that means: read the topology from standard input."""
STDIN_NAME = "<stdin>"
"""How messages name standard input."""


def parse_yaml(text: str, source: str) -> Any:
    """Parse YAML text; a syntax error, a key given twice, a tag the format does not use or
    a limit exceeded becomes a TopologyError with line:column."""
    return parse_document(text, source).data


def topology_from_data(data: Any, source: str, marks: Marks | None = None) -> Topology:
    """Validate parsed YAML into a Topology, or raise a TopologyError listing every problem
    (placed at their lines when `marks` knows where the values are)."""
    locate = marks.locate if marks is not None else None
    if not isinstance(data, dict):
        got = "nothing" if data is None else shown(data)
        raise TopologyError(
            source, [Problem("", f"the file must hold a mapping (name:, host:, ...), got {got}")]
        )
    core, sugar = split_sugar(data)
    try:
        topology = Topology.model_validate(core)
    except ValidationError as exc:
        # the expanders' field rules do not need the core model: report theirs too
        problems, unlisted = described(exc, limit=MAX_PLACED)
        raise TopologyError(source, problems + check_sugar(sugar), locate, unlisted) from None
    topology, problems = expand(topology, sugar)
    if problems:
        raise TopologyError(source, problems, locate)
    problems = check_topology(topology)
    if problems:
        raise TopologyError(source, problems, locate)
    return topology


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file (`-`: standard input)."""
    document, source = read_document(path)
    with collector_paused():
        return topology_from_data(document.data, source, document.marks)


def read_document(path: str | Path) -> tuple[Document, str]:
    """A topology file's YAML (`-`: standard input), parsed within the limits, and the name
    messages give the file. Raises UsageError or TopologyError."""
    text, source = read_text(path)
    with collector_paused():
        return parse_document(text, source), source


@contextlib.contextmanager
def collector_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for a while. Reading a topology builds hundreds
    of thousands of objects (YAML nodes, then dicts, then models) that form no cycles, and
    every collection walked them all again: it was two thirds of the time of loading a
    5,000-namespace file. Memory is still freed as usual (by reference counts)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def source_name(path: str | Path) -> str:
    """How messages name a FILE argument (`<stdin>` for `-`)."""
    return STDIN_NAME if str(path) == STDIN else str(path)


def read_text(path: str | Path) -> tuple[str, str]:
    """The text of a topology file and the name messages give it. `-` reads standard input.
    A missing file, a directory, a FIFO nobody writes to or a file that cannot be read is a
    UsageError in one line; text over the size limit or not UTF-8 is a TopologyError."""
    if str(path) == STDIN:
        return _decode(sys.stdin.buffer.read(MAX_BYTES + 1), STDIN_NAME), STDIN_NAME
    source = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer that may never come
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise UsageError(_cannot(source, exc)) from None
    try:
        return _decode(_read(fd, source), source), source
    except OSError as exc:
        raise UsageError(_cannot(source, exc)) from None
    finally:
        os.close(fd)


def _read(fd: int, source: str) -> bytes:
    mode = os.fstat(fd).st_mode
    if stat.S_ISDIR(mode):
        raise UsageError(f"{source}: is a directory, not a topology file")
    first = b""
    if stat.S_ISFIFO(mode):
        try:
            first = os.read(fd, MAX_BYTES + 1)
        except BlockingIOError:
            pass  # a writer is there, with nothing written yet: wait for it below
        else:
            if not first:
                raise UsageError(f"{source}: is a FIFO with no writer: nothing to read")
    flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    fcntl.fcntl(fd, fcntl.F_SETFL, flags & ~os.O_NONBLOCK)
    chunks = [first]
    size = len(first)
    while size <= MAX_BYTES:
        chunk = os.read(fd, MAX_BYTES + 1 - size)
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _cannot(source: str, exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return f"{source}: no such file"
    reason = os.strerror(exc.errno) if exc.errno else str(exc)
    return f"{source}: cannot read: {reason[:1].lower()}{reason[1:]}"


def _decode(data: bytes, source: str) -> str:
    if len(data) > MAX_BYTES:
        raise TopologyError(
            source, [Problem("", f"the file is larger than {MAX_BYTES // 2**20} MiB, the limit")]
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        start = data.rfind(b"\n", 0, exc.start) + 1
        column = len(data[start : exc.start].decode("utf-8", "replace")) + 1
        byte = data[exc.start]
        raise TopologyError(
            source,
            [
                Problem(
                    "",
                    f"not UTF-8 text: byte 0x{byte:02x} {exc.reason} (save the file as UTF-8)",
                    line=line,
                    column=column,
                )
            ],
        ) from None
