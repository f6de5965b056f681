"""The topology as the kernel would hold it once setup.sh has run: per namespace its links
(with addresses, veth peers, bridge ports), its route table (the routes each address adds,
the declared ones, and the world's), its firewall chains in the order their rules end up in,
and the sysctls that decide forwarding; plus the world beyond the root namespace's external
interfaces, as `nsgen lab` builds it.

Every object remembers the step of the batched setup.sh that created it (`StepRef`), so an
explanation can say which line of the script a decision comes from.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path as FilePath
from typing import Literal

from nsgen.backends.iptables import rule_text
from nsgen.fields import HOST
from nsgen.kinds.addressing import AddressArgs, FdbArgs, NeighborArgs, RouteArgs
from nsgen.kinds.firewall import ChainArgs, MasqueradeArgs, NftRuleArgs, RuleArgs
from nsgen.kinds.links import BridgeArgs, VethArgs, VethEndArgs, VxlanArgs
from nsgen.kinds.rules import Chain, Rule, expanded_rules
from nsgen.kinds.settings import SysctlArgs
from nsgen.model import Masquerade, Topology
from nsgen.names import near_name, peer_name
from nsgen.plan import build_plan
from nsgen.sandbox import (
    DNS_SERVER,
    DNS_SERVER6,
    INTERNET_HOST,
    INTERNET_HOST6,
    UPLINKS6,
    UPSTREAM_NETNS,
)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface

UPSTREAM = "upstream"
"""How explanations name nsgen lab's simulated upstream (unless a namespace has that name)."""

