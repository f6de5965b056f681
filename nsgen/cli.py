"""The command line. The only layer that prints; it turns nsgen's errors into one-line messages
and exit codes. Each command is a few lines that call the library."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from nsgen import __version__
from nsgen.errors import NsgenError
from nsgen.load import load_topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts

P = ParamSpec("P")
R = TypeVar("R")

app = typer.Typer(
    name="nsgen",
    help="Build Linux network namespaces, veth pairs, bridges, routes and NAT from a YAML "
    "topology: render reviewable bash scripts, or run them with per-step logging and rollback.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def reported(command: Callable[P, R]) -> Callable[P, R]:
    """Print an NsgenError as its lines on stderr and exit with its code; no traceback."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return command(*args, **kwargs)
        except NsgenError as exc:
            for line in exc.lines():
                typer.echo(line, err=True)
            raise typer.Exit(exc.exit_code) from None

    return wrapper


TopologyFile = Annotated[
    Path, typer.Argument(metavar="FILE", help="Topology file (YAML).", show_default=False)
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"nsgen {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    pass


@app.command(epilog="Example: nsgen validate examples/seed.yaml")
@reported
def validate(file: TopologyFile) -> None:
    """Check a topology file and report every problem at once (exit 1 if any)."""
    topology = load_topology(file)
    plan = build_plan(topology)
    bridges = sum(len(spec.bridges) for _, spec in topology.spaces())
    veths = sum(len(spec.interfaces) for _, spec in topology.spaces())
    typer.echo(
        f"{file}: topology {topology.name!r} is valid: {len(topology.namespaces)} namespace(s), "
        f"{bridges} bridge(s), {veths} veth pair(s), {len(plan.steps)} steps"
    )


@app.command(epilog="Example: nsgen render examples/seed.yaml -o out/  (then: sudo out/setup.sh)")
@reported
def render(
    file: TopologyFile,
    out: Annotated[
        Path,
        typer.Option("-o", "--out", metavar="DIR", help="Directory to write the scripts into."),
    ],
) -> None:
    """Write DIR/setup.sh and DIR/teardown.sh: standalone bash (iproute2, iptables), mode 0755."""
    plan = build_plan(load_topology(file))
    for path in write_scripts(render_scripts(plan), out):
        typer.echo(str(path))


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
