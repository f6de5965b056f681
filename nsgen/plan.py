"""The planner: a pure function from a validated topology to an ordered list of steps.

Python decides what happens, in which order, with which names, and why; the templates decide
how each kind of step is spelled in `ip`/`iptables`. No I/O happens here.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from nsgen import fields
from nsgen.backends.iptables import rule_text, rule_words
from nsgen.checks import Probe, plan_probes
from nsgen.model import HOST, Namespace, Topology
from nsgen.names import chain_tag, near_name, peer_name


@dataclass(frozen=True)
class Step:
    """One unit of change a reviewer can follow: its commands and how to undo them.

    `kind` names the template macros `do_<kind>` / `undo_<kind>`; `args` are the values they
    spell out. `owner` is set when the step's effects disappear with an object nsgen created
    earlier (a namespace, a bridge, a veth pair): such a step needs no undo of its own.
    """

    kind: str
    title: str
    why: str
    args: dict[str, Any]
    owner: str | None = None
    parts: tuple[Step, ...] = ()
    """For a batched step: the single-command steps it groups, in order."""
    parallel: bool = False
    """Runs beside its neighbours: it only touches its own namespace, and needs no undo."""


@dataclass(frozen=True)
class Precondition:
    """A preflight condition: `kind` names the template macro `preflight_<kind>`."""

    kind: str
    args: dict[str, Any]


@dataclass(frozen=True)
class Plan:
    topology: str
    description: str
    digest: str
    steps: list[Step]
    preflight: list[Precondition]
    tools: list[str] = field(default_factory=lambda: ["ip"])
    probes: list[Probe] = field(default_factory=list)

    @property
    def state_dir(self) -> str:
        return f"/run/nsgen/{self.topology}"


def topology_digest(topology: Topology) -> str:
    """sha256 of the topology's canonical form: the same network gives the same digest."""
    return hashlib.sha256(topology.model_dump_json().encode()).hexdigest()


def _where(netns: str) -> str:
    return "the root namespace" if netns == HOST else f"namespace {netns}"


def _in(netns: str) -> str:
    """Suffix for step titles: where a step acts, when that is not the root namespace."""
    return "" if netns == HOST else f" (in {netns})"


def _owned_link(spec: Namespace, dev: str) -> str | None:
    """The link that takes an entry on `dev` with it, if nsgen creates that link."""
    if dev in spec.vxlans:
        return f"vxlan {dev}"
    if dev in spec.bridges:
        return f"bridge {dev}"
    return None


def _sysctl_path(key: str) -> str:
    return "/proc/sys/" + key.replace(".", "/")


STYLES = ("batch", "tutorial")