BUILTIN_CHAINS: dict[str, tuple[str, ...]] = {
    "raw": ("PREROUTING", "OUTPUT"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
}


def address(text: str) -> IPAddress:
    return ipaddress.ip_address(text)


def interface(text: str) -> IPInterface:
    return ipaddress.ip_interface(text)


def network(text: str) -> IPNetwork:
    if text == "default":
        return ipaddress.ip_network("0.0.0.0/0")
    return ipaddress.ip_network(text, strict=False)


# ---- where each object comes from ----------------------------------------------------------


@dataclass(frozen=True)
class StepRef:
    """The step of the batched setup.sh that installs an object."""

    number: int
    total: int
    title: str

    def __str__(self) -> str:
        return f"setup.sh step {self.number}/{self.total}: {self.title}"


class Provenance:
    """Which step of the batched plan installs each object, looked up by what the object is."""

    def __init__(self, topology: Topology) -> None:
        plan = build_plan(topology)
        self._steps: dict[tuple[object, ...], StepRef] = {}
        total = len(plan.steps)
        for number, step in enumerate(plan.steps, start=1):
            ref = StepRef(number, total, step.title)
            for part in step.parts or (step,):
                for key in _keys(part.args):
                    self._steps.setdefault(key, ref)

    def of(self, *key: object) -> StepRef | None:
        return self._steps.get(key)


def _keys(args: object) -> list[tuple[object, ...]]:
    """What a step's arguments install, as lookup keys."""
    if isinstance(args, RouteArgs):
        return [("route", args.netns, args.to, args.via, args.dev)]
    if isinstance(args, VethEndArgs):
        keys: list[tuple[object, ...]] = [("link", args.netns, args.dev)]
        return keys + [("address", args.netns, args.dev, a) for a in args.addresses]
    if isinstance(args, BridgeArgs):
        return [("link", args.netns, args.name)]
    if isinstance(args, AddressArgs):
        return [("address", args.netns, args.dev, args.address)]
    if isinstance(args, VxlanArgs):
        keys = [("link", args.netns, args.name)]
        return keys + [("address", args.netns, args.name, a) for a in args.addresses]
    if isinstance(args, VethArgs):
        return [("pair", args.netns, args.near)]
    if isinstance(args, NeighborArgs):
        return [("neighbor", args.netns, args.dev, args.address)]
    if isinstance(args, FdbArgs):
        return [("fdb", args.netns, args.dev, args.lladdr)]
    if isinstance(args, ChainArgs):
        return [("chain", args.netns, args.table, args.name)]
    if isinstance(args, RuleArgs | NftRuleArgs):
        return [("rule", args.netns, id(args.rule))]
    if isinstance(args, MasqueradeArgs):
        return [("masquerade", args.netns, args.source, args.out)]
    if isinstance(args, SysctlArgs):
        return [("sysctl", args.netns, args.key)]
    return []


# ---- the world beyond the uplinks ----------------------------------------------------------


@dataclass(frozen=True)
class Uplink:
    """An external interface of the root namespace and the upstream's end of it."""

    name: str
    address: IPInterface
    """The root namespace's address on it."""
    gateway: IPAddress
    """The upstream's address on it (the root namespace's default gateway on the first)."""
    far: str
    """The upstream's end of the link."""
    address6: IPInterface | None = None
    """The root namespace's IPv6 address on it, if it has one."""
    gateway6: IPAddress | None = None
    """The upstream's IPv6 address on it (the IPv6 default gateway on the first)."""

    @property
    def addresses(self) -> list[IPInterface]:
        return [self.address, *([self.address6] if self.address6 is not None else [])]


@dataclass(frozen=True)
class World:
    """What is outside the topology: the uplinks' addresses, the root namespace's default
    route, and (in a lab) the upstream namespace with its stand-in internet hosts."""

    uplinks: tuple[Uplink, ...]
    upstream: bool
    """The upstream namespace is modelled (nsgen lab's simulated upstream)."""
    live_upstream: str = UPSTREAM_NETNS
    """The upstream's namespace on a live lab."""
    origin: str = "nsgen lab's stand-in"

    def uplink(self, name: str) -> Uplink | None:
        return next((u for u in self.uplinks if u.name == name), None)


def lab_world(topology: Topology) -> World:
    """The world `nsgen lab` builds (nsgen.sandbox.build_upstream): one veth per external
    interface to the namespace nsgen-upstream, addresses from 203.0.113.0/24 (a /28 each: the
    root namespace .2, the upstream .1) and from 2001:db8:203::/48 (a /64 each: ::2 and ::1),
    a default route of each family in the root namespace via the first, and 192.0.2.10 and
    2001:db8:192::10 (a host on the internet) and 198.51.100.53 and 2001:db8:198::53 (DNS) on
    the upstream's lo."""
    blocks = ipaddress.IPv4Network("203.0.113.0/24").subnets(new_prefix=28)
    blocks6 = ipaddress.IPv6Network(UPLINKS6).subnets(new_prefix=64)
    uplinks = []
    for index, name in enumerate(topology.host.external):
        block, block6 = next(blocks), next(blocks6)
        uplinks.append(
            Uplink(
                name,
                ipaddress.IPv4Interface(f"{block[2]}/{block.prefixlen}"),
                block[1],
                f"up{index}",
                ipaddress.IPv6Interface(f"{block6[2]}/{block6.prefixlen}"),
                block6[1],
            )
        )
    return World(tuple(uplinks), upstream=True)


@dataclass(frozen=True)
class Environment:
    """Facts of the machine that the topology does not say."""

    br_netfilter: bool
    """Bridged IPv4 passes iptables (the br_netfilter module is loaded; every namespace then
    starts with net.bridge.bridge-nf-call-iptables = 1)."""

    @property
    def words(self) -> str:
        if self.br_netfilter:
            return "br_netfilter is loaded: bridged IPv4 traffic passes iptables"
        return "br_netfilter is not loaded: bridged traffic bypasses iptables"


def this_machine() -> Environment:
    """The environment of the running kernel, read without root: /proc/sys/net/bridge exists
    exactly when br_netfilter is loaded."""
    return Environment(
        br_netfilter=FilePath("/proc/sys/net/bridge/bridge-nf-call-iptables").exists()
    )


# ---- the network ---------------------------------------------------------------------------

LinkKind = Literal["lo", "veth", "bridge", "vxlan", "external", "uplink"]


@dataclass
class Link:
    netns: str
    name: str
    kind: LinkKind
    addresses: list[IPInterface] = field(default_factory=list)
    peer: tuple[str, str] | None = None
    """veth (and uplink): the namespace and name of the other end."""
    master: str | None = None
    """The bridge this link is a port of."""
    hairpin: bool = False
    step: StepRef | None = None
    vxlan: VxlanSpec | None = None

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class VxlanSpec:
    id: int
    local: IPAddress | None
    port: int
    mac: str | None


@dataclass(frozen=True)
class RouteEntry:
    """A route of a namespace's main table (or of its local table: `local`)."""

    dst: IPNetwork
    dev: str | None
    via: IPAddress | None = None
    onlink: bool = False
    src: IPAddress | None = None
    origin: Literal["connected", "declared", "world", "local"] = "declared"
    step: StepRef | None = None

    @property
    def text(self) -> str:
        dst = "default" if self.dst.prefixlen == 0 else str(self.dst)
        if self.origin == "local":
            return f"local {dst} dev lo"
        words = [dst]
        if self.via is not None:
            words += ["via", str(self.via)]
        if self.dev is not None:
            words += ["dev", self.dev]
        if self.onlink:
            words.append("onlink")
        if self.origin == "connected":
            words += ["proto", "kernel", "scope", "link"]
        return " ".join(words)


@dataclass(frozen=True)
class RuleEntry:
    """A rule where it ends up: its chain, its number there, and the step that installs it."""

    rule: Rule
    netns: str
    number: int
    step: StepRef | None
    masquerade: bool = False
    """It comes from `masquerade:` rather than `iptables.rules`."""

    @property
    def table(self) -> str:
        return self.rule.table

    @property
    def chain(self) -> str:
        return self.rule.chain

    @property
    def text(self) -> str:
        return rule_text(self.rule)

    @property
    def name(self) -> str:
        """'nat POSTROUTING rule 1'."""
        return f"{self.table} {self.chain} rule {self.number}"


@dataclass
class Space:
    """One namespace as the kernel holds it."""

    name: str
    live_name: str
    links: dict[str, Link] = field(default_factory=dict)
    routes: list[RouteEntry] = field(default_factory=list)
    chains: dict[tuple[str, str], list[RuleEntry]] = field(default_factory=dict)
    own_chains: set[tuple[str, str]] = field(default_factory=set)
    forwarding: dict[int, bool] = field(default_factory=lambda: {4: False, 6: False})
    forwarding_step: dict[int, StepRef | None] = field(default_factory=lambda: {4: None, 6: None})
    br_netfilter: bool = False
    br_netfilter_step: StepRef | None = None
    neighbors: dict[tuple[str, IPAddress], str] = field(default_factory=dict)
    """(dev, address) -> lladdr: permanent neighbour entries."""
    fdb: dict[tuple[str, str], IPAddress] = field(default_factory=dict)
    """(dev, lladdr) -> remote VTEP: forwarding-database entries toward a tunnel."""
    outside: bool = False
    """Not part of the topology (the lab's upstream)."""

    def addresses(self) -> list[tuple[Link, IPInterface]]:
        return [(link, a) for link in self.links.values() for a in link.addresses]

    def is_local(self, ip: IPAddress) -> bool:
        if ip.version == 4 and ip in ipaddress.IPv4Network("127.0.0.0/8"):
            return True
        return any(a.ip == ip for _, a in self.addresses())

    def holder(self, ip: IPAddress) -> Link | None:
        """The link that holds `ip` as an address."""
        return next((link for link, a in self.addresses() if a.ip == ip), None)

    def ports(self, bridge: str) -> list[Link]:
        return [link for link in self.links.values() if link.master == bridge]

    def has_rules(self, table: str | None = None) -> bool:
        return any(rules for (t, _), rules in self.chains.items() if table in (None, t))

    def chain(self, table: str, name: str) -> list[RuleEntry]:
        return self.chains.get((table, name), [])


@dataclass
class Net:
    """Every namespace of the topology (and, in a lab, the upstream)."""

    spaces: dict[str, Space]
    world: World
    env: Environment
    topology: Topology

    def space(self, name: str) -> Space:
        return self.spaces[name]

    def link(self, netns: str, name: str) -> Link:
        return self.spaces[netns].links[name]

    def owner(self, ip: IPAddress) -> tuple[Space, Link] | None:
        """The namespace (and link) holding `ip`; topology namespaces before the world."""
        for space in self.spaces.values():
            link = space.holder(ip)
            if link is not None:
                return space, link
        return None


def _true(value: object) -> bool:
    return str(value).strip() == "1"


def build_network(topology: Topology, world: World, env: Environment) -> Net:
    """The kernel's view of `topology` after setup, in `world` and `env`."""
    steps = Provenance(topology)
    upstream_name = UPSTREAM if UPSTREAM not in topology.namespaces else UPSTREAM_NETNS
    spaces: dict[str, Space] = {}
    for netns, _ in topology.spaces():
        space = Space(netns, netns)
        space.links["lo"] = Link(netns, "lo", "lo", [interface("127.0.0.1/8")])
        spaces[netns] = space
    for netns, spec in topology.spaces():
        space = spaces[netns]
        for name in spec.external:
            uplink = world.uplink(name)
            space.links[name] = Link(
                netns,
                name,
                "external",
                uplink.addresses if uplink else [],
                peer=(upstream_name, uplink.far) if uplink and world.upstream else None,
            )
        for name, bridge in spec.bridges.items():
            space.links[name] = Link(
                netns,
                name,
                "bridge",
                [interface(a) for a in bridge.addresses],
                step=steps.of("link", netns, name),
            )
        for name, vxlan in spec.vxlans.items():
            space.links[name] = Link(
                netns,
                name,
                "vxlan",
                [interface(a) for a in vxlan.addresses],
                step=steps.of("link", netns, name),
                vxlan=VxlanSpec(
                    vxlan.id,
                    address(vxlan.local) if vxlan.local else None,
                    vxlan.port,
                    vxlan.mac.lower() if vxlan.mac else None,
                ),
            )
    for netns, spec in topology.spaces():
        for iface in spec.interfaces:
            near, far = near_name(netns, iface), peer_name(netns, iface)
            far_ns = iface.peer.netns
            spaces[netns].links[near] = Link(
                netns,
                near,
                "veth",
                [interface(a) for a in iface.addresses],
                peer=(far_ns, far),
                master=iface.bridge,
                hairpin=iface.hairpin,
                step=steps.of("link", netns, near),
            )
            spaces[far_ns].links[far] = Link(
                far_ns,
                far,
                "veth",
                [interface(a) for a in iface.peer.addresses],
                peer=(netns, near),
                master=iface.peer.bridge,
                hairpin=iface.peer.hairpin,
                step=steps.of("link", far_ns, far),
            )
    for netns, spec in topology.spaces():
        space = spaces[netns]
        _connected_routes(space, steps)
        for route in spec.routes:
            _declared_route(space, route.to, route.via, route.dev, route.onlink, steps)
        for neighbor in spec.neighbors:
            space.neighbors[(neighbor.dev, address(neighbor.address))] = neighbor.lladdr.lower()
        for entry in spec.fdb:
            space.fdb[(entry.dev, entry.lladdr.lower())] = address(entry.dst)
        for key, value in spec.sysctls.items():
            if key in ("net.ipv4.ip_forward", "net.ipv4.conf.all.forwarding"):
                space.forwarding[4] = _true(value)
                space.forwarding_step[4] = steps.of("sysctl", netns, key)
            elif key == "net.ipv6.conf.all.forwarding":
                space.forwarding[6] = _true(value)
                space.forwarding_step[6] = steps.of("sysctl", netns, key)
        bridge_nf = spec.sysctls.get("net.bridge.bridge-nf-call-iptables")
        space.br_netfilter = env.br_netfilter if bridge_nf is None else _true(bridge_nf)
        if bridge_nf is not None:
            space.br_netfilter_step = steps.of(
                "sysctl", netns, "net.bridge.bridge-nf-call-iptables"
            )
        rules = expanded_rules(spec.iptables)  # dispatches written out, as iptables has them
        _firewall(space, rules, spec.iptables.chains, spec.masquerade, steps)
    if world.uplinks:
        first = world.uplinks[0]
        defaults = {r.dst.version for r in spaces[HOST].routes if r.dst.prefixlen == 0}
        if 4 not in defaults:
            spaces[HOST].routes.append(
                RouteEntry(network("default"), first.name, first.gateway, origin="world")
            )
        if 6 not in defaults and first.gateway6 is not None:
            spaces[HOST].routes.append(
                RouteEntry(network("::/0"), first.name, first.gateway6, origin="world")
            )
    if world.upstream:
        spaces[upstream_name] = _upstream(upstream_name, world)
    return Net(spaces, world, env, topology)


def _connected_routes(space: Space, steps: Provenance) -> None:
    """The prefix route each address adds on its link (none for a /32 or /128)."""
    for link in space.links.values():
        if link.kind == "lo":
            continue
        for iface in link.addresses:
            if iface.network.prefixlen == iface.max_prefixlen:
                continue
            space.routes.append(
                RouteEntry(
                    iface.network,
                    link.name,
                    src=iface.ip,
                    origin="world" if link.kind == "external" else "connected",
                    step=steps.of("address", space.name, link.name, str(iface)),
                )
            )


def _declared_route(
    space: Space,
    to: str,
    via: str | None,
    dev: str | None,
    onlink: bool,
    steps: Provenance,
) -> None:
    gateway = address(via) if via else None
    dst = (
        network("::/0" if gateway is not None and gateway.version == 6 else "0.0.0.0/0")
        if to == "default"
        else network(to)
    )
    resolved = dev
    if resolved is None and gateway is not None:
        near = [r for r in space.routes if r.origin == "connected" and gateway in r.dst]
        resolved = near[0].dev if near else None
    space.routes.append(
        RouteEntry(
            dst,
            resolved,
            gateway,
            onlink,
            origin="declared",
            step=steps.of("route", space.name, to, via, dev),
        )
    )


def _firewall(
    space: Space,
    rules: list[Rule],
    chains: list[Chain],
    masquerades: list[Masquerade],
    steps: Provenance,
) -> None:
    """Each chain's rules in the order the kernel ends up with them: an inserted rule goes to
    the top of its chain, an appended one to the end; the masquerade rules are appended to nat
    POSTROUTING after the rules (the firewall kinds are planned in that order)."""
    for chain in chains:
        space.own_chains.add((chain.table, chain.name))
    ordered: dict[tuple[str, str], list[tuple[Rule, StepRef | None, bool]]] = {}
    for rule in rules:
        entry = (rule, steps.of("rule", space.name, id(rule)), False)
        line = ordered.setdefault((rule.table, rule.chain), [])
        if rule.insert:
            line.insert(0, entry)
        else:
            line.append(entry)
    for masq in masquerades:
        rule = Rule.model_validate(
            {
                "table": "nat",
                "chain": "POSTROUTING",
                "source": masq.source,
                "out_interface": masq.out,
                "jump": "MASQUERADE",
            }
        )
        step = steps.of("masquerade", space.name, masq.source, masq.out)
        ordered.setdefault(("nat", "POSTROUTING"), []).append((rule, step, True))
    for key, entries in ordered.items():
        space.chains[key] = [
            RuleEntry(rule, space.name, number, step, masq)
            for number, (rule, step, masq) in enumerate(entries, start=1)
        ]


def _upstream(name: str, world: World) -> Space:
    """The lab's upstream: the far end of every uplink, 192.0.2.10 and 198.51.100.53 on its lo,
    and no route beyond the uplinks' own subnets (private sources need NAT, as on the
    internet)."""
    space = Space(name, world.live_upstream, outside=True)
    space.links["lo"] = Link(
        name,
        "lo",
        "lo",
        [
            interface("127.0.0.1/8"),
            interface(f"{INTERNET_HOST}/32"),
            interface(f"{DNS_SERVER}/32"),
            interface(f"{INTERNET_HOST6}/128"),
            interface(f"{DNS_SERVER6}/128"),
        ],
    )
    for uplink in world.uplinks:
        fars = [ipaddress.ip_interface(f"{uplink.gateway}/{uplink.address.network.prefixlen}")]
        if uplink.gateway6 is not None and uplink.address6 is not None:
            fars.append(
                ipaddress.ip_interface(f"{uplink.gateway6}/{uplink.address6.network.prefixlen}")
            )
        space.links[uplink.far] = Link(name, uplink.far, "uplink", fars, peer=(HOST, uplink.name))
        for far in fars:
            space.routes.append(RouteEntry(far.network, uplink.far, src=far.ip, origin="world"))
    return space
