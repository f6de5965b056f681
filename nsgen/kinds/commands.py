"""The topology's own commands (`exec:`): an escape hatch, as containerlab's `exec`, for what
the format has no key for. Each named namespace's commands run inside it, in order, after
everything else is set up (its DNS files included, so names resolve as they will for its
programs), as one step of its own per namespace.

nsgen does not know what a command changes, so it cannot undo it, check it or snapshot it:
- undo: none of its own. What the commands change in the namespace's network goes away with
  the namespace; anything else (a file written, a process left running) is the topology's
  author's to clean up.
- `nsgen status`: one row per command, "unobserved", which is not drift.
- the snapshot reads nothing for this kind: what the commands change shows up (or not) in
  what the other kinds read.

Commands run in named namespaces only: in the root namespace they would change the
machine's own network, which no teardown could put back."""

from __future__ import annotations

import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import PlainValidator, WithJsonSchema

from nsgen.errors import Problem
from nsgen.fields import HOST
from nsgen.kinds.base import Args, Kind, Owner, PlanContext, Planned, Step

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Topology
    from nsgen.status import Observer

TEMPLATE = "kinds/commands.j2"

UNOBSERVED_DETAIL = "run once at setup; what it changed is not known to nsgen"
"""The detail of an exec row in `nsgen status`."""


def _command(value: object) -> str | list[str]:
    """A command line, or a program and its arguments; whole numbers among the arguments
    (YAML reads `[sleep, 1]` so) are taken as their digits."""
    if isinstance(value, str):
        if not value.strip():
            raise ValueError("a command must not be empty")
        if not value.isprintable():
            raise ValueError(f"{value!r}: a command line is one line of printable text")
        return value
    if not isinstance(value, list):
        raise ValueError(f"expected a command line or a list of words, got {value!r}")
    if not value:
        raise ValueError("a command must not be empty: give a program and its arguments")
    words = []
    for i, word in enumerate(value):
        if isinstance(word, int) and not isinstance(word, bool):
            word = str(word)
        if not isinstance(word, str):
            raise ValueError(f"word {i} is {word!r}: write it in quotes")
        if not word.isprintable():
            raise ValueError(f"{word!r}: an argument is printable text, without line breaks")
        words.append(word)
    if not words[0]:
        raise ValueError("the program (the list's first word) must not be empty")
    return words


Command = Annotated[
    str | list[str],
    PlainValidator(_command),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {
                    "type": "array",
                    "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    "minItems": 1,
                },
            ]
        }
    ),
]
"""A command: a string is a shell command line (`sh -c`, so pipes and redirections work); a
list is a program and its arguments, run as they are."""


def argv(command: str | list[str]) -> tuple[str, ...]:
    """What runs for a command: a list as it is, a string through `sh -c`."""
    return ("sh", "-c", command) if isinstance(command, str) else tuple(command)


@dataclass(frozen=True)
class ExecArgs(Args):
    commands: tuple[tuple[str, ...], ...]
    """Each command's argv, in order."""


class ExecKind(Kind):
    """One step per named namespace with commands, in the "own" group: steps of their own,
    after every batched step, in the registry's order, so after the settings and the DNS
    files (registered just before). A group of its own would order nothing differently."""

    name = "exec"
    template = TEMPLATE
    lane = "exec"
    group = "own"
    enters = False
    """Not in the namespace's batched step: that runs before the root namespace's routes,
    firewall, settings and files. This step comes after all of them, and enters the
    namespace itself (`ip netns exec`) for each command."""
    summary = "the topology's commands"
    rows = ("exec",)
    observable = False

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.namespaces.items():
            if not spec.exec:
                continue
            count = len(spec.exec)
            yield Step(
                "exec",
                f"run {count} command{'s' if count != 1 else ''} of the topology in {netns}",
                f"The topology's own commands (exec:), run inside {netns} in order, after "
                "everything else is set up. nsgen does not undo them: what they change in "
                f"{netns}'s network goes away with the namespace; anything else they do (a "
                "file written, a process left running) is the topology author's to undo.",
                ExecArgs(netns, tuple(argv(command) for command in spec.exec)),
                Owner("namespace", netns),
            )

    def validate(self, topology: Topology) -> list[Problem]:
        if not topology.host.exec:
            return []
        return [
            Problem(
                f"{HOST}.exec",
                "commands run only in named namespaces: in the root namespace they would "
                "change the machine's own network, which no teardown could put back",
            )
        ]

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, ExecArgs)
        for command in a.commands:
            status.check(
                "exec", a.netns, shlex.join(command), lambda: ("unobserved", UNOBSERVED_DETAIL)
            )

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {}  # nothing to read: see `observable` and the module's docstring