def build_plan(topology: Topology, style: str = "batch") -> Plan:
    """Order: namespaces, bridges, veth pairs, their ends, routes, NAT, sysctls, DNS files.

    Each layer needs the one before it (an address needs its link, a route its address).
    style "tutorial": one command per line, as the tutorial types them; "batch" (default):
    the same changes grouped into few processes (see `batched`).
    """
    steps: list[Step] = []
    checks: list[Precondition] = []
    tag = chain_tag(topology.name)
    tools = ["ip"]

    for netns, spec in topology.namespaces.items():
        loopback = spec.loopback is not False
        steps.append(
            Step(
                "netns",
                f"create namespace {netns}",
                "A network namespace is a separate copy of the network stack: its own links, "
                "addresses, routes and firewall. This is what a container gets."
                + (
                    " Its loopback 'lo' starts down; bring it up so local traffic works."
                    if loopback
                    else ""
                ),
                {"netns": netns, "loopback": loopback},
            )
        )
        checks.append(Precondition("netns_absent", {"netns": netns}))

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for name, bridge in spec.bridges.items():
            steps.append(
                Step(
                    "bridge",
                    f"create bridge {name}{_in(netns)}",
                    "A bridge is a virtual switch: every veth end attached to it can reach the "
                    "others, like ports of one Ethernet switch.",
                    {"netns": netns, "name": name},
                    owner,
                )
            )
            if netns == HOST:
                checks.append(Precondition("link_absent", {"name": name}))
            for address in bridge.addresses:
                steps.append(
                    Step(
                        "address",
                        f"assign {address} to bridge {name}",
                        f"With an address on {name}, {_where(netns)} is a member of "
                        f"{fields.ip_interface(address).network} and can be the gateway of "
                        "everything attached to the bridge.",
                        {"netns": netns, "dev": name, "address": address},
                        f"bridge {name}",
                    )
                )
                if netns == HOST:
                    net = str(fields.ip_interface(address).network)
                    checks.append(Precondition("route_absent", {"to": net}))

    veth_ends: list[tuple[str, str, str | None, list[str], str, bool]] = []
    for netns, spec in topology.spaces():
        for iface in spec.interfaces:
            near = near_name(netns, iface)
            far = peer_name(netns, iface)
            far_ns = iface.peer.netns
            pair_owner = None if HOST in (netns, far_ns) else f"namespace {netns}"
            steps.append(
                Step(
                    "veth",
                    f"create veth pair {near} <-> {far}",
                    f"A veth pair is a virtual cable: what enters {near} ({_where(netns)}) comes "
                    f"out of {far} ({_where(far_ns)}). Creating both ends where they belong in "
                    "one command leaves no half-made pair behind.",
                    {"near_ns": netns, "near": near, "far_ns": far_ns, "far": far},
                    pair_owner,
                )
            )
            for end_ns, end in ((netns, near), (far_ns, far)):
                if end_ns == HOST:
                    checks.append(Precondition("link_absent", {"name": end}))
            pair = f"veth pair {near} <-> {far}"
            veth_ends.append((netns, near, None, iface.addresses, pair, False))
            veth_ends.append(
                (far_ns, far, iface.peer.bridge, iface.peer.addresses, pair, iface.peer.hairpin)
            )
            for end_ns, end_addresses in ((netns, iface.addresses), (far_ns, iface.peer.addresses)):
                if end_ns == HOST:
                    for address in end_addresses:
                        net = str(fields.ip_interface(address).network)
                        checks.append(Precondition("route_absent", {"to": net}))

    for netns, dev, master, addresses, pair, hairpin in veth_ends:
        parts = []
        if master:
            parts.append(f"attach {dev} to {master}")
        if addresses:
            parts.append(f"assign {', '.join(addresses)} to {dev}")
        parts.append(f"bring {dev} up")
        reasons = []
        if master:
            reasons.append(f"As a port of {master}, {dev} joins the switch.")
        if hairpin:
            reasons.append(
                "Hairpin mode lets frames go back out of the port they came in "
                "on, so the namespace reaches itself through a NAT on the bridge."
            )
        if addresses:
            reasons.append(
                f"The address makes {_where(netns)} a host on "
                f"{fields.ip_interface(addresses[0]).network}."
            )
        reasons.append("A new link is down until it is set up.")
        steps.append(
            Step(
                "end",
                ", ".join(parts) + _in(netns),
                " ".join(reasons),
                {
                    "netns": netns,
                    "dev": dev,
                    "bridge": master,
                    "addresses": addresses,
                    "hairpin": hairpin,
                },
                pair,
            )
        )

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for name, vxlan in spec.vxlans.items():
            over = f" over {vxlan.dev}" if vxlan.dev else ""
            steps.append(
                Step(
                    "vxlan",
                    f"create vxlan {name} (VNI {vxlan.id}){over}{_in(netns)}",
                    "A VXLAN device carries Ethernet frames inside UDP packets to other hosts "
                    f"(port {vxlan.port}): an overlay network across the underlay"
                    + (f" reached through {vxlan.dev}." if vxlan.dev else ".")
                    + (
                        ""
                        if vxlan.learning
                        else " Learning is off: where each remote MAC lives "
                        "is written into the forwarding database below, as flannel does."
                    ),
                    {
                        "netns": netns,
                        "name": name,
                        "id": vxlan.id,
                        "local": vxlan.local,
                        "dev": vxlan.dev,
                        "port": vxlan.port,
                        "mac": vxlan.mac,
                        "learning": vxlan.learning,
                        "addresses": vxlan.addresses,
                    },
                    owner,
                )
            )
            if netns == HOST:
                checks.append(Precondition("link_absent", {"name": name}))

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for route in spec.routes:
            target = "default route" if route.to == "default" else f"route to {route.to}"
            how = " ".join(
                x
                for x in (
                    f"via {route.via}" if route.via else "",
                    f"dev {route.dev}" if route.dev else "",
                    "onlink" if route.onlink else "",
                )
                if x
            )
            steps.append(
                Step(
                    "route",
                    f"add {target} {how}{_in(netns)}",
                    (
                        "Packets for any address without a more specific route go to the gateway."
                        if route.to == "default"
                        else f"Packets for {route.to} go through the gateway instead of being "
                        "dropped as unreachable."
                    ),
                    {
                        "netns": netns,
                        "to": route.to,
                        "via": route.via,
                        "dev": route.dev,
                        "onlink": route.onlink,
                        "family": 6 if ":" in (route.via or route.to) else 4,
                    },
                    owner,
                )
            )
            if netns == HOST and route.to != "default":
                checks.append(Precondition("route_absent", {"to": route.to}))

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for neighbor in spec.neighbors:
            steps.append(
                Step(
                    "neighbor",
                    f"add neighbour {neighbor.address} at {neighbor.lladdr} on {neighbor.dev}"
                    f"{_in(netns)}",
                    f"A permanent ARP entry: {neighbor.address} is answered from this table, "
                    "with no ARP request on the wire.",
                    {
                        "netns": netns,
                        "dev": neighbor.dev,
                        "address": neighbor.address,
                        "lladdr": neighbor.lladdr,
                    },
                    owner or _owned_link(spec, neighbor.dev),
                )
            )
        for entry in spec.fdb:
            steps.append(
                Step(
                    "fdb",
                    f"forward {entry.lladdr} on {entry.dev} to {entry.dst}{_in(netns)}",
                    f"Frames for {entry.lladdr} are sent through the tunnel to the host at "
                    f"{entry.dst}.",
                    {"netns": netns, "dev": entry.dev, "lladdr": entry.lladdr, "dst": entry.dst},
                    owner or _owned_link(spec, entry.dev),
                )
            )

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for chain in spec.iptables.chains:
            steps.append(
                Step(
                    "chain",
                    f"create iptables chain {chain.name} in table {chain.table}{_in(netns)}",
                    "A chain of this topology's own: its rules are kept apart from everyone "
                    "else's, and teardown empties and deletes exactly this chain.",
                    {"netns": netns, "table": chain.table, "name": chain.name},
                    owner,
                )
            )
            if netns == HOST:
                checks.append(
                    Precondition("chain_absent", {"table": chain.table, "name": chain.name})
                )
                if "iptables" not in tools:
                    tools.append("iptables")
        own = {(c.table, c.name) for c in spec.iptables.chains}
        for rule in spec.iptables.rules:
            words = rule_words(rule, tag)
            in_own_chain = (rule.table, rule.chain) in own
            rule_args = {
                "netns": netns,
                "table": rule.table,
                "chain": rule.chain,
                "words": words,
                "insert": rule.insert,
            }
            steps.append(
                Step(
                    "rule",
                    f"{'insert into' if rule.insert else 'append to'} {rule.table} {rule.chain}: "
                    f"{rule_text(rule)}{_in(netns)}",
                    ""
                    if in_own_chain or netns != HOST
                    else f"The rule carries the comment {tag}, so teardown deletes exactly it.",
                    rule_args,
                    owner or (f"chain {rule.chain}" if in_own_chain else None),
                )
            )
            if netns == HOST and not in_own_chain:
                checks.append(Precondition("rule_absent", rule_args))
            if "iptables" not in tools:
                tools.append("iptables")

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for masq in spec.masquerade:
            if "iptables" not in tools:
                tools.append("iptables")
            spec_args = {"netns": netns, "source": masq.source, "out": masq.out, "tag": tag}
            steps.append(
                Step(
                    "masquerade",
                    f"masquerade {masq.source} out of {masq.out}",
                    f"Hosts outside do not know the way back to {masq.source}. Source NAT gives "
                    f"leaving packets the address of {masq.out}, so replies come back and are "
                    f"translated back. The rule carries the comment {tag} so teardown can find "
                    "exactly this rule.",
                    spec_args,
                    owner,
                )
            )
            if netns == HOST:
                checks.append(Precondition("masquerade_absent", spec_args))

    for netns, spec in topology.spaces():
        owner = None if netns == HOST else f"namespace {netns}"
        for key, value in spec.sysctls.items():
            why = (
                "Forwarding lets the kernel pass packets from one interface to another, which "
                "a router (here: the namespaces' gateway) must do."
                if key.endswith(".ip_forward") or key.endswith(".forwarding")
                else f"The topology asks for {key} = {value}."
            )
            if netns == HOST:
                why += " The previous value is saved and teardown puts it back."
            steps.append(
                Step(
                    "sysctl",
                    f"set {key}={value}{_in(netns)}",
                    why,
                    {"netns": netns, "key": key, "value": value, "path": _sysctl_path(key)},
                    owner,
                )
            )

    for netns, spec in topology.namespaces.items():
        if spec.dns is None:
            continue
        files: list[tuple[str, list[str]]] = []
        resolv = [f"nameserver {ns}" for ns in spec.dns.nameservers]
        if spec.dns.search:
            resolv.append("search " + " ".join(spec.dns.search))
        if resolv:
            files.append(("resolv.conf", resolv))
        if spec.dns.hosts:
            hosts = ["127.0.0.1 localhost", "::1 localhost"]
            hosts += [f"{address} {name}" for name, address in spec.dns.hosts.items()]
            files.append(("hosts", hosts))
        if not files:
            continue
        paths = [f"/etc/netns/{netns}/{name}" for name, _ in files]
        steps.append(
            Step(
                "dns",
                f"write {', '.join(paths)}",
                f"'ip netns exec {netns}' shows files in /etc/netns/{netns}/ in place of the "
                "host's /etc files, so programs in the namespace resolve names with these.",
                {"netns": netns, "files": files, "paths": paths},
            )
        )
        for path in paths:
            checks.append(Precondition("file_absent", {"path": path}))

    for name in topology.host.external:
        checks.append(Precondition("link_present", {"name": name}))

    ipv6 = _declares_ipv6(topology)
    steps = [
        Step(s.kind, s.title, s.why, {**s.args, "ipv6": ipv6}, s.owner)
        if s.kind in ("bridge", "end", "vxlan")
        else s
        for s in steps
    ]
    if style == "batch":
        steps = batched(steps, topology.name)
    return Plan(
        topology=topology.name,
        description=topology.description,
        digest=topology_digest(topology),
        steps=steps,
        preflight=_unique(checks),
        tools=tools,
        probes=plan_probes(topology),
    )


