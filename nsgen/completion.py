"""What shell completion offers (`nsgen --install-completion`): topology files, the names of
topologies that are up, and detached labs with their nodes. Each function takes the word being
completed and returns the candidates that start with it; none of them may fail or print.
They import what they read only when called: every command imports this module."""

from __future__ import annotations

import os

import typer

TOPOLOGY_SUFFIXES = (".yaml", ".yml")


def topology_files(incomplete: str) -> list[str]:
    """Files named *.yaml or *.yml, and directories (to descend into), under the directory the
    word names so far."""
    folder, slash, prefix = incomplete.rpartition("/")
    shown = folder + slash
    try:
        entries = sorted(os.scandir(shown or "."), key=lambda e: e.name)
    except OSError:
        return []
    found = []
    for entry in entries:
        if not entry.name.startswith(prefix) or (
            entry.name.startswith(".") and not prefix.startswith(".")
        ):
            continue
        try:
            if entry.is_dir():
                found.append(f"{shown}{entry.name}/")
            elif entry.name.endswith(TOPOLOGY_SUFFIXES):
                found.append(f"{shown}{entry.name}")
        except OSError:
            continue
    return found


def topologies_up(incomplete: str) -> list[str]:
    """Names of the topologies with a record in /run/nsgen (a directory with a digest)."""
    from nsgen.state import STATE_ROOT

    try:
        return sorted(
            path.parent.name
            for path in STATE_ROOT.glob("*/digest")
            if path.parent.name.startswith(incomplete)
        )
    except OSError:
        return []


def file_or_topology(incomplete: str) -> list[str]:
    """`nsgen down`'s FILE|NAME."""
    return topologies_up(incomplete) + topology_files(incomplete)


def lab_names(incomplete: str) -> list[str]:
    from nsgen import labs

    try:
        return [name for name in labs.names() if name.startswith(incomplete)]
    except OSError:
        return []


def lab_nodes(ctx: typer.Context, incomplete: str) -> list[str]:
    """The nodes of the lab named earlier on the command line."""
    from nsgen import labs

    name = ctx.params.get("name")
    record = labs.read(name) if isinstance(name, str) and name else None
    if record is None:
        return []
    return [node for node in record.nodes if node.startswith(incomplete)]
