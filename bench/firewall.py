"""`make bench`, the firewall-heavy cases: each firewall backend, iptables and nftables, in the
same run, inside a private nsgen sandbox.

    python -m bench.firewall [--services 1000] [--endpoints 2] [--sizes 100,1000] [--runs 3]
                             [--out bench/results]

- **services**: kube-proxy's rules for S Services with E endpoints each (one node's firewall
  of a Kubernetes-style cluster: KUBE-SERVICES, a KUBE-SVC and E KUBE-SEP chains per Service,
  the NodePorts), installed in the root namespace. Timed: the rendered firewall step alone
  (one `iptables-restore --noflush`, or one `nft -f -`) and its undo (iptables: every rule
  with the topology's comment and every own chain, in one `iptables-restore`; nftables:
  `nft delete table`), then the whole setup.sh and teardown.sh (preflight included).
- **cluster**: the same Services in a two-node cluster built end to end by setup.sh, each
  node's firewall inside its namespace; teardown.sh removes it.
- **namespaces**: the N-namespace benchmark network (bench.topology) at each size.

Every setup is checked (the rules are there: S KUBE-SVC chains; the namespaces reach each
other), every teardown against a snapshot taken before (nothing left: no rule, chain, table,
namespace or link). Times are medians of R runs, wall-clock, with the kernel quiet before
each; the ratio nftables / iptables is of the same run.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # `python bench/firewall.py`
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.run import RESULTS, _in_sandbox, machine, nsgen_revision, say, settle, sh, timed
from bench.topology import ns_address, ns_name
from bench.topology import topology as namespaces_topology
from nsgen.kinds.base import Firewall
from nsgen.load import topology_from_data
from nsgen.model import Topology
from nsgen.plan import FIREWALLS, Plan, build_plan
from nsgen.render import Renderer, render_scripts, write_scripts
from nsgen.sandbox import build_upstream, enter_sandbox
from nsgen.snapshot import diff_snapshots, take_snapshot

TIMEOUT = 600.0


def cluster(services: int, endpoints: int) -> dict[str, Any]:
    """A two-node cluster (host-gw) whose S Services each have E endpoints (pods spread over
    both nodes, each pod an endpoint of every Service)."""
    pods = [f"ep{i}" for i in range(1, endpoints + 1)]
    nodes = {"node1": {"pods": pods[::2]}, "node2": {"pods": pods[1::2]}}
    return {
        "name": "bench-fw",
        "cluster": {
            "mode": "host-gw",
            "pod_hosts": False,
            "nodes": nodes,
            "services": {
                f"svc{i}": {"port": 80, "target_port": 8080, "endpoints": pods}
                for i in range(1, services + 1)
            },
        },
    }


def services_in_root(services: int, endpoints: int) -> dict[str, Any]:
    """One node's firewall of that cluster, alone, in the root namespace."""
    expanded = topology_from_data(cluster(services, endpoints), "cluster.yaml")
    node = expanded.namespaces["node1"].iptables
    return {"name": "bench-fw", "host": {"iptables": node.model_dump(mode="json", by_alias=True)}}


@dataclass
class Case:
    name: str
    """What is built, e.g. 'services S=1000 E=2'."""
    topology: Topology
    check: Callable[[Firewall], str]
    """'' if the setup holds what it should."""


@dataclass
class Times:
    setup: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    apply: list[float] = field(default_factory=list)
    remove: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def median(self, what: str) -> float | None:
        values: list[float] = getattr(self, what)
        return statistics.median(values) if values else None


def _svc_chains(expected: int) -> Callable[[Firewall], str]:
    def check(firewall: Firewall) -> str:
        if firewall == "nftables":
            text = sh("nft", "list", "table", "inet", "nsgen_bench-fw").stdout
            found = text.count("chain nat-KUBE-SVC-")
        else:  # each chain's declaration, not the rules that name it
            found = sh("iptables-save", "-t", "nat").stdout.count(":KUBE-SVC-")
        return "" if found == expected else f"{found} KUBE-SVC chains, expected {expected}"

    return check


def _reach(first: str, last: str) -> Callable[[Firewall], str]:
    def check(firewall: Firewall) -> str:
        ok = sh("ping", "-c", "1", "-W", "1", "-q", last, netns=first).returncode == 0
        return "" if ok else f"ping {first} -> {last} failed"

    return check


def _step_scripts(plan: Plan, out: Path) -> tuple[Path, Path]:
    """The root firewall step alone, and its undo, as scripts with the prelude they run with."""
    renderer = Renderer()
    steps = renderer.steps(plan)
    step = next(s for s in steps if s.title.startswith(("install ", "create nftables")))
    prelude = renderer.prelude(plan, steps)
    apply, remove = out / "apply.sh", out / "remove.sh"
    apply.write_text(f"set -euo pipefail\n{prelude}\n{step.do}\n")
    remove.write_text(f"set -euo pipefail\n{prelude}\n{step.undo}\n")
    return apply, remove


