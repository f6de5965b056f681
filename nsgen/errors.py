"""The one exception tree. Modules raise these; only `nsgen.cli` prints them and picks exit
codes."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SHOWN = 60
"""Longest value a message quotes whole; a longer one is cut there and ends in an ellipsis."""

LONGEST_LINE = 400
"""Longest message (after its values are cut): a guard for messages that list many values."""

MAX_LISTED = 100
"""Problems a TopologyError prints, earliest in the file first; a last line counts the rest."""

MAX_PLACED = 1000
"""Problems a TopologyError places in the file and orders (of each stage's list, the first);
any more are only counted. A file with thousands of problems has a few mistakes repeated."""

# A value quoted by repr() in a message: 'text' or "text", not an apostrophe inside a word.
_QUOTED = re.compile(r"""(?<!\w)(?:'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")(?!\w)""")
_UNBROKEN = re.compile(rf"\S{{{2 * SHOWN + 1},}}")


def shorten(text: str, limit: int = SHOWN) -> str:
    """`text` itself if it has at most `limit` characters, else its first `limit` and '…'."""
    return text if len(text) <= limit else text[:limit] + "…"


def _cut_quoted(match: re.Match[str]) -> str:
    quoted = match.group()
    if len(quoted) <= SHOWN + 2:
        return quoted
    body = quoted[1 : SHOWN + 1]
    # never end inside an escape such as \x00 or \u200b
    body = re.sub(r"\\(x[0-9a-f]{0,1}|u[0-9a-f]{0,3}|U[0-9a-f]{0,7}|)$", "", body)
    return f"{quoted[0]}{body}…{quoted[0]}"


def one_line(text: str) -> str:
    """`text` as one printable line: control characters escaped as Python writes them."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else repr(ch)[1:-1] for ch in text)


def readable(text: str) -> str:
    """`text` (a message or a field path) as one printable line of readable length: every
    quoted value and every run without spaces longer than SHOWN characters cut, and the whole
    cut at LONGEST_LINE."""
    text = one_line(text)
    if len(text) <= SHOWN:
        return text
    text = _QUOTED.sub(_cut_quoted, text)
    text = _UNBROKEN.sub(lambda m: shorten(m.group()), text)
    return shorten(text, LONGEST_LINE)


class NsgenError(Exception):
    """Base of every error nsgen reports to a user. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints (each one complete on its own)."""
        return [str(self)]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a topology file, at a field path like `namespaces.red.routes[0].via`.

    `line` and `column` (1-based; 0 when unknown) place it in the file; a problem found in the
    data leaves them 0 and the loader fills them in from the path (`TopologyError`). `at_key`
    says the problem is the key at `path` itself (unknown, given twice, a bad name), so it is
    placed at the key rather than at its value. Path and message are kept to one readable line.
    """

    path: str
    message: str
    at_key: bool = False
    line: int = 0
    column: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", readable(self.path))
        object.__setattr__(self, "message", readable(self.message))

    def where(self, source: str) -> str:
        """`FILE:LINE:COLUMN`, or `FILE` when the problem has no place in the file."""
        return f"{source}:{self.line}:{self.column}" if self.line else source

    def render(self, source: str) -> str:
        parts = [self.where(source), *([self.path] if self.path else []), self.message]
        return ": ".join(parts)


Locator = Callable[[str, bool], "tuple[int, int] | None"]
"""Where a field path is in the file (line, column), at its key (True) or its value."""


def placed(problems: Sequence[Problem], locate: Locator | None) -> list[Problem]:
    """The problems with their line and column filled in by `locate` where it knows the path,
    ordered by their place in the file; problems without a place keep their order, last."""
    out: list[Problem] = []
    for p in problems:
        if not p.line and locate is not None and p.path:
            mark = locate(p.path, p.at_key)
            if mark is not None:
                p = Problem(p.path, p.message, p.at_key, *mark)
        out.append(p)
    out.sort(key=lambda p: (0, p.line, p.column) if p.line else (1, 0, 0))
    return out


class TopologyError(NsgenError):
    """A topology file that cannot be used; carries every problem found, not only the first,
    in the order of the file when their places are known."""

    exit_code = 1

    def __init__(
        self,
        source: str,
        problems: Sequence[Problem],
        locate: Locator | None = None,
        unlisted: int = 0,
    ) -> None:
        self.source = source
        self.problems = placed(problems[:MAX_PLACED], locate)
        self.unlisted = unlisted + max(0, len(problems) - MAX_PLACED)
        """Problems found but not in `problems` (beyond MAX_PLACED)."""
        super().__init__(f"{source}: {len(self.problems) + self.unlisted} problem(s)")

    def lines(self) -> list[str]:
        shown = [p.render(self.source) for p in self.problems[:MAX_LISTED]]
        rest = len(self.problems) - len(shown) + self.unlisted
        if rest > 0:
            shown.append(f"{self.source}: and {rest:,} more problem(s) not listed")
        return shown


class UsageError(NsgenError):
    """The command line asks for something that cannot be done (a missing file, a bad option)."""

    exit_code = 2


class ToolMissingError(NsgenError):
    """An optional external program (e.g. Graphviz's dot) is needed and not installed."""

    exit_code = 2


class NotInSandboxError(NsgenError):
    """Fail-closed guard: code that changes network state found it is not inside its sandbox."""

    exit_code = 99


class PreflightError(NsgenError):
    """The host is not in a state the topology can be applied to; nothing was changed."""

    exit_code = 1

    def __init__(self, reasons: list[str]) -> None:
        super().__init__("; ".join(reasons))
        self.reasons = reasons

    def lines(self) -> list[str]:
        return ["preflight refused, nothing was changed:", *(f"  {r}" for r in self.reasons)]
