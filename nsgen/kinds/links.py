"""Links: external interfaces (used, never created), bridges, veth pairs and their ends, and
VXLAN devices, each with the MTU and MAC address the topology may give it; and the checks
that relate links to each other (a VXLAN device's MTU to its underlay's, the bridges a cable
joins, MAC addresses on one Ethernet segment).

A link nsgen creates in a named namespace goes away with that namespace; in the root
namespace it is deleted by name (all of a step's links in one `ip -b`).

IPv6 link-local addresses: a link that holds an IPv6 address gets a fixed one
(`fixed_link_local`), added without duplicate address detection, instead of the kernel's
autoconfigured one, which stays "tentative" for a second or two after the link comes up. A
router needs a usable link-local address on the link it forwards out of (neighbour
solicitations for forwarded packets come from it), so with the kernel's the first packets a
namespace forwards right after setup would be lost. A link without an IPv6 address gets none
(`addrgenmode none`: it sends no IPv6 packets at all), unless its namespace says
`ipv6: true`."""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import AfterValidator, WithJsonSchema

from nsgen import fields
from nsgen.errors import Problem
from nsgen.fields import HOST
from nsgen.kinds.addressing import observe_address, root_address_conditions
from nsgen.kinds.base import (
    Args,
    Kind,
    Owner,
    PlanContext,
    Planned,
    Precondition,
    Step,
    in_,
    namespace_owner,
    where,
)
from nsgen.names import near_name, peer_name

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Interface, Peer, Topology, Vxlan
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/links.j2"

MTU_RANGE = (68, 65535)
"""What the kernel takes for an Ethernet link's MTU: IPv4's minimum (68) up to 65535."""
IPV6_MIN_MTU = 1280
"""Below this MTU the kernel turns IPv6 off on a link (and drops its IPv6 addresses)."""
VETH_MTU = 1500
"""The MTU a veth end gets when none is given."""
VXLAN_OVERHEAD = {4: 50, 6: 70}
"""Bytes a VXLAN packet adds to the frame it carries, by the underlay's IP version: the inner
Ethernet header (14), VXLAN (8), UDP (8) and the outer IP header (20 or 40)."""


def _mtu(value: int) -> int:
    low, high = MTU_RANGE
    if not low <= value <= high:
        raise ValueError(f"{value} is not an MTU: from {low} (IPv4's minimum) to {high}")
    return value


def _unicast_mac(value: str) -> str:
    fields._mac(value)
    if int(value[:2], 16) & 1 or value == "00:00:00:00:00:00":
        kind = "a multicast" if int(value[:2], 16) & 1 else "the all-zero"
        raise ValueError(
            f"{value} is {kind} MAC address: the kernel gives a device only a unicast one"
        )
    return value


Mtu = Annotated[
    int,
    AfterValidator(_mtu),
    WithJsonSchema({"type": "integer", "minimum": MTU_RANGE[0], "maximum": MTU_RANGE[1]}),
]
"""A link's MTU: the largest packet it sends in one piece (68-65535)."""
LinkMac = Annotated[str, AfterValidator(_unicast_mac)]
"""A link's own MAC address: unicast, not all zeros, written 02:00:00:00:00:01."""


@dataclass(frozen=True)
class LinkName(Args):
    """A link of the root namespace, by name (preflight)."""

    name: str


@dataclass(frozen=True)
class BridgeArgs(Args):
    name: str
    autoconf: bool
    """Keep the kernel's IPv6 autoconfiguration (else `addrgenmode none`)."""
    link_local: str | None
    """A fixed IPv6 link-local address to add (a link with an IPv6 address)."""
    mtu: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class VethArgs(Args):
    """A veth pair: `netns` holds the near end (the namespace that declares it)."""

    near: str
    far_ns: str
    far: str

    @property
    def root_end(self) -> str | None:
        """The end that stays in the root namespace, if one does."""
        if self.netns == HOST:
            return self.near
        if self.far_ns == HOST:
            return self.far
        return None


@dataclass(frozen=True)
class VethEndArgs(Args):
    dev: str
    bridge: str | None
    addresses: tuple[str, ...]
    hairpin: bool
    autoconf: bool
    link_local: str | None
    mtu: int | None = None
    mac: str | None = None


