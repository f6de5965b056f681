"""Addressing and forwarding: addresses on bridges, routes, permanent neighbour (ARP)
entries and bridge forwarding-database entries that send frames through a VXLAN tunnel.

(A veth end's or a VXLAN device's own addresses are set in the step that configures it; they
are observed here, by `observe_address`.)"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nsgen import fields
from nsgen.fields import HOST
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

if TYPE_CHECKING:
    from nsgen.live import LiveState
    from nsgen.model import Namespace
    from nsgen.status import Observer, RowState

TEMPLATE = "kinds/addressing.j2"


@dataclass(frozen=True)
class AddressArgs(Args):
    dev: str
    address: str


@dataclass(frozen=True)
class RouteAbsent(Args):
    """No route to `to` (a subnet, or default) of that family in the root namespace's main
    table yet (preflight)."""

    to: str
    family: int


@dataclass(frozen=True)
class AddressAbsent(Args):
    """No link of the root namespace holds `address` (an IP without prefix) yet."""

    address: str


def root_address_conditions(address: str) -> list[Precondition]:
    """Preflight for an address nsgen assigns in the root namespace: neither its subnet's
    route nor the address itself may exist already."""
    iface = fields.ip_interface(address)
    return [
        Precondition(
            "route_absent", TEMPLATE, RouteAbsent(HOST, str(iface.network), iface.version)
        ),
        Precondition("address_absent", TEMPLATE, AddressAbsent(HOST, str(iface.ip))),
    ]


@dataclass(frozen=True)
class RouteArgs(Args):
    to: str
    via: str | None
    dev: str | None
    onlink: bool
    family: int


@dataclass(frozen=True)
class NeighborArgs(Args):
    dev: str
    address: str
    lladdr: str


@dataclass(frozen=True)
class FdbArgs(Args):
    dev: str
    lladdr: str
    dst: str


def _owned_link(spec: Namespace, dev: str) -> Owner | None:
    """The link that takes an entry on `dev` with it, if nsgen creates that link."""
    if dev in spec.vxlans:
        return Owner("vxlan", dev)
    if dev in spec.bridges:
        return Owner("bridge", dev)
    return None


def _iface(text: str) -> ipaddress.IPv4Interface | ipaddress.IPv6Interface:
    return ipaddress.ip_interface(text)


def _canonical(text: object) -> str:
    """An address in the model's spelling (`ip` may abbreviate IPv6 differently)."""
    try:
        return str(ipaddress.ip_address(str(text)))
    except ValueError:
        return str(text)


def observe_address(status: Observer, netns: str, dev: str, address: str) -> None:
    """A row for one address of a link: present, on another link, with another prefix, or
    missing."""

    def how() -> RowState:
        want = _iface(address)
        links = status.live.links(netns)
        found: list[tuple[str, ipaddress.IPv4Interface | ipaddress.IPv6Interface]] = []
        for ifname, link in links.items():
            for info in link.get("addr_info", []):
                try:
                    found.append((ifname, _iface(f"{info['local']}/{info['prefixlen']}")))
                except (KeyError, ValueError):
                    continue
        if (dev, want) in found:
            return "present", ""
        same_ip = [(ifname, iface) for ifname, iface in found if iface.ip == want.ip]
        for ifname, iface in same_ip:
            if ifname == dev:
                return "different", (
                    f"prefix is /{iface.network.prefixlen}, expected /{want.network.prefixlen}"
                )
        if same_ip:
            return "different", f"on {same_ip[0][0]}, expected on {dev}"
        if dev not in links:
            return "missing", f"no link {dev}"
        return "missing", ""

    status.check("address", netns, f"{address} dev {dev}", how)


def _link_snapshot(live: LiveState, netns: str) -> dict[str, Any]:
    return {"link": live.link_list(netns), "addr": live.addr_list(netns)}


class AddressKind(Kind):
    """An address on a bridge nsgen creates (veth ends and VXLAN devices get theirs in the
    step that configures them)."""

    name = "address"
    template = TEMPLATE
    lane = "ip"
    group = "bridges"
    summary = "addresses"
    rows = ("address",)
    preflight = ("route_absent", "address_absent")

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for name, bridge in spec.bridges.items():
                for address in bridge.addresses:
                    network = fields.ip_interface(address).network
                    yield Step(
                        "address",
                        f"assign {address} to bridge {name}",
                        f"With an address on {name}, {where(netns)} is a member of "
                        f"{network} and can be the gateway of everything attached to the "
                        "bridge.",
                        AddressArgs(netns, name, address),
                        Owner("bridge", name),
                    )
                    if netns == HOST:
                        yield from root_address_conditions(address)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, AddressArgs)
        observe_address(status, a.netns, a.dev, a.address)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return _link_snapshot(live, netns)


def _route_dst(text: str) -> str:
    if text == "default":
        return text
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        return text