def measure(case: Case, runs: int, work: Path, alone: bool) -> dict[str, Times]:
    """Setup and teardown of one case with each backend, runs times, alternating backends."""
    times = {firewall: Times() for firewall in FIREWALLS}
    paths: dict[str, tuple[Path, Path | None]] = {}
    for firewall in FIREWALLS:
        plan = build_plan(case.topology, "batch", firewall)
        scripts = work / f"{case.name.split()[0]}-{firewall}"
        write_scripts(render_scripts(plan), scripts)
        paths[firewall] = (scripts, scripts if alone else None)
        if alone:
            _step_scripts(plan, scripts)
    before = take_snapshot()
    for run in range(runs):
        for firewall in FIREWALLS:
            scripts, steps = paths[firewall]
            log = work / f"log-{firewall}-{run}"
            t = times[firewall]
            commands = [("setup", [str(scripts / "setup.sh")])]
            commands += [("teardown", [str(scripts / "teardown.sh")])]
            if steps is not None:
                commands[:0] = [
                    ("apply", ["bash", str(steps / "apply.sh")]),
                    ("remove", ["bash", str(steps / "remove.sh")]),
                ]
            for what, argv in commands:
                settle(30)
                outcome = timed(argv, TIMEOUT, log)
                if not outcome.ok:
                    t.failures.append(f"{what}: {outcome.error}")
                    return times
                getattr(t, what).append(outcome.seconds)
                if what in ("apply", "setup"):
                    problem = case.check(firewall)
                    if problem:
                        t.failures.append(f"after {what}: {problem}")
                if what in ("remove", "teardown"):
                    left = diff_snapshots(before, take_snapshot())
                    if left:
                        t.failures.append(f"after {what}: left {left[0][:200]}")
                        return times
    return times


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f} s"


def _ratio(nft: float | None, ipt: float | None) -> str:
    return "-" if nft is None or not ipt else f"{nft / ipt:.2f}x"


def report(results: dict[str, dict[str, Times]], options: dict[str, Any]) -> list[str]:
    lines = [
        "# Firewall-heavy cases: iptables and nftables in the same run",
        "",
        f"Medians of {options['runs']} run(s), wall-clock; ratio = nftables / iptables "
        "(below 1: nftables is faster).",
        f"nsgen {options['revision']}; {options['machine']}.",
        "",
        "| case | what | iptables | nftables | nftables / iptables |",
        "| --- | --- | --- | --- | --- |",
    ]
    labels = {
        "apply": "firewall step alone (one iptables-restore / one nft -f)",
        "remove": "its undo (tagged rules and own chains / nft delete table)",
        "setup": "setup.sh",
        "teardown": "teardown.sh",
    }
    failures = []
    for case, times in results.items():
        ipt, nft = times["iptables"], times["nftables"]
        for what, label in labels.items():
            if not getattr(ipt, what) and not getattr(nft, what):
                continue
            a, b = ipt.median(what), nft.median(what)
            lines.append(f"| {case} | {label} | {_fmt(a)} | {_fmt(b)} | {_ratio(b, a)} |")
        for firewall, t in times.items():
            failures += [f"- {case}, {firewall}: {f}" for f in t.failures]
    lines += ["", "Failures: none." if not failures else "Failures:", *failures]
    return lines


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--endpoints", type=int, default=2)
    parser.add_argument(
        "--sizes",
        type=lambda text: [int(x) for x in text.split(",")],
        default=[100, 1000],
        help="N of the namespaces case (comma-separated)",
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS)
    return parser.parse_args(argv)


def benchmark(
    services: int, endpoints: int, sizes: list[int], runs: int, work: Path
) -> dict[str, dict[str, Times]]:
    """Every case, each backend, inside a sandbox that has its stand-in uplink eth0 already."""
    s, e = services, endpoints
    cases = [
        (
            Case(
                f"services S={s} E={e} (root namespace)",
                topology_from_data(services_in_root(s, e), "services.yaml"),
                _svc_chains(s),
            ),
            True,
        ),
        (
            Case(
                f"cluster of 2 nodes, S={s} E={e}",
                topology_from_data(cluster(s, e), "cluster.yaml"),
                _reach("ep1", "10.244.1.2"),
            ),
            False,
        ),
    ]
    for n in sizes:
        cases.append(
            (
                Case(
                    f"namespaces N={n}",
                    topology_from_data(namespaces_topology(n), "namespaces.yaml"),
                    _reach(ns_name(1), str(ns_address(n))),
                ),
                False,
            )
        )
    results: dict[str, dict[str, Times]] = {}
    for case, alone in cases:
        say(f"bench.firewall: {case.name}")
        results[case.name] = measure(case, runs, work, alone)
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nsgen-bench-fw-"))

    def child() -> None:
        enter_sandbox()
        build_upstream(["eth0"])
        results = benchmark(args.services, args.endpoints, args.sizes, args.runs, work)
        options = {
            "runs": args.runs,
            "revision": nsgen_revision(),
            "machine": ", ".join(
                f"{k} {v}" for k, v in machine().items() if k in ("nproc", "kernel", "iptables")
            ),
        }
        lines = report(results, options)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "firewall.md").write_text("\n".join(lines) + "\n")
        raw = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "options": {
                **options,
                "services": args.services,
                "endpoints": args.endpoints,
                "sizes": args.sizes,
            },
            "cases": {
                case: {fw: t.__dict__ for fw, t in times.items()} for case, times in results.items()
            },
        }
        (args.out / "firewall.json").write_text(json.dumps(raw, indent=2) + "\n")
        say("\n".join(lines))
        say(f"bench.firewall: wrote {args.out}/firewall.md, firewall.json")

    try:
        _in_sandbox(child)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