@dataclass(frozen=True)
class VxlanArgs(Args):
    name: str
    id: int
    local: str | None
    dev: str | None
    port: int
    mac: str | None
    learning: bool
    addresses: tuple[str, ...]
    autoconf: bool
    link_local: str | None
    mtu: int | None = None


def fixed_link_local(netns: str, dev: str) -> str:
    """The link-local address nsgen gives a link that holds an IPv6 address: fe80::/64 and 64
    bits of the sha256 of `namespace/link` (the same on every render; a clash on one segment
    is as unlikely as one of the kernel's random MAC-derived addresses)."""
    digest = hashlib.sha256(f"{netns}/{dev}".encode()).digest()
    base = int(ipaddress.IPv6Address("fe80::"))
    return str(ipaddress.IPv6Interface((base + int.from_bytes(digest[:8], "big"), 64)))


def _ipv6_link(
    ctx: PlanContext, netns: str, dev: str, addresses: list[str]
) -> tuple[bool, str | None]:
    """(autoconf, link_local) of a link nsgen creates: see the module docstring."""
    if any(":" in address for address in addresses):
        return False, fixed_link_local(netns, dev)
    return ctx.autoconf(netns), None


def link_names(topology: Topology) -> dict[str, set[str]]:
    """Every interface name the topology declares or derives, per namespace (for the kinds
    that refer to an interface: a queueing discipline, an entry on a device)."""
    names: dict[str, set[str]] = {netns: {"lo"} for netns, _ in topology.spaces()}
    for netns, spec in topology.spaces():
        names[netns].update(spec.external, spec.bridges, spec.vxlans)
        for iface in spec.interfaces:
            names[netns].add(near_name(netns, iface))
            names.setdefault(iface.peer.netns, {"lo"}).add(peer_name(netns, iface))
    return names


def _space_path(netns: str) -> str:
    return HOST if netns == HOST else f"namespaces.{netns}"


def _overhead(vxlan: Vxlan) -> int:
    """What VXLAN adds to each frame: 70 bytes over an IPv6 underlay (its local address says
    so), 50 over IPv4."""
    return VXLAN_OVERHEAD[6 if vxlan.local and ":" in vxlan.local else 4]


def _ipv6_mtu(path: str, mtu: int | None, addresses: list[str]) -> list[Problem]:
    """An MTU too small for the IPv6 addresses on the same link."""
    if mtu is None or mtu >= IPV6_MIN_MTU or not any(":" in a for a in addresses):
        return []
    return [
        Problem(
            f"{path}.mtu",
            f"{mtu} is below IPv6's minimum MTU of {IPV6_MIN_MTU}, and the link has IPv6 "
            "addresses: the kernel turns IPv6 off on it",
        )
    ]


def _known_mtus(topology: Topology) -> dict[tuple[str, str], int]:
    """The MTU each link will have where the topology says so, by (namespace, name): the one
    it declares, or a veth end's default. A bridge without one follows its ports, a VXLAN
    device its underlay, and an external interface is the machine's: those are unknown."""
    known: dict[tuple[str, str], int] = {}
    for netns, spec in topology.spaces():
        for name, bridge in spec.bridges.items():
            if bridge.mtu is not None:
                known[(netns, name)] = bridge.mtu
        for name, vxlan in spec.vxlans.items():
            if vxlan.mtu is not None:
                known[(netns, name)] = vxlan.mtu
        for iface in spec.interfaces:
            known[(netns, near_name(netns, iface))] = iface.mtu or VETH_MTU
            far = (iface.peer.netns, peer_name(netns, iface))
            known[far] = iface.peer.mtu or VETH_MTU
    return known


_Node = tuple[str | int, ...]
"""A link, (namespace, name), or a VXLAN network, ("vni", id, port)."""


