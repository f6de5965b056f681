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
from nsgen.checks import (
    CheckResult,
    budget,
    format_results,
    require_up,
    results_json,
    run_check_script,
    why_not_up,
)
from nsgen.errors import NsgenError, UsageError
from nsgen.fields import _topology_name as check_topology_name
from nsgen.fleet import Fleet, load
from nsgen.kinds.base import Firewall
from nsgen.load import load_topology
from nsgen.plan import FIREWALLS, STYLES, Plan, build_plan, recorded_firewall
from nsgen.render import Renderer, write_bundle
from nsgen.sandbox import DNS_SERVER

# The executor, lab, status, diagram and schema modules (and plumbum) load only for the
# commands that use them: `nsgen render` of a big topology should not pay for them.

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


StyleOption = Annotated[
    str,
    typer.Option(
        "--style",
        metavar="batch|tutorial",
        help="batch: few processes (fast, the default); tutorial: one command per "
        "line with ip netns exec, as the tutorial types them. Same network.",
    ),
]


def _style(style: str) -> str:
    if style not in STYLES:
        raise UsageError(f"--style {style}: expected batch or tutorial")
    return style


FirewallOption = Annotated[
    str | None,
    typer.Option(
        "--firewall",
        metavar="iptables|nftables",
        help="The firewall backend (default: the topology's firewall:, else iptables). "
        "nftables puts the rules in a table of the topology's own, inet nsgen_<name>.",
        show_default=False,
    ),
]


def _firewall(firewall: str | None) -> Firewall | None:
    if firewall is None:
        return None
    if firewall not in FIREWALLS:
        raise UsageError(f"--firewall {firewall}: expected iptables or nftables")
    return firewall


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


@app.command(
    epilog="Examples: nsgen render examples/seed.yaml -o out/   (then: sudo out/setup.sh)\n"
    "nsgen render examples/seed.yaml --install-to image/   (for a provisioning image)"
)
@reported
def render(
    file: TopologyFile,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", metavar="DIR", help="Directory to write the scripts into."),
    ] = None,
    systemd: Annotated[
        bool,
        typer.Option(
            "--systemd", help="Also write nsgen-<topology>.service running DIR's scripts."
        ),
    ] = False,
    install_to: Annotated[
        Path | None,
        typer.Option(
            "--install-to",
            metavar="PREFIX",
            help="Lay out PREFIX/usr/libexec/nsgen/<topology>/*.sh and "
            "PREFIX/etc/systemd/system/nsgen-<topology>.service for an image build.",
        ),
    ] = None,
    style: StyleOption = "batch",
    firewall: FirewallOption = None,
) -> None:
    """Write setup.sh, teardown.sh and check.sh: standalone bash (iproute2, and iptables or
    nftables), 0755.
    With hosts: DIR/<host>/ for each host (and preflight.sh) and DIR/ansible/ (inventory and
    playbooks)."""
    if out is None and install_to is None:
        raise UsageError("render: give -o DIR, --install-to PREFIX, or both")
    topology, fleet = load(file)
    if fleet is not None:
        if out is None or systemd or install_to is not None or firewall is not None:
            raise UsageError(
                "render: a topology with hosts: renders a bundle per host and the Ansible "
                "files: give -o DIR only (and its firewall: in the file)"
            )
        from nsgen.fleet.bundle import write_fleet

        for path in write_fleet(fleet, out, _style(style)):
            typer.echo(str(path))
        return
    plan = build_plan(topology, _style(style), _firewall(firewall))
    written = write_bundle(plan, out, systemd=systemd, install_to=install_to)
    for path in written:
        typer.echo(str(path))


@app.command(epilog="Example: sudo nsgen check examples/seed.yaml --json")
@reported
def check(
    file: TopologyFile,
    json_out: Annotated[
        bool, typer.Option("--json", help="Machine-readable JSON instead.")
    ] = False,
    anyway: Annotated[
        bool,
        typer.Option(
            "--anyway", help="Probe even if the topology is not up (or another version is)."
        ),
    ] = False,
) -> None:
    """Run the topology's declared checks (ping, tcp, dns; reach or blocked) against the live
    network, through the same check.sh that render writes. Exit 1 if any check fails, 3 if the
    topology is not up (nothing is probed unless --anyway)."""
    plan = build_plan(load_topology(file))
    if anyway and (reason := why_not_up(plan.topology, plan.digest)) is not None:
        typer.echo(f"{plan.topology} is not up ({reason}); probing anyway", err=True)
    results = run_checks(plan, anyway=anyway)
    typer.echo(results_json(results, plan.topology) if json_out else format_results(results))
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def run_checks(plan: Plan, anyway: bool = False) -> list[CheckResult]:
    """The plan's checks, run through its rendered check.sh; unless `anyway`, only if the
    topology is up (NotUpError otherwise, before any probe)."""
    if not plan.probes:
        raise UsageError(f"{plan.topology} declares no checks (add a checks: list)")
    if not anyway:
        require_up(plan.topology, plan.digest)
    script = Renderer().script("check.sh", plan, [])
    return run_check_script(script, plan.probes, budget(plan.probes))