def _unique(checks: list[Precondition]) -> list[Precondition]:
    """The checks without repeats, in order (linear: 1000 namespaces give 3000 checks)."""
    seen: dict[str, Precondition] = {}
    for check in checks:
        seen.setdefault(json.dumps([check.kind, check.args], sort_keys=True), check)
    return list(seen.values())


def _declares_ipv6(topology: Topology) -> bool:
    for _, spec in topology.spaces():
        addresses = [a for b in spec.bridges.values() for a in b.addresses]
        addresses += [a for i in spec.interfaces for a in [*i.addresses, *i.peer.addresses]]
        addresses += [a for v in spec.vxlans.values() for a in v.addresses]
        if any(":" in a for a in addresses):
            return True
    return False


_IP_KINDS = ("netns", "bridge", "address", "veth", "end", "vxlan", "route", "neighbor")
_RULE_KINDS = ("chain", "rule", "masquerade")


def _space_of(step: Step) -> str:
    return str(step.args.get("netns", step.args.get("near_ns", HOST)))


def batched(steps: list[Step], topology: str) -> list[Step]:
    """Group single-command steps into few processes, keeping their order within a namespace:

    1. one `ip -b` in the root namespace creates every namespace;
    2. one `ip -b` there creates the bridges, the veth pairs (each end straight into its
       namespace) and configures what of them stays in the root namespace;
    3. per named namespace, one step enters it once and does everything inside (loopback,
       bridges, addresses, routes, VXLAN, neighbours with `ip -b`; FDB with `bridge -b`;
       rules with one `iptables-restore`; sysctls): these steps run side by side;
    4. root routes and neighbours in one `ip -b`, root iptables in one `iptables-restore`,
       then sysctls and DNS files as before.
    """
    root_links: list[Step] = []
    root_late: list[Step] = []
    root_rules: list[Step] = []
    per_ns: dict[str, list[Step]] = {}
    created: list[Step] = []
    rest: list[Step] = []
    for step in steps:
        space = _space_of(step)
        if step.kind == "netns":
            created.append(step)
            per_ns.setdefault(space, [])
            if step.args["loopback"]:
                per_ns[space].append(
                    Step("loopback", f"bring up lo in {space}", "", {"netns": space}, step.title)
                )
        elif step.kind == "veth":
            root_links.append(step)
        elif step.kind == "dns" or (step.kind == "sysctl" and space == HOST):
            rest.append(step)
        elif space != HOST:
            per_ns.setdefault(space, []).append(step)
        elif step.kind in ("route", "neighbor", "fdb"):
            root_late.append(step)
        elif step.kind in _RULE_KINDS:
            root_rules.append(step)
        else:
            root_links.append(step)
    out: list[Step] = []
    bridges = [s for s in root_links if s.kind in ("bridge", "address")]
    cables = [s for s in root_links if s.kind not in ("bridge", "address")]
    # A veth pair with an end in a named namespace goes away with that namespace: teardown
    # deletes the namespaces and then waits for the kernel to remove their pairs, in one
    # batch, which is far quicker than deleting each pair (each waits for the RCU).
    cables = [
        Step(s.kind, s.title, s.why, s.args, _veth_owner(s), s.parts) if s.kind == "veth" else s
        for s in cables
    ]
    if bridges:
        out.append(
            Step(
                "root_batch",
                f"create {_count_of(bridges, 'bridge')} in the root namespace",
                "A bridge is a virtual switch: every veth end attached to it can reach the "
                "others, like ports of one Ethernet switch. Its address makes the root "
                "namespace a member of that network, and its gateway.",
                {"netns": HOST},
                None,
                tuple(bridges),
            )
        )
    if created:
        names = [str(s.args["netns"]) for s in created]
        ends = [_root_end(s) for s in cables if s.kind == "veth" and s.owner]
        out.append(
            Step(
                "netns_batch",
                f"create {len(names)} namespace(s): {_names(names)}",
                "A network namespace is a separate copy of the network stack: its own links, "
                "addresses, routes and firewall. This is what a container gets. One `ip -b` "
                "creates them all.",
                {"names": names, "ends": [e for e in ends if e]},
                None,
                tuple(created),
            )
        )
    if cables:
        out.append(
            Step(
                "root_batch",
                "create veth pairs" + _count(cables, "veth"),
                "veth pairs are virtual cables: each is created with both ends already in "
                "their namespaces, and the ends that stay in the root namespace are attached "
                "to their bridge and brought up, all in one `ip -b`.",
                {"netns": HOST},
                None,
                tuple(cables),
            )
        )
    for space, parts in per_ns.items():
        if space == HOST or not parts:
            continue
        out.append(
            Step(
                "ns_batch",
                f"configure namespace {space}",
                f"Everything inside {space}, with one entry into the namespace: "
                + "; ".join(dict.fromkeys(_part_summary(p) for p in parts))
                + ".",
                {"netns": space},
                f"namespace {space}",
                tuple(parts),
                parallel=True,
            )
        )
    if root_late:
        out.append(
            Step(
                "root_batch",
                "add routes" + _count(root_late, "route") + " in the root namespace",
                "The root namespace's routes, neighbours and forwarding entries, in one `ip -b`.",
                {"netns": HOST},
                None,
                tuple(root_late),
            )
        )
    if root_rules:
        out.append(
            Step(
                "restore",
                f"install {len(root_rules)} iptables change(s) in the root namespace",
                "Own chains and rules, in one `iptables-restore --noflush` (nothing else is "
                f"flushed). Every rule carries the comment nsgen:{topology}, and teardown removes "
                "exactly the rules with that comment and the chains created here.",
                {"netns": HOST, "tag": f"nsgen:{topology}"},
                None,
                tuple(root_rules),
            )
        )
    return out + rest


def _veth_owner(step: Step) -> str | None:
    for key in ("near_ns", "far_ns"):
        if step.args[key] != HOST:
            return f"namespace {step.args[key]}"
    return None


def _root_end(step: Step) -> str | None:
    """The end of a veth pair that stays in the root namespace, if one does."""
    if step.args["near_ns"] == HOST:
        return str(step.args["near"])
    if step.args["far_ns"] == HOST:
        return str(step.args["far"])
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


_SUMMARY = {
    "loopback": "lo up",
    "bridge": "bridges",
    "address": "addresses",
    "end": "veth ends",
    "vxlan": "VXLAN",
    "route": "routes",
    "neighbor": "neighbours",
    "fdb": "FDB entries",
    "chain": "iptables",
    "rule": "iptables",
    "masquerade": "iptables",
    "sysctl": "sysctls",
}


def _part_summary(step: Step) -> str:
    return _SUMMARY.get(step.kind, step.kind)
