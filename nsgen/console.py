"""What a run shows and keeps: the console's progress lines (stderr) and the JSON Lines log,
one `Record` per step or undo as it ran."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class Record:
    """One line of the JSON Lines log: a step (or an undo) as it ran."""

    phase: str  # "do", "undo" or "preflight"
    step: int
    total: int
    title: str
    commands: str
    exit_code: int
    stdout: str
    stderr: str
    started: str
    duration_ms: float


class Console:
    """Progress on stderr: one line per step; on a terminal the running step shows first."""

    def __init__(
        self, quiet: bool = False, verbose: bool = False, stream: IO[str] | None = None
    ) -> None:
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.verbose = verbose
        self.tty = self.stream.isatty()

    def say(self, text: str) -> None:
        print(text, file=self.stream, flush=True)

    def info(self, text: str) -> None:
        if not self.quiet:
            self.say(text)

    def _label(self, phase: str, number: int, total: int) -> str:
        width = len(str(total))
        prefix = "undo " if phase == "undo" else ""
        return f"[{prefix}{number:>{width}}/{total}]"

    def begin(self, phase: str, number: int, total: int, title: str) -> None:
        if self.tty and not self.quiet:
            self.stream.write(f"{self._label(phase, number, total)} {title} ...")
            self.stream.flush()

    def end(self, record: Record) -> None:
        ok = record.exit_code == 0
        if self.quiet and ok:
            return
        line = (
            f"{self._label(record.phase, record.step, record.total)} {record.title}  "
            f"{'ok' if ok else 'FAILED'}  {record.duration_ms:.0f} ms"
        )
        if self.tty and not self.quiet:
            self.stream.write("\r\033[K")
        self.say(line)
        if self.verbose or not ok:
            for command in record.commands.splitlines():
                self.say(f"    $ {command}")
            for text in (record.stdout, record.stderr):
                for out in text.rstrip("\n").splitlines():
                    self.say(f"    | {out}")


class Log:
    """The JSON Lines log file; every record is flushed as it is written."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.file: IO[str] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", encoding="utf-8")  # noqa: SIM115

    def write(self, record: Record) -> None:
        if self.file:
            self.file.write(json.dumps(asdict(record), sort_keys=True) + "\n")
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
            self.file = None


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")