LogOption = Annotated[
    Path | None,
    typer.Option(
        "--log",
        metavar="PATH",
        help="JSON Lines log of every step (default: /run/nsgen/<topology>/log.jsonl).",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="Print only failures.")]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", "-v", help="Also print each step's commands and output.")
]
LockTimeout = Annotated[
    float,
    typer.Option(
        "--lock-timeout",
        metavar="SECONDS",
        help="How long to wait for another nsgen run of the same topology.",
    ),
]


@app.command(
    epilog="Example: sudo nsgen up examples/seed.yaml   (preview: nsgen up --dry-run FILE)"
)
@reported
def up(
    file: TopologyFile,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; run nothing.")
    ] = False,
    replace: Annotated[
        bool, typer.Option("--replace", help="If it is up with other YAML: down, then up.")
    ] = False,
    log: LogOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    lock_timeout: LockTimeout = 30.0,
    style: StyleOption = "batch",
    firewall: FirewallOption = None,
    strict: Annotated[
        bool,
        typer.Option(
            "--strict",
            help="Refuse, instead of warning, when the host's firewall would drop what the "
            "topology routes (a forward-hook chain with policy drop).",
        ),
    ] = False,
) -> None:
    """Build the topology now: setup.sh's steps, run one by one with a log; on failure or
    Ctrl-C, every step begun is undone (exit 3; 4 if an undo failed; 130/143 on a signal).
    With hosts: runs ansible-playbook site.yml of its bundle, and exits with its status."""
    from nsgen.console import Console
    from nsgen.executor import Executor, Options

    topology, fleet = load(file)
    if fleet is not None:
        if firewall is not None:
            raise UsageError("up: a topology with hosts: takes its firewall: from the file")
        _fleet_playbook(fleet, "site.yml", _style(style), dry_run, replace=replace, log=log)
    executor = Executor(build_plan(topology, _style(style), _firewall(firewall)))
    if dry_run:
        typer.echo(executor.describe())
        return
    console = Console(quiet=quiet, verbose=verbose)
    summary = executor.up(Options(console, log, lock_timeout, strict=strict), replace=replace)
    typer.echo(summary, err=True)


@app.command(epilog="Examples: sudo nsgen down examples/seed.yaml   sudo nsgen down seed")
@reported
def down(
    target: Annotated[
        str, typer.Argument(metavar="FILE|NAME", help="Topology file, or the topology's name.")
    ],
    log: LogOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    lock_timeout: LockTimeout = 30.0,
    forget: Annotated[
        bool,
        typer.Option(
            "--forget",
            help="Clear the record even if some undo fails, listing what is left behind.",
        ),
    ] = False,
) -> None:
    """Remove what 'nsgen up' (or setup.sh) built, from its record in /run/nsgen/<name>/, so
    it works even if the file changed or is gone. Exit 0 if it is not up; 4 if some undo
    failed (fix the cause and run it again, or --forget). With hosts: runs ansible-playbook
    teardown.yml of its bundle."""
    from nsgen.console import Console
    from nsgen.executor import Executor, Options, down_from_record
    from nsgen.state import StateDir

    executor = None
    if Path(target).is_file():
        topology, fleet = load(target)
        if fleet is not None:
            _fleet_playbook(fleet, "teardown.yml", "batch", False, replace=False, log=log)
        recorded = StateDir(topology.name).digest()
        executor = Executor(build_plan(topology, firewall=recorded_firewall(topology, recorded)))
        name = executor.plan.topology
    else:
        name = _topology_name(target)
    console = Console(quiet=quiet, verbose=verbose)
    options = Options(console, log, lock_timeout)
    typer.echo(down_from_record(name, executor, options, forget=forget), err=True)