class _Segments:
    """Which links share one Ethernet segment (union-find over (namespace, link) pairs): the
    two ends of a veth pair, a bridge and its ports, the VXLAN devices of one VNI and port."""

    def __init__(self) -> None:
        self.parent: dict[_Node, _Node] = {}

    def find(self, node: _Node) -> _Node:
        self.parent.setdefault(node, node)
        while self.parent[node] != node:
            self.parent[node] = self.parent[self.parent[node]]
            node = self.parent[node]
        return node

    def join(self, a: _Node, b: _Node) -> bool:
        """Join a's and b's segments; False if they were one already."""
        root_a, root_b = self.find(a), self.find(b)
        self.parent[root_a] = root_b
        return root_a != root_b


def _bridge_and_mac_problems(topology: Topology) -> list[Problem]:
    """Bridges a veth end names, loops between bridges, and MAC addresses used twice on one
    Ethernet segment."""
    problems: list[Problem] = []
    specs = dict(topology.spaces())
    segments = _Segments()
    bridges = _Segments()  # bridges only, joined by cables: a cable within one is a loop
    macs: list[tuple[tuple[str, str], str, str]] = []  # (link, MAC, path), in file order
    for netns, spec in topology.spaces():
        base = _space_path(netns)
        for name, bridge in spec.bridges.items():
            if bridge.mac:
                macs.append(((netns, name), bridge.mac, f"{base}.bridges.{name}"))
        for i, iface in enumerate(spec.interfaces):
            path = f"{base}.interfaces[{i}]"
            if iface.bridge is not None and iface.bridge not in spec.bridges:
                message = (
                    f"bridge {iface.bridge!r} is not declared in namespace {netns} "
                    f"(under {base}.bridges)"
                )
                far_spec = specs.get(iface.peer.netns)
                if (
                    iface.peer.netns != netns
                    and iface.peer.bridge is None
                    and far_spec is not None
                    and iface.bridge in far_spec.bridges
                ):  # the classic slip: the far end's bridge written on the near end
                    message += (
                        f"; {where(iface.peer.netns)} has one: to attach the far end, write "
                        f"peer: {{bridge: {iface.bridge}}}"
                    )
                problems.append(Problem(f"{path}.bridge", message))
            if iface.hairpin and iface.bridge is None:
                problems.append(
                    Problem(f"{path}.hairpin", "hairpin is a bridge port setting: it needs bridge")
                )
            far_ns = iface.peer.netns
            if far_ns not in specs:
                continue  # reported with the namespace references
            near, far = (netns, near_name(netns, iface)), (far_ns, peer_name(netns, iface))
            segments.join(near, far)
            for end, master in ((near, iface.bridge), (far, iface.peer.bridge)):
                if master is not None:
                    segments.join(end, (end[0], master))
            if iface.bridge is not None and iface.peer.bridge is not None:
                a, b = (netns, iface.bridge), (far_ns, iface.peer.bridge)
                if a == b:
                    problems.append(
                        Problem(
                            f"{path}.peer.bridge",
                            f"both ends on bridge {iface.bridge} make a loop: a broadcast "
                            "would circle through the cable for ever (bridges run no "
                            "spanning tree)",
                        )
                    )
                elif not bridges.join(a, b):
                    problems.append(
                        Problem(
                            f"{path}.peer.bridge",
                            f"bridges {a[1]} ({where(a[0])}) and {b[1]} ({where(b[0])}) are "
                            "joined already: a second cable makes a loop, and a broadcast "
                            "would circle for ever (bridges run no spanning tree)",
                        )
                    )
            for end, spec_end, end_path in ((near, iface, path), (far, iface.peer, f"{path}.peer")):
                if spec_end.mac:
                    macs.append((end, spec_end.mac, end_path))
        for name, vxlan in spec.vxlans.items():
            segments.join((netns, name), ("vni", vxlan.id, vxlan.port))
            if vxlan.mac:
                macs.append(((netns, name), vxlan.mac, f"{base}.vxlans.{name}"))
    seen: dict[tuple[_Node, str], str] = {}
    for link, mac, path in macs:
        key = (segments.find(link), mac)
        if key in seen:
            problems.append(
                Problem(
                    f"{path}.mac",
                    f"MAC address {mac} is already used on the same Ethernet segment "
                    f"(at {seen[key]})",
                )
            )
        else:
            seen[key] = f"{path}.mac"
    return problems


