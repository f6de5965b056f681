"""Links: external interfaces (used, never created), bridges, veth pairs and their ends, and
VXLAN devices.

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
from typing import TYPE_CHECKING, Any

from nsgen import fields
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
    from nsgen.model import Topology
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/links.j2"


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
                yield Step(
                    "bridge",
                    f"create bridge {name}{in_(netns)}",
                    "A bridge is a virtual switch: every veth end attached to it can reach the "
                    "others, like ports of one Ethernet switch.",
                    BridgeArgs(netns, name, *_ipv6_link(ctx, netns, name, bridge.addresses)),
                    namespace_owner(netns),
                )
                if netns == HOST:
                    yield Precondition("link_absent", TEMPLATE, LinkName(HOST, name))

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, BridgeArgs)
        status.check(
            "bridge", a.netns, a.name, lambda: status.link_state(a.netns, a.name, "bridge")
        )

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

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
                ends.append(_end(ctx, netns, near, None, iface.addresses, False, pair))
                ends.append(
                    _end(
                        ctx,
                        far_ns,
                        far,
                        iface.peer.bridge,
                        iface.peer.addresses,
                        iface.peer.hairpin,
                        pair,
                    )
                )
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
            lambda: status.link_state(a.netns, a.dev, "veth", a.bridge, check_master=True),
        )
        for address in a.addresses:
            observe_address(status, a.netns, a.dev, address)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

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


def _end(
    ctx: PlanContext,
    netns: str,
    dev: str,
    master: str | None,
    addresses: list[str],
    hairpin: bool,
    pair: Owner,
) -> Step:
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
            f"The address makes {where(netns)} a host on "
            f"{fields.ip_interface(addresses[0]).network}."
        )
    reasons.append("A new link is down until it is set up.")
    return Step(
        "veth_end",
        ", ".join(parts) + in_(netns),
        " ".join(reasons),
        VethEndArgs(
            netns, dev, master, tuple(addresses), hairpin, *_ipv6_link(ctx, netns, dev, addresses)
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
        status.check("vxlan", a.netns, a.name, lambda: status.link_state(a.netns, a.name, "vxlan"))
        for address in a.addresses:
            observe_address(status, a.netns, a.name, address)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)

    def deletes_link(self, step: Step) -> str | None:
        assert isinstance(step.args, VxlanArgs)
        return step.args.name if step.args.netns == HOST else None

    def declared_links(self, step: Step) -> list[tuple[str, str]]:
        assert isinstance(step.args, VxlanArgs)
        return [(step.args.netns, step.args.name)]