class RouteKind(Kind):
    name = "route"
    template = TEMPLATE
    lane = "ip"
    group = "routes"
    summary = "routes"
    rows = ("route",)
    preflight = ("route_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
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
                yield Step(
                    "route",
                    f"add {target} {how}{in_(netns)}",
                    (
                        "Packets for any address without a more specific route go to the gateway."
                        if route.to == "default"
                        else f"Packets for {route.to} go through the gateway instead of being "
                        "dropped as unreachable."
                    ),
                    RouteArgs(
                        netns,
                        route.to,
                        route.via,
                        route.dev,
                        route.onlink,
                        6 if ":" in (route.via or route.to) else 4,
                    ),
                    namespace_owner(netns),
                )
                if netns == HOST:
                    family = 6 if ":" in (route.via or route.to) else 4
                    yield Precondition(
                        "route_absent", TEMPLATE, RouteAbsent(HOST, route.to, family)
                    )

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, RouteArgs)

        def how() -> RowState:
            candidates = [
                r
                for r in status.live.routes(a.netns, a.family)
                if _route_dst(str(r.get("dst", ""))) == a.to
            ]
            if not candidates:
                return "missing", ""
            first: list[str] | None = None
            for route in candidates:
                problems = []
                kind = route.get("type", "unicast")
                if kind != "unicast":
                    problems.append(f"type is {kind}")
                gateway = route.get("gateway")
                if a.via is not None and (gateway is None or _canonical(gateway) != a.via):
                    problems.append(f"via {gateway or 'no gateway'}, expected via {a.via}")
                if a.via is None and gateway is not None:
                    problems.append(f"via {gateway}, expected no gateway")
                if a.dev is not None and route.get("dev") != a.dev:
                    problems.append(f"dev {route.get('dev')}, expected dev {a.dev}")
                if not problems:
                    return "present", ""
                first = first or problems
            return "different", "; ".join(first or [])

        name = " ".join(
            [a.to, *(["via", a.via] if a.via else []), *(["dev", a.dev] if a.dev else [])]
        )
        status.check("route", a.netns, name, how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"route4": live.route_tables(netns, 4), "route6": live.route_tables(netns, 6)}


class NeighborKind(Kind):
    name = "neighbor"
    template = TEMPLATE
    lane = "ip"
    group = "routes"
    summary = "neighbours"
    rows = ("neighbor",)
    preflight = ("neighbor_absent",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for neighbor in spec.neighbors:
                yield Step(
                    "neighbor",
                    f"add neighbour {neighbor.address} at {neighbor.lladdr} on {neighbor.dev}"
                    f"{in_(netns)}",
                    f"A permanent ARP entry: {neighbor.address} is answered from this table, "
                    "with no ARP request on the wire.",
                    args := NeighborArgs(netns, neighbor.dev, neighbor.address, neighbor.lladdr),
                    namespace_owner(netns) or _owned_link(spec, neighbor.dev),
                )
                if netns == HOST and neighbor.dev in spec.external:
                    yield Precondition("neighbor_absent", TEMPLATE, args)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, NeighborArgs)

        def how() -> RowState:
            for entry in status.live.neighbours(a.netns):
                if _canonical(entry.get("dst")) != a.address or entry.get("dev") != a.dev:
                    continue
                problems = []
                if str(entry.get("lladdr", "")).lower() != a.lladdr:
                    problems.append(f"lladdr {entry.get('lladdr') or 'none'}, expected {a.lladdr}")
                if "PERMANENT" not in entry.get("state", []):
                    problems.append("not permanent")
                return ("different", "; ".join(problems)) if problems else ("present", "")
            return "missing", ""

        status.check("neighbor", a.netns, f"{a.address} lladdr {a.lladdr} dev {a.dev}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"neigh": live.permanent_neighbours(netns)}


class FdbKind(Kind):
    name = "fdb"
    template = TEMPLATE
    lane = "bridge"
    group = "routes"
    summary = "FDB entries"
    rows = ("fdb",)
    preflight = ("fdb_absent",)
    tools = ("bridge",)

    def plan(self, ctx: PlanContext) -> Iterator[Planned]:
        for netns, spec in ctx.topology.spaces():
            for entry in spec.fdb:
                yield Step(
                    "fdb",
                    f"forward {entry.lladdr} on {entry.dev} to {entry.dst}{in_(netns)}",
                    f"Frames for {entry.lladdr} are sent through the tunnel to the host at "
                    f"{entry.dst}.",
                    args := FdbArgs(netns, entry.dev, entry.lladdr, entry.dst),
                    namespace_owner(netns) or _owned_link(spec, entry.dev),
                )
                if netns == HOST and entry.dev in spec.external:
                    yield Precondition("fdb_absent", TEMPLATE, args)

    def observe(self, step: Step, status: Observer) -> None:
        a = step.args
        assert isinstance(a, FdbArgs)

        def how() -> RowState:
            for entry in status.live.fdb(a.netns):
                if str(entry.get("mac", "")).lower() != a.lladdr or entry.get("ifname") != a.dev:
                    continue
                if _canonical(entry.get("dst")) == a.dst:
                    return "present", ""
            return "missing", ""

        status.check("fdb", a.netns, f"{a.lladdr} dev {a.dev} dst {a.dst}", how)

    def snapshot(self, live: LiveState, netns: str) -> dict[str, Any]:
        return {"fdb": live.tunnel_fdb(netns)}