def _link_snapshot(live: LiveState, netns: str) -> dict[str, Any]:
    return {"link": live.link_list(netns), "addr": live.addr_list(netns)}


class ExternalKind(Kind):
    """An interface that exists already (the uplink): preflight requires it; nothing changes."""

    name = "external"
    steps = ()
    template = TEMPLATE
    lane = "ip"
    group = "own"
    summary = "external interfaces"
    rows = ("external",)
    preflight = ("link_present",)

    def step_kinds(self) -> tuple[str, ...]:
        return ()

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for name in ctx.topology.host.external:
            yield Precondition("link_present", TEMPLATE, LinkName(HOST, name))

    def observe_declared(self, topology: Topology, status: Observer) -> None:
        for netns, spec in topology.spaces():
            for name in spec.external:
                status.check("external", netns, name, _up_or_not(status, netns, name))

    def observe(self, step: Step, status: Observer) -> None:
        pass  # no steps: observe_declared

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

    def declared_in(self, topology: Topology) -> list[tuple[str, str]]:
        return [(netns, name) for netns, spec in topology.spaces() for name in spec.external]


def _up_or_not(status: Observer, netns: str, name: str) -> Callable[[], RowState]:
    """An external interface's check: it exists (whether up is its owner's business)."""
    return lambda: status.link_state(netns, name, up=False)


def _link_row(
    status: Observer,
    netns: str,
    name: str,
    kind: str,
    mtu: int | None,
    mac: str | None,
    master: str | None = None,
    check_master: bool = False,
) -> Callable[[], RowState]:
    """A created link's check: its kind, up, its master (with `check_master`), and the MTU and
    MAC address the topology gives it (one it leaves out is the kernel's to choose)."""

    def how() -> RowState:
        state, detail = status.link_state(netns, name, kind, master, check_master)
        link = status.live.links(netns).get(name)
        if link is None:
            return state, detail
        problems = [detail] if detail else []
        if mtu is not None and link.get("mtu") != mtu:
            problems.append(f"mtu is {link.get('mtu')}, expected {mtu}")
        if mac is not None and link.get("address") != mac:
            problems.append(f"address is {link.get('address')}, expected {mac}")
        return ("different", "; ".join(problems)) if problems else ("present", "")

    return how


class BridgeKind(Kind):
    name = "bridge"
    template = TEMPLATE
    lane = "ip"
    group = "bridges"
    summary = "bridges"
    rows = ("bridge",)
    preflight = ("link_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for name, bridge in spec.bridges.items():
                why = (
                    "A bridge is a virtual switch: every veth end attached to it can reach the "
                    "others, like ports of one Ethernet switch."
                )
                if bridge.mac:
                    why += (
                        f" Its MAC address is fixed at {bridge.mac} (a bridge otherwise takes "
                        "the lowest of its ports', which changes as ports come and go)."
                    )
                if bridge.mtu:
                    why += (
                        f" Its MTU is set to {bridge.mtu}, and stays so (a bridge otherwise "
                        "follows the smallest MTU of its ports)."
                    )
                yield Step(
                    "bridge",
                    f"create bridge {name}{in_(netns)}",
                    why,
                    BridgeArgs(
                        netns,
                        name,
                        *_ipv6_link(ctx, netns, name, bridge.addresses),
                        bridge.mtu,
                        bridge.mac,
                    ),
                    namespace_owner(netns),
                )
                if netns == HOST:
                    yield Precondition("link_absent", TEMPLATE, LinkName(HOST, name))

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, BridgeArgs)
        status.check(
            "bridge", a.netns, a.name, _link_row(status, a.netns, a.name, "bridge", a.mtu, a.mac)
        )

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

    def validate(self, topology: Topology) -> list[Problem]:
        problems = []
        for netns, spec in topology.spaces():
            for name, bridge in spec.bridges.items():
                path = f"{_space_path(netns)}.bridges.{name}"
                problems += _ipv6_mtu(path, bridge.mtu, bridge.addresses)
        return problems

    def deletes_link(self, step: Step) -> str | None:
        assert isinstance(step.args, BridgeArgs)
        return step.args.name if step.args.netns == HOST else None

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        assert isinstance(step.args, BridgeArgs)
        return [(step.args.netns, step.args.name)]


