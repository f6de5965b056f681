"""The command line. The only layer that prints; it turns nsgen's errors into one-line messages
and exit codes. Each command is a few lines that call the library."""

from __future__ import annotations

import functools
import gc
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Annotated, ParamSpec, TypeVar

import typer

from nsgen import __version__, completion
from nsgen.checks import (
    CheckResult,
    budget,
    format_results,
    require_up,
    results_json,
    run_check_script,
    why_not_up,
)
from nsgen.clihelp import LabGroup, LabOneShot, NsgenGroup, NsgenTyper
from nsgen.errors import NsgenError, UsageError
from nsgen.fields import _topology_name as check_topology_name
from nsgen.fleet import Fleet, load
from nsgen.kinds.base import Firewall
from nsgen.load import STDIN, load_topology, source_name
from nsgen.model import Topology
from nsgen.plan import FIREWALLS, STYLES, Plan, build_plan, recorded_firewall
from nsgen.render import Renderer, render_scripts, write_bundle
from nsgen.report import validation
from nsgen.sandbox import DNS_SERVER

# The executor, lab, status, diagram and schema modules (and plumbum) load only for the
# commands that use them: `nsgen render` of a big topology should not pay for them.

P = ParamSpec("P")
R = TypeVar("R")

CONTEXT = {"help_option_names": ["-h", "--help"]}

