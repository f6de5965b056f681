"""The planner: a pure function from a validated topology to an ordered list of steps.

`build_plan` asks every kind of network object (nsgen.kinds.KINDS), in order, for its steps
and preconditions; in the default style, `batched` then groups them into few processes, by
where they act and which program runs them. Python decides what happens, in which order,
with which names, and why; the templates decide how each kind of step is spelled. No I/O
happens here.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from nsgen.checks import Probe, plan_probes
from nsgen.fields import HOST
from nsgen.kinds.base import Args, Firewall, Group, Owner, PlanContext, Precondition, Step
from nsgen.kinds.firewall import NftTableArgs
from nsgen.kinds.links import VethArgs
from nsgen.kinds.namespaces import NamespaceArgs
from nsgen.kinds.registry import KINDS, kind_of
from nsgen.model import Topology
from nsgen.names import chain_tag

__all__ = ["FIREWALLS", "STYLES", "Plan", "Precondition", "Step", "batched", "build_plan"]


@dataclass(frozen=True)
class Plan:
    topology: str
    description: str
    digest: str
    steps: list[Step]
    preflight: list[Precondition]
    tools: list[str] = field(default_factory=lambda: ["ip"])
    probes: list[Probe] = field(default_factory=list)
    firewall: Firewall = "iptables"
    """The backend that installs the firewall rules."""

    @property
    def state_dir(self) -> str:
        return f"/run/nsgen/{self.topology}"


@dataclass(frozen=True)
class NetnsBatchArgs(Args):
    """Every namespace, created in one `ip -b`; `ends` are the root-namespace ends of their
    veth pairs, which the kernel removes when it deletes the namespaces."""

    names: tuple[str, ...]
    ends: tuple[str, ...]


@dataclass(frozen=True)
class RestoreArgs(Args):
    tag: str


def topology_digest(topology: Topology, firewall: Firewall = "iptables") -> str:
    """sha256 of the topology's canonical form and of the firewall backend that installs it:
    the same network gives the same digest (a topology with the default backend, iptables,
    keeps the digest it had before there was a choice)."""
    text = topology.model_dump_json(exclude={"firewall"})
    if firewall != "iptables":
        text += f"\nfirewall: {firewall}"
    return hashlib.sha256(text.encode()).hexdigest()


STYLES = ("batch", "tutorial")
FIREWALLS: tuple[Firewall, ...] = ("iptables", "nftables")


def recorded_firewall(topology: Topology, digest: str | None) -> Firewall:
    """The backend a topology was set up with, from the digest its record holds (`--firewall`
    may have overridden the file's `firewall:`); the file's when no record matches."""
    for firewall in FIREWALLS:
        if digest and topology_digest(topology, firewall) == digest:
            return firewall
    return topology.firewall


def build_plan(topology: Topology, style: str = "batch", firewall: Firewall | None = None) -> Plan:
    """Every kind's steps, kind after kind in the registry's order (namespaces, bridges,
    addresses, veth pairs and their ends, VXLAN, routes, neighbours, FDB, the firewall's
    table, chains, rules and masquerade, sysctls, DNS files): each layer needs the one before it.

    style "tutorial": one command per line, as the tutorial types them; "batch" (default):
    the same changes grouped into few processes (see `batched`). `firewall` (default: the
    topology's `firewall:`) picks the backend that spells the rules."""
    backend = firewall or topology.firewall
    ctx = PlanContext(topology, chain_tag(topology.name), _declares_ipv6(topology), backend)
    steps: list[Step] = []
    checks: list[Precondition] = []
    tools = ["ip"]
    for kind in KINDS:
        for item in kind.plan(ctx):
            if isinstance(item, Precondition):
                checks.append(item)
                continue
            steps.append(item)
            tools += [tool for tool in kind.tools_for(item) if tool not in tools]
    if style == "batch":
        steps = batched(steps, topology.name)
    return Plan(
        topology=topology.name,
        description=topology.description,
        digest=topology_digest(topology, backend),
        steps=steps,
        preflight=_unique(checks),
        tools=tools,
        probes=plan_probes(topology),
        firewall=backend,
    )


def _unique(checks: list[Precondition]) -> list[Precondition]:
    """The checks without repeats, in order (linear: 1000 namespaces give 3000 checks)."""
    seen: dict[str, Precondition] = {}
    for check in checks:
        seen.setdefault(repr(check), check)
    return list(seen.values())


def _declares_ipv6(topology: Topology) -> bool:
    for _, spec in topology.spaces():
        addresses = [a for b in spec.bridges.values() for a in b.addresses]
        addresses += [a for i in spec.interfaces for a in [*i.addresses, *i.peer.addresses]]
        addresses += [a for v in spec.vxlans.values() for a in v.addresses]
        if any(":" in a for a in addresses):
            return True
    return False


_ROOT_GROUPS: dict[Group, tuple[str, str, tuple[str, ...]]] = {
    "bridges": (
        "create {bridges} in the root namespace",
        "A bridge is a virtual switch: every veth end attached to it can reach the others, "
        "like ports of one Ethernet switch. Its address makes the root namespace a member of "
        "that network, and its gateway.",
        ("bridge", "address"),
    ),
    "cables": (
        "create veth pairs{veths}",
        "veth pairs are virtual cables: each is created with both ends already in their "
        "namespaces, and the ends that stay in the root namespace are attached to their "
        "bridge and brought up, all in one `ip -b`.",
        ("veth",),
    ),
    "routes": (
        "add routes{routes} in the root namespace",
        "The root namespace's routes, neighbours and forwarding entries, in one `ip -b`.",
        ("route", "neighbor", "fdb"),
    ),
}
"""A root group's title and why, and the kinds they speak of: a part of any other kind is
named in the title and the why as well."""


def batched(steps: list[Step], topology: str) -> list[Step]:
    """Group single-command steps into few processes, keeping their order within a namespace:

    1. one `ip -b` in the root namespace creates every bridge there (with its addresses);
    2. one `ip -b` creates every namespace;
    3. one `ip -b` creates the veth pairs (each end straight into its namespace) and
       configures what of them (and of VXLAN devices) stays in the root namespace;
    4. per named namespace, one step enters it once and does everything inside, each program
       once (`ip -b`, `bridge -b`, `tc -b`, `iptables-restore` or `nft -f`, sysctl writes):
       these steps run side by side;
    5. the root namespace's routes, neighbours and FDB entries in one `ip -b`, its firewall
       in one `iptables-restore` (or one `nft -f -`), then settings and files each as a
       step of its own.
    """
    root: dict[Group, list[Step]] = {"bridges": [], "cables": [], "routes": [], "firewall": []}
    created: list[Step] = []
    per_ns: dict[str, list[Step]] = {}
    own: list[Step] = []
    for step in steps:
        kind = kind_of(step.kind)
        space = step.args.netns
        if kind.group == "namespaces":
            assert isinstance(step.args, NamespaceArgs)
            created.append(step)
            per_ns.setdefault(space, [])
            if step.args.loopback:
                per_ns[space].append(
                    Step(
                        "loopback",
                        f"bring up lo in {space}",
                        "",
                        Args(space),
                        Owner("namespace", space),
                    )
                )
        elif kind.enters_for(step) and space != HOST:
            per_ns.setdefault(space, []).append(step)
        elif kind.group == "own":
            own.append(step)
        else:
            root[kind.group].append(step)
    # A veth pair with an end in a named namespace goes away with that namespace: teardown
    # deletes the namespaces and then waits for the kernel to remove their pairs, in one
    # batch, which is far quicker than deleting each pair (each waits for the RCU).
    root["cables"] = [
        Step(s.kind, s.title, s.why, s.args, _veth_owner(s.args), s.parts)
        if isinstance(s.args, VethArgs)
        else s
        for s in root["cables"]
    ]
    out: list[Step] = []
    if root["bridges"]:
        out.append(_root_step("bridges", root["bridges"]))
    if created:
        names = tuple(s.args.netns for s in created)
        ends = tuple(
            end
            for s in root["cables"]
            if isinstance(s.args, VethArgs) and s.owner and (end := s.args.root_end)
        )
        out.append(
            Step(
                "netns_batch",
                f"create {len(names)} namespace(s): {_names(list(names))}",
                "A network namespace is a separate copy of the network stack: its own links, "
                "addresses, routes and firewall. This is what a container gets. One `ip -b` "
                "creates them all.",
                NetnsBatchArgs(HOST, names, ends),
                None,
                tuple(created),
            )
        )
    if root["cables"]:
        out.append(_root_step("cables", root["cables"]))
    for space, parts in per_ns.items():
        if not parts:
            continue
        out.append(
            Step(
                "ns_batch",
                f"configure namespace {space}",
                f"Everything inside {space}, with one entry into the namespace: "
                + "; ".join(dict.fromkeys(kind_of(p.kind).summary_of(p) for p in parts))
                + ".",
                Args(space),
                Owner("namespace", space),
                tuple(parts),
                parallel=True,
            )
        )
    if root["routes"]:
        out.append(_root_step("routes", root["routes"]))
    if root["firewall"]:
        out.append(_firewall_step(root["firewall"], topology))
    return out + own


def _firewall_step(parts: list[Step], topology: str) -> Step:
    """The root namespace's firewall in one call of its backend: nftables' `nft -f -`, or one
    `iptables-restore` per family (IPv6's is `ip6tables-restore`)."""
    tag = chain_tag(topology)
    table = parts[0].args
    if isinstance(table, NftTableArgs):  # the table, created and filled in one transaction
        return Step(
            "restore",
            f"install nftables table {table.family} {table.table} in the root namespace "
            f"({len(parts)} change(s))",
            "The topology's own table with its chains and rules, in one `nft -f -`: one "
            "transaction, so the table is installed whole or not at all, and no other table "
            f"is touched. Every rule has a counter and the comment {tag}; teardown deletes "
            "exactly this table.",
            RestoreArgs(HOST, tag),
            None,
            tuple(parts),
        )
    counts: dict[str, int] = {}
    for part in parts:
        for program in kind_of(part.kind).tools_for(part):
            counts[program] = counts.get(program, 0) + 1
    programs = sorted(counts, key=lambda program: program == "ip6tables")  # IPv4 first
    changes = " and ".join(f"{counts[p]} {p}" for p in programs)
    restores = " and ".join(f"one `{p}-restore --noflush`" for p in programs)
    return Step(
        "restore",
        f"install {changes} change(s) in the root namespace",
        f"Own chains and rules, in {restores} (nothing else is flushed). Every rule carries "
        f"the comment {tag}, and teardown removes exactly the rules with that comment and "
        "the chains created here.",
        RestoreArgs(HOST, tag),
        None,
        tuple(parts),
    )


def _root_step(group: Group, parts: list[Step]) -> Step:
    title, why, own = _ROOT_GROUPS[group]
    counts = {
        "bridges": _count_of(parts, "bridge"),
        "veths": _count(parts, "veth"),
        "routes": _count(parts, "route"),
    }
    title = title.format(**counts)
    others = list(
        dict.fromkeys(
            kind_of(p.kind).summary_of(p) for p in parts if kind_of(p.kind).name not in own
        )
    )
    if others:
        title += " and " + ", ".join(others)
        why += f" The same step also sets up the root namespace's {', '.join(others)}."
    return Step("root_batch", title, why, Args(HOST), None, tuple(parts))


def _veth_owner(args: VethArgs) -> Owner | None:
    for netns in (args.netns, args.far_ns):
        if netns != HOST:
            return Owner("namespace", netns)
    return None


def _count_of(steps: list[Step], kind: str) -> str:
    n = sum(1 for s in steps if s.kind == kind)
    return f"{n} {kind}{'s' if n != 1 else ''}"


def _names(names: list[str], shown: int = 6) -> str:
    if len(names) <= shown:
        return ", ".join(names)
    return ", ".join(names[:shown]) + f", ... ({len(names) - shown} more)"


def _count(steps: list[Step], kind: str) -> str:
    n = sum(1 for s in steps if s.kind == kind)
    return f" ({n} {kind}{'s' if n != 1 else ''})" if n else ""