class VethKind(Kind):
    """A veth pair (both ends created where they belong, in one command) and the
    configuration of each end: its bridge, hairpin mode, addresses, up."""

    name = "veth"
    steps = ("veth", "veth_end")
    template = TEMPLATE
    lane = "ip"
    group = "cables"
    summary = "veth ends"
    rows = ("veth", "address")
    preflight = ("link_absent",)
    """(and the addressing family's route_absent and address_absent for its root ends)"""

    def enters_for(self, step: Step) -> bool:
        # the pair is created from the root namespace, each end straight into its namespace
        return step.kind == "veth_end"

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        ends: list[Step] = []
        for netns, spec in ctx.topology.spaces():
            for iface in spec.interfaces:
                near = near_name(netns, iface)
                far = peer_name(netns, iface)
                far_ns = iface.peer.netns
                pair_owner = None if HOST in (netns, far_ns) else Owner("namespace", netns)
                yield Step(
                    "veth",
                    f"create veth pair {near} <-> {far}",
                    f"A veth pair is a virtual cable: what enters {near} ({where(netns)}) comes "
                    f"out of {far} ({where(far_ns)}). Creating both ends where they belong in "
                    "one command leaves no half-made pair behind.",
                    VethArgs(netns, near, far_ns, far),
                    pair_owner,
                )
                for end_ns, end in ((netns, near), (far_ns, far)):
                    if end_ns == HOST:
                        yield Precondition("link_absent", TEMPLATE, LinkName(HOST, end))
                pair = Owner("veth pair", f"{near} <-> {far}")
                ends.append(_end(ctx, netns, near, iface, pair))
                ends.append(_end(ctx, far_ns, far, iface.peer, pair))
                for end_ns, end_addresses in (
                    (netns, iface.addresses),
                    (far_ns, iface.peer.addresses),
                ):
                    if end_ns == HOST:
                        for address in end_addresses:
                            yield from root_address_conditions(address)
        yield from ends

    def observe(self, step: Step, status: Observer) -> None:
        if step.kind != "veth_end":
            return  # the pair is observed through its two ends
        a = step.args
        assert isinstance(a, VethEndArgs)
        status.check(
            "veth",
            a.netns,
            a.dev,
            _link_row(status, a.netns, a.dev, "veth", a.mtu, a.mac, a.bridge, check_master=True),
        )
        for address in a.addresses:
            observe_address(status, a.netns, a.dev, address)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

    def validate(self, topology: Topology) -> list[Problem]:
        problems = []
        for netns, spec in topology.spaces():
            for i, iface in enumerate(spec.interfaces):
                path = f"{_space_path(netns)}.interfaces[{i}]"
                problems += _ipv6_mtu(path, iface.mtu, iface.addresses)
                problems += _ipv6_mtu(f"{path}.peer", iface.peer.mtu, iface.peer.addresses)
        return problems + _bridge_and_mac_problems(topology)

    def deletes_link(self, step: Step) -> str | None:
        if step.kind != "veth":
            return None
        assert isinstance(step.args, VethArgs)
        return step.args.root_end

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        if step.kind != "veth_end":
            return []
        assert isinstance(step.args, VethEndArgs)
        return [(step.args.netns, step.args.dev)]