app = NsgenTyper(
    name="nsgen",
    cls=NsgenGroup,
    help="Build Linux network namespaces, veth pairs, bridges, routes and NAT from a YAML "
    "topology: render reviewable bash scripts, or run them with per-step logging and rollback.",
    epilog="Examples:\n"
    "  nsgen validate examples/seed.yaml\n"
    "  sudo nsgen lab examples/seed.yaml --check\n"
    "  nsgen COMMAND --help",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings=CONTEXT,
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
    Path,
    typer.Argument(
        metavar="FILE",
        help="Topology file (YAML); - reads standard input.",
        show_default=False,
        autocompletion=completion.topology_files,
    ),
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


@app.command(
    short_help="Check a topology file; report every problem at once.",
    epilog="Example:\n  nsgen validate examples/seed.yaml",
)
@reported
def validate(
    file: TopologyFile,
    json_out: Annotated[
        bool,
        typer.Option("--json", help="Problems, or the plan, as JSON on stdout (same exit status)."),
    ] = False,
) -> None:
    """Check a topology file and report every problem at once, each at its line and column
    (exit 1 if any)."""
    if json_out:
        _print_json(*validation(file))
    topology = load_topology(file)
    plan = build_plan(topology)
    bridges = sum(len(spec.bridges) for _, spec in topology.spaces())
    veths = sum(len(spec.interfaces) for _, spec in topology.spaces())
    typer.echo(
        f"{source_name(file)}: topology {topology.name!r} is valid: "
        f"{len(topology.namespaces)} namespace(s), "
        f"{bridges} bridge(s), {veths} veth pair(s), {len(plan.steps)} steps"
    )


@app.command(
    short_help="Write setup.sh, teardown.sh and check.sh (or print setup.sh).",
    epilog="Examples:\n"
    "  nsgen render examples/seed.yaml -o out/              then: sudo out/setup.sh\n"
    "  nsgen render examples/seed.yaml | less               setup.sh to read\n"
    "  nsgen render examples/seed.yaml --install-to image/  for a provisioning image",
)
@reported
def render(
    file: TopologyFile,
    out: Annotated[
        Path | None,
        typer.Option(
            "-o",
            "--out",
            metavar="DIR",
            help="Directory to write the scripts into (without it or --install-to: setup.sh "
            "on stdout).",
        ),
    ] = None,
    systemd: Annotated[
        bool,
        typer.Option(
            "--systemd", help="Also write DIR/nsgen-<topology>.service running DIR's scripts."
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
    nftables), 0755. Without -o or --install-to, print setup.sh. With hosts: DIR/<host>/ for
    each host (and preflight.sh) and DIR/ansible/ (inventory and playbooks)."""
    if systemd and out is None:
        raise UsageError("--systemd writes DIR/nsgen-<topology>.service: give -o DIR")
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
    if out is None and install_to is None:
        typer.echo(render_scripts(plan)["setup.sh"], nl=False)
        return
    written = write_bundle(plan, out, systemd=systemd, install_to=install_to)
    for path in written:
        typer.echo(str(path))


@app.command(
    short_help="Run the declared checks against the live network.",
    epilog="Example:\n  sudo nsgen check examples/seed.yaml --json",
)
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
    from nsgen.state import StateDir

    topology = load_topology(file)
    # the backend it was set up with (`up --firewall` may have overridden the file's)
    recorded = StateDir(topology.name).digest()
    plan = build_plan(topology, firewall=recorded_firewall(topology, recorded))
    if anyway and (reason := why_not_up(plan.topology, plan.digest)) is not None:
        typer.echo(f"{plan.topology} is not up ({reason}); probing anyway", err=True)
    results = run_checks(plan, anyway=anyway, topology=topology)
    typer.echo(results_json(results, plan.topology) if json_out else format_results(results))
    if not all(r.passed for r in results):
        raise typer.Exit(1)


def run_checks(
    plan: Plan, anyway: bool = False, topology: Topology | None = None
) -> list[CheckResult]:
    """The plan's checks, run through its rendered check.sh; unless `anyway`, only if the
    topology is up (NotUpError otherwise, before any probe). With the topology, each failed
    check carries the verdict of its computed path (nsgen explain) as `why`."""
    if not plan.probes:
        raise UsageError(f"{plan.topology} declares no checks (add a checks: list)")
    if not anyway:
        require_up(plan.topology, plan.digest)
    script = Renderer().script("check.sh", plan, [])
    results = run_check_script(script, plan.probes, budget(plan.probes))
    if topology is None:
        return results
    from nsgen.explain import check_reason

    return [
        r if r.passed else replace(r, why=check_reason(topology, r.probe.number)) for r in results
    ]


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
    short_help="Build the topology now, step by step, rolling back on failure.",
    epilog="Examples:\n"
    "  sudo nsgen up examples/seed.yaml\n"
    "  nsgen up --dry-run examples/seed.yaml   the plan, nothing run",
)
@reported
def up(
    file: TopologyFile,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan; run nothing.")
    ] = False,
    json_out: Annotated[
        bool, typer.Option("--json", help="With --dry-run: the plan (or the problems) as JSON.")
    ] = False,
    replace: Annotated[
        bool,
        typer.Option(
            "--replace",
            help="If it is up with other YAML, or drifted from it: down, then up.",
        ),
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

    if json_out:
        if not dry_run:
            raise UsageError("up: --json goes with --dry-run")
        _print_json(*validation(file, _style(style)))
    topology, fleet = load(file)
    if fleet is not None:
        if firewall is not None:
            raise UsageError("up: a topology with hosts: takes its firewall: from the file")
        _fleet_playbook(fleet, "site.yml", _style(style), dry_run, replace=replace, log=log)
    executor = Executor(build_plan(topology, _style(style), _firewall(firewall)), topology=topology)
    if dry_run:
        typer.echo(executor.describe())
        return
    console = Console(quiet=quiet, verbose=verbose)
    try:
        console.info(
            executor.up(Options(console, log, lock_timeout, strict=strict), replace=replace)
        )
    finally:
        console.close()


@app.command(
    short_help="Remove what up or setup.sh built, from its record.",
    epilog="Examples:\n  sudo nsgen down examples/seed.yaml\n  sudo nsgen down seed",
)
@reported
def down(
    target: Annotated[
        str,
        typer.Argument(
            metavar="FILE|NAME",
            help="Topology file, or the topology's name.",
            autocompletion=completion.file_or_topology,
        ),
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
    if target == STDIN or Path(target).is_file():
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
    try:
        console.info(down_from_record(name, executor, options, forget=forget))
    finally:
        console.close()


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


lab_app = NsgenTyper(
    cls=LabGroup,
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings=CONTEXT,
    help="Build the topology in a sandbox (private network and /run/netns, /etc/netns, "
    "/run/nsgen), with a simulated upstream behind every external interface. "
    "`nsgen lab FILE` runs CMD or a shell in it, tears down and leaves nothing behind (exit: "
    "CMD's status); `nsgen lab up FILE` leaves it up, to enter with `lab exec`/`lab shell` "
    "from any terminal and remove with `lab down`.",
    short_help="Build it in a throwaway sandbox, once or kept up (lab up, exec).",
    epilog="Examples:\n"
    "  sudo nsgen lab examples/seed.yaml             a shell inside; exit tears down\n"
    "  sudo nsgen lab examples/seed.yaml --check\n"
    "  sudo nsgen lab examples/seed.yaml -- ip netns exec blue ping -c 2 192.0.2.10\n"
    "  sudo nsgen lab up examples/seed.yaml          prints the lab's name: seed\n"
    "  sudo nsgen lab exec seed red -- ping -c 1 192.168.15.1\n"
    "  sudo nsgen lab shell seed blue\n"
    "  sudo nsgen lab down seed",
)
app.add_typer(lab_app, name="lab")

DnsOption = Annotated[
    bool, typer.Option("--dns", help=f"Run a DNS server (dnsmasq) at {DNS_SERVER} upstream.")
]
LabName = Annotated[
    str,
    typer.Argument(
        metavar="NAME",
        help="The lab's name (nsgen lab list).",
        show_default=False,
        autocompletion=completion.lab_names,
    ),
]


@lab_app.command(
    LabGroup.ONE_SHOT,
    cls=LabOneShot,
    hidden=True,
    help="Build the topology in a throwaway sandbox, run CMD or a shell, tear down, leave "
    "nothing behind. Exits with CMD's status.",
    epilog="Examples:\n"
    "  sudo nsgen lab examples/seed.yaml --check\n"
    "  sudo nsgen lab examples/seed.yaml -- ip netns exec blue ping -c 2 192.0.2.10",
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
    dns: DnsOption = False,
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
    from nsgen.console import Console
    from nsgen.lab import run_lab

    topology = load_topology(file)
    if run_checks_too and not topology.checks:
        raise UsageError(f"{file}: --check: the topology declares no checks (add a checks: list)")
    console = Console(quiet=quiet, verbose=verbose)
    try:
        result = run_lab(
            topology,
            command or None,
            console,
            dns=dns,
            checks=(lambda plan: run_checks(plan, topology=topology)) if run_checks_too else None,
            firewall=_firewall(firewall),
        )
    finally:
        console.close()
    if result.leftovers:
        raise typer.Exit(1)
    raise typer.Exit(result.exit_code)


@lab_app.command(
    "up",
    short_help="Build the topology in a sandbox that stays up; print its name.",
    epilog="Examples:\n"
    "  sudo nsgen lab up examples/seed.yaml\n"
    "  sudo nsgen lab up examples/seed.yaml --name seed2 --dns\n"
    "  sudo nsgen lab up examples/docker-bridge.yaml --firewall nftables",
)
@reported
def lab_up(
    file: TopologyFile,
    name: Annotated[
        str | None,
        typer.Option(
            "--name", metavar="NAME", help="The lab's name (default: the topology's name)."
        ),
    ] = None,
    dns: DnsOption = False,
    firewall: FirewallOption = None,
    quiet: QuietOption = False,
    verbose: VerboseOption = False,
) -> None:
    """Build the topology in a sandbox that stays up, held by a small keeper process; print
    the lab's name on stdout. Enter it with lab exec or lab shell; remove it with lab down."""
    from nsgen.console import Console
    from nsgen.lab import lab_up as build_lab

    topology = load_topology(file)
    console = Console(quiet=quiet, verbose=verbose)
    try:
        record = build_lab(
            topology, file, console, name=name, dns=dns, firewall=_firewall(firewall)
        )
    finally:
        console.close()
    typer.echo(record.name)


@lab_app.command(
    "list",
    short_help="List the labs: name, topology file, since, state.",
    epilog="Example:\n  sudo nsgen lab list",
)
@reported
def lab_list() -> None:
    """List the labs that lab up left running: name, topology file, since, state (up,
    starting, or gone: its keeper ended; a gone lab is listed once, then forgotten)."""
    from nsgen.lab import lab_list as rows_of_labs

    rows = rows_of_labs()
    if not rows:
        typer.echo("no labs", err=True)
        return
    table = [("NAME", "FILE", "SINCE", "STATE")]
    table += [(r.name, r.file, r.since, r.state) for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(3)]
    for row in table:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        typer.echo("  ".join([*cells, row[3]]))


LabNode = Annotated[
    str,
    typer.Argument(
        metavar="NODE",
        help="A namespace, container, pod or node of the lab, host (its root namespace) "
        "or upstream.",
        show_default=False,
        autocompletion=completion.lab_nodes,
    ),
]


@lab_app.command(
    "exec",
    short_help="Run a command in a node of a lab that is up.",
    context_settings={**CONTEXT, "allow_interspersed_args": False},
    epilog="Examples:\n"
    "  sudo nsgen lab exec seed red -- ping -c 1 192.168.15.1\n"
    "  sudo nsgen lab exec seed upstream -- ip -br addr",
)
@reported
def lab_exec(
    name: LabName,
    node: LabNode,
    command: Annotated[
        list[str],
        typer.Argument(metavar="-- CMD...", help="The command to run.", show_default=False),
    ],
) -> None:
    """Run a command in a node of a lab that is up, from any terminal; exit with its
    status."""
    from nsgen.lab import lab_exec as exec_in_lab

    if command[:1] == ["--"]:  # the parser keeps it once the arguments stopped being options
        command = command[1:]
    if not command:
        raise UsageError("lab exec: give the command to run after --")
    raise typer.Exit(exec_in_lab(name, node, command))


@lab_app.command(
    "shell",
    short_help="Open a shell in a node of a lab that is up.",
    epilog="Examples:\n"
    "  sudo nsgen lab shell seed red\n"
    "  echo 'ip -br addr' | sudo nsgen lab shell seed blue",
)
@reported
def lab_shell(
    name: LabName,
    node: Annotated[
        str,
        typer.Argument(
            metavar="NODE",
            help="A namespace, container, pod or node of the lab, host (its root namespace, "
            "the default) or upstream.",
            autocompletion=completion.lab_nodes,
        ),
    ] = "host",
) -> None:
    """Open a shell in a node of a lab that is up (commands from stdin when it is not a
    terminal), with nsgen on PATH; exit with the shell's status."""
    from nsgen.lab import lab_exec as exec_in_lab

    raise typer.Exit(exec_in_lab(name, node, None))


@lab_app.command(
    "down",
    short_help="Tear a lab down, checked against the state before up.",
    epilog="Example:\n  sudo nsgen lab down seed",
)
@reported
def lab_down(name: LabName, quiet: QuietOption = False, verbose: VerboseOption = False) -> None:
    """Tear a lab down: end what runs in it, undo the topology, compare the state with the
    snapshot taken before up (exit 1, listing the differences, if any differ), then end its
    keeper and with it the sandbox."""
    from nsgen.console import Console
    from nsgen.lab import lab_down as tear_down_lab

    console = Console(quiet=quiet, verbose=verbose)
    try:
        leftovers = tear_down_lab(name, console)
    finally:
        console.close()
    if leftovers:
        raise typer.Exit(1)


JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON instead.")]


@app.command(
    short_help="Compare every declared object with the live state.",
    epilog="Example:\n  sudo nsgen status examples/seed.yaml --json",
)
@reported
def status(file: TopologyFile, json_out: JsonOption = False) -> None:
    """Compare every declared object (namespace, link, address, route, rule, sysctl, DNS file)
    with the live kernel state: present, missing or different (the topology's own commands:
    unobserved, not drift). Exit 0 if all match, 1 if not."""
    from nsgen.status import drifted, format_table, to_json, topology_status

    topology = load_topology(file)
    rows = topology_status(topology)
    typer.echo(to_json(rows, topology.name) if json_out else format_table(rows))
    if drifted(rows):
        raise typer.Exit(1)


DIAGRAM_FORMATS = ("mermaid", "dot", "svg", "png")
DIAGRAM_SUFFIXES = {
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".dot": "dot",
    ".gv": "dot",
    ".svg": "svg",
    ".png": "png",
}


def diagram_format(fmt: str | None, out: Path | None) -> str:
    """--format if given, else the format -o's extension names, else mermaid (on stdout)."""
    if fmt is not None:
        if fmt not in DIAGRAM_FORMATS:
            raise UsageError(f"--format {fmt}: expected mermaid, dot, svg or png")
        return fmt
    if out is None:
        return "mermaid"
    if out.suffix.lower() in DIAGRAM_SUFFIXES:
        return DIAGRAM_SUFFIXES[out.suffix.lower()]
    raise UsageError(
        f"-o {out}: cannot tell the format from the extension (.mmd, .dot, .svg or .png); "
        "give --format"
    )


@app.command(
    short_help="Draw the topology: Mermaid, dot, svg or png.",
    epilog="Examples:\n"
    "  nsgen diagram examples/seed.yaml                 Mermaid on stdout\n"
    "  nsgen diagram examples/seed.yaml -o seed.svg     the format from the extension\n"
    "  nsgen diagram examples/seed.yaml -f dot -o seed.txt",
)
@reported
def diagram(
    file: TopologyFile,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            "-f",
            metavar="FORMAT",
            help="mermaid, dot, svg or png (default: from -o's extension .mmd, .dot, .svg, "
            ".png; mermaid without -o).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("-o", "--out", metavar="FILE", help="Write here (svg/png: required)."),
    ] = None,
) -> None:
    """Draw the topology: namespaces, bridges, veth pairs with both ends' names and addresses,
    uplinks and NAT, published ports, Services and VXLAN tunnels. Mermaid renders on GitHub;
    svg and png need Graphviz's dot."""
    from nsgen.diagram import dot, mermaid, render_image

    chosen = diagram_format(fmt, out)
    topology = load_topology(file)
    if chosen in ("mermaid", "dot"):
        text = mermaid(topology) if chosen == "mermaid" else dot(topology)
        if out is None:
            typer.echo(text, nl=not text.endswith("\n"))
        else:
            out.write_text(text)
        return
    if out is None:
        raise UsageError(f"--format {chosen} writes a file: give -o FILE")
    render_image(dot(topology), chosen, out)
    typer.echo(str(out))


@app.command(
    short_help="Why a packet goes where it goes, hop by hop (and its reply).",
    epilog="Examples:\n"
    "  nsgen explain examples/seed.yaml blue 192.0.2.10\n"
    "  nsgen explain examples/docker-bridge.yaml upstream host --port 8080 -f mermaid\n"
    "  sudo nsgen explain --live examples/seed.yaml red blue   (seed is up)",
)
@reported
def explain(
    file: TopologyFile,
    source: Annotated[
        str,
        typer.Argument(
            metavar="FROM",
            help="A namespace (container, pod, node), host, upstream (the lab's), or an "
            "address one holds.",
            show_default=False,
        ),
    ],
    target: Annotated[
        str,
        typer.Argument(
            metavar="TO",
            help="An address, a namespace (its first address), host, upstream, or a name in a "
            "hosts file (a Service).",
            show_default=False,
        ),
    ],
    port: Annotated[
        int | None,
        typer.Option("--port", min=1, max=65535, metavar="P", help="Destination port (tcp)."),
    ] = None,
    proto: Annotated[
        str | None,
        typer.Option(
            "--proto", metavar="tcp|udp|icmp", help="Default: tcp with --port, else icmp."
        ),
    ] = None,
    json_out: JsonOption = False,
    fmt: Annotated[
        str, typer.Option("--format", "-f", metavar="text|json|mermaid", help="Output format.")
    ] = "text",
    live: Annotated[
        bool,
        typer.Option(
            "--live",
            help="Also check the path against the running kernel, hop by hop, with one "
            "probe packet (root; the topology must be up, with the iptables backend). Exit 1 "
            "where they differ.",
        ),
    ] = False,
) -> None:
    """Why a packet goes where it goes: its path from FROM to TO and back, hop by hop, computed
    from the topology alone (routes, bridges, firewall rules, NAT, conntrack), with the step
    of setup.sh behind each decision and a verdict in plain words. No root needed."""
    from nsgen.explain import explain as compute
    from nsgen.explain.output import as_json, mermaid, text

    if fmt not in ("text", "json", "mermaid"):
        raise UsageError(f"--format {fmt}: expected text, json or mermaid")
    fmt = "json" if json_out else fmt
    topology = load_topology(file)
    if live:
        from nsgen.explain.live import explain_live

        report = explain_live(topology, source, target, proto, port)
        typer.echo(report.as_json() if fmt == "json" else report.text().rstrip("\n"))
        if not report.same:
            raise typer.Exit(1)
        return
    explanation = compute(topology, source, target, proto, port)
    shown = {"text": text, "json": as_json, "mermaid": mermaid}[fmt](explanation)
    typer.echo(shown, nl=not shown.endswith("\n"))


@app.command(
    short_help="Print the JSON Schema of the topology format.",
    epilog="Example:\n  nsgen schema > topology.schema.json",
)
def schema() -> None:
    """Print the JSON Schema of the topology format (for editors: yaml-language-server)."""
    from nsgen.schema import schema_text

    typer.echo(schema_text(), nl=False)


def _print_json(text: str, exit_code: int) -> None:
    typer.echo(text)
    raise typer.Exit(exit_code)


def _topology_name(text: str) -> str:
    try:
        return check_topology_name(text)
    except ValueError as exc:
        raise UsageError(f"{text}: no such file, and not a topology name: {exc}") from None


def main() -> None:
    """Console-script entry point (also `python -m nsgen`: the same name in usage lines and
    the same completion variable, _NSGEN_COMPLETE)."""
    # Everything imported so far (modules, the models' schemas) lives until exit: keep it out
    # of the garbage collector's passes, which otherwise walk it again and again while a
    # large topology is loaded, planned and rendered (a fifth of the time at 1,000 namespaces).
    gc.freeze()
    sys.exit(app(prog_name="nsgen"))
