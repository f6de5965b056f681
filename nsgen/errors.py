"""The one exception tree. Modules raise these; only `nsgen.cli` prints them and picks exit
codes."""

from __future__ import annotations

from dataclasses import dataclass


class NsgenError(Exception):
    """Base of every error nsgen reports to a user. `exit_code` is what the CLI exits with."""

    exit_code = 1

    def lines(self) -> list[str]:
        """The message as the lines the CLI prints (each one complete on its own)."""
        return [str(self)]


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong with a topology file, at a field path like `namespaces.red.routes[0].via`."""

    path: str
    message: str

    def render(self, source: str) -> str:
        where = f"{source}: {self.path}" if self.path else source
        return f"{where}: {self.message}"


class TopologyError(NsgenError):
    """A topology file that cannot be used; carries every problem found, not only the first."""

    exit_code = 1

    def __init__(self, source: str, problems: list[Problem]) -> None:
        super().__init__(f"{source}: {len(problems)} problem(s)")
        self.source = source
        self.problems = problems

    def lines(self) -> list[str]:
        return [p.render(self.source) for p in self.problems]


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