def _end(ctx: PlanContext, netns: str, dev: str, end: Interface | Peer, pair: Owner) -> Step:
    """The step that configures one end of a veth pair: its MAC address and MTU, its bridge
    (and hairpin mode there), its addresses, up."""
    parts = []
    if end.mac:
        parts.append(f"set {dev} address {end.mac}")
    if end.mtu:
        parts.append(f"set {dev} mtu {end.mtu}")
    if end.bridge:
        parts.append(f"attach {dev} to {end.bridge}")
    if end.addresses:
        parts.append(f"assign {', '.join(end.addresses)} to {dev}")
    parts.append(f"bring {dev} up")
    reasons = []
    if end.mac:
        reasons.append(f"A fixed MAC address, {end.mac}, instead of a random one.")
    if end.mtu:
        reasons.append(f"The MTU, {end.mtu}, is the largest packet {dev} sends in one piece.")
    if end.bridge:
        reasons.append(f"As a port of {end.bridge}, {dev} joins the switch.")
    if end.hairpin:
        reasons.append(
            "Hairpin mode lets frames go back out of the port they came in "
            "on, so the namespace reaches itself through a NAT on the bridge."
        )
    if end.addresses:
        reasons.append(
            f"The address makes {where(netns)} a host on "
            f"{fields.ip_interface(end.addresses[0]).network}."
        )
    reasons.append("A new link is down until it is set up.")
    return Step(
        "veth_end",
        ", ".join(parts) + in_(netns),
        " ".join(reasons),
        VethEndArgs(
            netns,
            dev,
            end.bridge,
            tuple(end.addresses),
            end.hairpin,
            *_ipv6_link(ctx, netns, dev, end.addresses),
            end.mtu,
            end.mac,
        ),
        pair,
    )


class VxlanKind(Kind):
    name = "vxlan"
    template = TEMPLATE
    lane = "ip"
    group = "cables"
    summary = "VXLAN"
    rows = ("vxlan", "address")
    preflight = ("link_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for name, vxlan in spec.vxlans.items():
                over = f" over {vxlan.dev}" if vxlan.dev else ""
                yield Step(
                    "vxlan",
                    f"create vxlan {name} (VNI {vxlan.id}){over}{in_(netns)}",
                    "A VXLAN device carries Ethernet frames inside UDP packets to other hosts "
                    f"(port {vxlan.port}): an overlay network across the underlay"
                    + (f" reached through {vxlan.dev}." if vxlan.dev else ".")
                    + (
                        ""
                        if vxlan.learning
                        else " Learning is off: where each remote MAC lives "
                        "is written into the forwarding database below, as flannel does."
                    )
                    + (
                        f" Its MTU is {vxlan.mtu}: a frame and the {_overhead(vxlan)} bytes "
                        "VXLAN wraps it in must fit in one packet of the underlay."
                        if vxlan.mtu
                        else ""
                    ),
                    VxlanArgs(
                        netns,
                        name,
                        vxlan.id,
                        vxlan.local,
                        vxlan.dev,
                        vxlan.port,
                        vxlan.mac,
                        vxlan.learning,
                        tuple(vxlan.addresses),
                        *_ipv6_link(ctx, netns, name, vxlan.addresses),
                        vxlan.mtu,
                    ),
                    namespace_owner(netns),
                )
                if netns == HOST:
                    yield Precondition("link_absent", TEMPLATE, LinkName(HOST, name))
                    for address in vxlan.addresses:
                        yield from root_address_conditions(address)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, VxlanArgs)
        status.check(
            "vxlan", a.netns, a.name, _link_row(status, a.netns, a.name, "vxlan", a.mtu, a.mac)
        )
        for address in a.addresses:
            observe_address(status, a.netns, a.name, address)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

    def validate(self, topology: Topology) -> list[Problem]:
        """An MTU the underlay cannot carry (the kernel refuses it over `dev`), or too small
        for the device's IPv6 addresses."""
        known = _known_mtus(topology)
        problems = []
        for netns, spec in topology.spaces():
            for name, vxlan in spec.vxlans.items():
                path = f"{_space_path(netns)}.vxlans.{name}"
                under = known.get((netns, vxlan.dev)) if vxlan.dev else None
                overhead = _overhead(vxlan)
                if vxlan.mtu is not None and under is not None and vxlan.mtu > under - overhead:
                    problems.append(
                        Problem(
                            f"{path}.mtu",
                            f"{vxlan.mtu} does not fit in {vxlan.dev}'s MTU of {under} with "
                            f"the {overhead} bytes VXLAN adds to each frame: at most "
                            f"{under - overhead}",
                        )
                    )
                problems += _ipv6_mtu(path, vxlan.mtu, vxlan.addresses)
        return problems

    def deletes_link(self, step: Step) -> str | None:
        assert isinstance(step.args, VxlanArgs)
        return step.args.name if step.args.netns == HOST else None

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        assert isinstance(step.args, VxlanArgs)
        return [(step.args.netns, step.args.name)]