def _fleet_playbook(
    fleet: Fleet, playbook: str, style: str, dry_run: bool, replace: bool, log: Path | None
) -> None:
    """up/down of a topology with hosts: Ansible runs the fleet's playbook; exit with its
    status."""
    from nsgen.fleet.run import describe, run_playbook

    if replace or log is not None:
        raise UsageError(
            "--replace and --log are for one machine; with hosts:, run nsgen down FILE "
            "first, and ansible-playbook logs each host's steps"
        )
    if dry_run:
        typer.echo(describe(fleet, playbook, style))
        raise typer.Exit(0)
    status = run_playbook(
        fleet, playbook, lambda argv: typer.echo(f"nsgen: {argv}", err=True), style
    )
    raise typer.Exit(status)


@app.command(
    epilog="Examples: sudo nsgen lab examples/seed.yaml   (a shell inside)\n"
    "sudo nsgen lab examples/seed.yaml -- ip netns exec blue ping -c 2 192.0.2.10"
)
@reported
def lab(
    file: TopologyFile,
    command: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[-- CMD...]",
            help="Command to run inside (default: a shell).",
            show_default=False,
        ),
    ] = None,
    dns: Annotated[
        bool, typer.Option("--dns", help=f"Run a DNS server (dnsmasq) at {DNS_SERVER} upstream.")
    ] = False,
    run_checks_too: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Run the declared checks after up (no shell unless "
            "CMD is given); exit 1 if one fails.",
        ),
    ] = False,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
    firewall: FirewallOption = None,
) -> None:
    """Build the topology in a throwaway sandbox (private network and /run/netns, /etc/netns,
    /run/nsgen), with a simulated upstream behind every external interface; run CMD or a
    shell; tear down; leave nothing behind. Exits with CMD's status."""
    from nsgen.console import Console
    from nsgen.lab import run_lab

    topology = load_topology(file)
    result = run_lab(
        topology,
        command or None,
        Console(quiet=quiet, verbose=verbose),
        dns=dns,
        checks=run_checks if run_checks_too else None,
        firewall=_firewall(firewall),
    )
    if result.leftovers:
        raise typer.Exit(1)
    raise typer.Exit(result.exit_code)


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON instead.")]


@app.command(epilog="Example: sudo nsgen status examples/seed.yaml --json")
@reported
def status(file: TopologyFile, json_out: JsonOption = False) -> None:
    """Compare every declared object (namespace, link, address, route, rule, sysctl, DNS file)
    with the live kernel state: present, missing or different. Exit 0 if all match, 1 if not."""
    from nsgen.status import drifted, format_table, to_json, topology_status

    topology = load_topology(file)
    rows = topology_status(topology)
    typer.echo(to_json(rows, topology.name) if json_out else format_table(rows))
    if drifted(rows):
        raise typer.Exit(1)


@app.command(
    epilog="Examples: nsgen diagram examples/seed.yaml > seed.mmd   "
    "nsgen diagram examples/seed.yaml --format svg -o seed.svg"
)
@reported
def diagram(
    file: TopologyFile,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="mermaid (default), dot, svg or png.")
    ] = "mermaid",
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", metavar="FILE", help="Write here (svg/png: required)."),
    ] = None,
) -> None:
    """Draw the topology: namespaces, bridges, veth pairs with both ends' names and addresses,
    uplinks and NAT, published ports, Services and VXLAN tunnels. Mermaid renders on GitHub;
    svg and png need Graphviz's dot."""
    from nsgen.diagram import IMAGE_FORMATS, dot, mermaid, render_image

    topology = load_topology(file)
    if fmt in ("mermaid", "dot"):
        text = mermaid(topology) if fmt == "mermaid" else dot(topology)
        if out is None:
            typer.echo(text, nl=not text.endswith("\n"))
        else:
            out.write_text(text)
        return
    if fmt not in IMAGE_FORMATS:
        raise UsageError(f"--format {fmt}: expected mermaid, dot, svg or png")
    if out is None:
        raise UsageError(f"--format {fmt} writes a file: give -o FILE")
    render_image(dot(topology), fmt, out)
    typer.echo(str(out))


@app.command(epilog="Example: nsgen schema > topology.schema.json")
def schema() -> None:
    """Print the JSON Schema of the topology format (for editors: yaml-language-server)."""
    from nsgen.schema import schema_text

    typer.echo(schema_text(), nl=False)


def _topology_name(text: str) -> str:
    try:
        return check_topology_name(text)
    except ValueError as exc:
        raise UsageError(f"{text}: no such file, and not a topology name: {exc}") from None


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
