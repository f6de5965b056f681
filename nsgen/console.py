"""What a run shows and keeps: the console's progress lines (stderr) and the JSON Lines log,
one `Record` per step or undo as it ran."""

from __future__ import annotations

import json
import os
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
    """Progress on stderr, results (check verdicts) on stdout. On a terminal: one live line
    (the counter and the current step) rewritten in place, so a topology of any size takes
    one line of the screen; failures and messages are printed above it. Elsewhere (a pipe, a
    file): one line per step, in step order. `quiet` prints only failures; `verbose` prints
    every step with its commands and output, on a terminal too."""

    def __init__(
        self,
        quiet: bool = False,
        verbose: bool = False,
        stream: IO[str] | None = None,
        out: IO[str] | None = None,
    ) -> None:
        self.stream = stream or sys.stderr
        self.out = out or sys.stdout
        self.quiet = quiet
        self.verbose = verbose
        self.tty = self.stream.isatty()
        self.live = self.tty and not quiet and not verbose
        self._showing = False  # the live line is on the screen
        self._next_do = 1  # the "do" step whose line comes next (lanes finish out of order)
        self._waiting: dict[int, Record] = {}
        self._finished: dict[str, int] = {}

    # ---- messages -------------------------------------------------------------------------
    def say(self, text: str) -> None:
        """A line that stays (above the live line, which the next step redraws)."""
        self._flush_waiting()
        self._line(text)

    def info(self, text: str) -> None:
        """A line that --quiet hides."""
        if not self.quiet:
            self.say(text)

    def result(self, text: str) -> None:
        """A result line, on stdout: what a script reading nsgen's output wants."""
        self._flush_waiting()
        self._clear()
        print(text, file=self.out, flush=True)

    def close(self) -> None:
        """Take the live line off the screen (call when the run is over, however it ended)."""
        self._flush_waiting()
        self._clear()

    # ---- steps ----------------------------------------------------------------------------
    def _label(self, phase: str, number: int, total: int) -> str:
        width = len(str(total))
        prefix = "undo " if phase == "undo" else ""
        return f"[{prefix}{number:>{width}}/{total}]"

    def begin(self, phase: str, number: int, total: int, title: str) -> None:
        if self.live:
            self._show(f"{self._label(phase, number, total)} {title} ...")

    def end(self, record: Record) -> None:
        ok = record.exit_code == 0
        if self.live and ok:
            # steps run side by side finish out of order: count them, so the counter only rises
            self._finished[record.phase] = self._finished.get(record.phase, 0) + 1
            number = self._finished["do"] if record.phase == "do" else record.step
            self._show(f"{self._label(record.phase, number, record.total)} {record.title}")
            return
        if record.phase != "do" or not ok:
            self._flush_waiting()
            self._print(record)
            return
        if record.step < self._next_do:  # a new run numbering from 1 again
            self._flush_waiting()
            self._next_do = record.step
        self._waiting[record.step] = record
        while self._next_do in self._waiting:
            self._print(self._waiting.pop(self._next_do))
            self._next_do += 1

    def _print(self, record: Record) -> None:
        ok = record.exit_code == 0
        if ok and self.quiet:
            return
        self._line(
            f"{self._label(record.phase, record.step, record.total)} {record.title}  "
            f"{'ok' if ok else 'FAILED'}  {record.duration_ms:.0f} ms"
        )
        if self.verbose or not ok:
            for command in record.commands.splitlines():
                self._line(f"    $ {command}")
            for text in (record.stdout, record.stderr):
                for out in text.rstrip("\n").splitlines():
                    self._line(f"    | {out}")

    def _flush_waiting(self) -> None:
        """Print the step lines held back for order (a gap is a step that never ended)."""
        waiting, self._waiting = self._waiting, {}
        for number in sorted(waiting):
            self._print(waiting[number])
            self._next_do = number + 1

    # ---- the screen -----------------------------------------------------------------------
    def _line(self, text: str) -> None:
        self._clear()
        print(text, file=self.stream, flush=True)

    def _show(self, text: str) -> None:
        # cut to the terminal's width: a line that wraps cannot be rewritten in place
        try:
            width = os.get_terminal_size(self.stream.fileno()).columns
        except (OSError, ValueError):
            width = 80
        self.stream.write("\r\033[K" + text[: max(width - 1, 10)])
        self.stream.flush()
        self._showing = True

    def _clear(self) -> None:
        if self._showing:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._showing = False


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
