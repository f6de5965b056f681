"""Checks that relate objects of a topology to each other: references exist, names and addresses
are unique where the kernel needs them to be, subnets do not overlap within a namespace, and
gateways and routes are ones the kernel takes. Field syntax was already checked by
`nsgen.model`.

Each check stands for something the kernel would refuse halfway through a run (`File exists`,
`Nexthop has invalid gateway`, a name it does not take) or would take and then mis-build in
silence (two subnets on two interfaces, of which only one is ever used); it is reported here,
before the first command, as one line naming the field."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from nsgen import fields
from nsgen.checks import UPSTREAM, service_names
from nsgen.errors import Problem
from nsgen.fields import BUILTIN_CHAINS, special_address, subnet_role
from nsgen.kinds.registry import KINDS
from nsgen.model import HOST, Namespace, Route, Topology
from nsgen.names import near_name, peer_name, preferred_peer_name

AnyInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface
AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

Segment = tuple[str, ...]
"""An Ethernet segment: ("bridge", namespace, name), ("veth", namespace, index) for a pair
on no bridge, ("vxlan", vni, port) for an overlay."""


@dataclass(frozen=True)
class _Address:
    """An address as declared: on which interface, at which path, on which segment."""

    iface: AnyInterface
    dev: str
    where: str
    segment: Segment | None
    ip: str
    """The address alone, in its canonical spelling (as fields.IfAddr writes it)."""
    routed: bool
    """Whether it makes a subnet route: a /32 or /128 attaches to no subnet."""


@dataclass
class _Space:
    """What one namespace will hold: interface names (with where they were declared), its
    addresses and the devices they are on."""

    names: dict[str, str] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)
    addresses: list[_Address] = field(default_factory=list)
    by_ip: dict[str, _Address] = field(default_factory=dict)
    """The first declaration of each address (canonical text)."""
    by_subnet: dict[str, _Address] = field(default_factory=dict)
    """The first address of each subnet (canonical text) the namespace is attached to."""
    by_dev: dict[str, list[_Address]] = field(default_factory=dict)

    def add(self, address: _Address) -> None:
        self.addresses.append(address)
        self.by_ip.setdefault(address.ip, address)
        if address.routed:
            self.by_subnet.setdefault(str(address.iface.network), address)
        self.by_dev.setdefault(address.dev, []).append(address)

    def on(self, dev: str) -> list[_Address]:
        return self.by_dev.get(dev, [])


def _space_path(netns: str) -> str:
    return HOST if netns == HOST else f"namespaces.{netns}"


def _where(netns: str) -> str:
    return "the root namespace" if netns == HOST else f"namespace {netns}"


def _segment_text(segment: Segment) -> str:
    kind, *rest = segment
    if kind == "bridge":
        return f"bridge {rest[1]} in {_where(rest[0])}"
    if kind == "vxlan":
        return f"the VXLAN overlay with VNI {rest[0]}"
    return "the two ends of one veth pair"


def _derived_clash(name: str, preferred: str, key: str, netns: str, holder: str) -> str:
    """The message for a derived name that another interface of its namespace has already."""
    short = "" if preferred == name else f" (short for {preferred!r})"
    return (
        f"the derived interface name {name!r}{short} is already used in namespace {netns} "
        f"(by {holder}): set {key} explicitly"
    )


def check_topology(topology: Topology) -> list[Problem]:
    """Every cross-object problem of a topology, in file order; an empty list means it is usable."""
    problems: list[Problem] = []
    spaces = {netns: _Space() for netns, _ in topology.spaces()}
    specs = dict(topology.spaces())
    for space in spaces.values():
        space.names["lo"] = "the kernel (every namespace has its loopback 'lo')"
    on_segment: dict[tuple[Segment, str], str] = {}

    def claim_name(
        netns: str, name: str, path: str, derived: tuple[str, str] | None = None
    ) -> None:
        space = spaces[netns]
        if name in space.names:
            if derived is None:
                problems.append(
                    Problem(
                        path,
                        f"interface name {name!r} is already used in namespace {netns} "
                        f"(by {space.names[name]})",
                    )
                )
                return
            preferred, key = derived
            problems.append(
                Problem(path, _derived_clash(name, preferred, key, netns, space.names[name]))
            )
        else:
            space.names[name] = path

    def claim_addresses(
        netns: str, dev: str, values: list[str], path: str, segment: Segment | None
    ) -> None:
        if netns not in spaces:
            return
        space = spaces[netns]
        for k, value in enumerate(values):
            iface = fields.ip_interface(value)
            where = f"{path}.addresses[{k}]"
            ip = value.rsplit("/", 1)[0]
            mine = space.by_ip.get(ip)
            if mine is not None:
                problems.append(
                    Problem(
                        where,
                        f"address {ip} is already assigned in {_where(netns)} (at {mine.where})",
                    )
                )
            elif segment is not None and (segment, ip) in on_segment:
                problems.append(
                    Problem(
                        where,
                        f"address {ip} is already assigned on the same segment, "
                        f"{_segment_text(segment)} (at {on_segment[(segment, ip)]}): "
                        "two hosts would answer for it",
                    )
                )
            if segment is not None:
                on_segment.setdefault((segment, ip), where)
            if iface.version == 6 and specs[netns].ipv6 is False:
                problems.append(
                    Problem(where, f"{value} is IPv6, but namespace {netns} has ipv6: false")
                )
            routed = iface.network.prefixlen < iface.max_prefixlen
            space.add(_Address(iface, dev, where, segment, ip, routed))

    # Pass 1: names and addresses, namespace by namespace, in file order.
    for netns, spec in topology.spaces():
        base = _space_path(netns)
        if netns == HOST:
            if spec.loopback is not None:
                problems.append(
                    Problem(
                        f"{base}.loopback",
                        "the root namespace's loopback is the machine's own; "
                        "nsgen never changes it",
                    )
                )
            if spec.ipv6 is False:
                problems.append(
                    Problem(
                        f"{base}.ipv6",
                        "the root namespace's IPv6 is the machine's own; nsgen never "
                        "disables it (ipv6: false is for named namespaces)",
                    )
                )
            if spec.dns is not None:
                problems.append(
                    Problem(
                        f"{base}.dns",
                        "the root namespace's /etc/resolv.conf and /etc/hosts are "
                        "the machine's own; declare dns only in named namespaces",
                    )
                )
        elif spec.external:
            problems.append(
                Problem(
                    f"{base}.external",
                    "a namespace nsgen creates starts empty, so it has no "
                    "external interfaces; declare them under host",
                )
            )
        for i, name in enumerate(spec.external):
            claim_name(netns, name, f"{base}.external[{i}]")
            spaces[netns].external.add(name)
        for name, bridge in spec.bridges.items():
            claim_name(netns, name, f"{base}.bridges.{name}")
            claim_addresses(
                netns, name, bridge.addresses, f"{base}.bridges.{name}", ("bridge", netns, name)
            )
        for i, iface in enumerate(spec.interfaces):
            path = f"{base}.interfaces[{i}]"
            if netns == HOST and iface.name is None:
                problems.append(
                    Problem(
                        f"{path}.name", "a veth end in the root namespace needs an explicit name"
                    )
                )
                continue
            near = near_name(netns, iface)
            claim_name(netns, near, path, None if iface.name else (f"veth-{netns}", f"{path}.name"))
            far_ns = iface.peer.netns
            if far_ns not in spaces:
                claim_addresses(netns, near, iface.addresses, path, None)
                problems.append(
                    Problem(f"{path}.peer.netns", f"namespace {far_ns!r} is not declared")
                )
                continue
            if iface.peer.hairpin and iface.peer.bridge is None:
                problems.append(
                    Problem(
                        f"{path}.peer.hairpin",
                        "hairpin is a bridge port setting: it needs peer.bridge",
                    )
                )
            segment: Segment | None = ("veth", netns, str(i))
            if iface.peer.bridge is not None:
                segment = ("bridge", far_ns, iface.peer.bridge)
                if iface.peer.bridge not in specs[far_ns].bridges:
                    segment = None
                    problems.append(
                        Problem(
                            f"{path}.peer.bridge",
                            f"bridge {iface.peer.bridge!r} is not declared "
                            f"in namespace {far_ns} (under {_space_path(far_ns)}.bridges)",
                        )
                    )
            far = peer_name(netns, iface)
            derived = (preferred_peer_name(netns, iface), f"{path}.peer.name")
            claim_name(far_ns, far, f"{path}.peer", None if iface.peer.name else derived)
            claim_addresses(netns, near, iface.addresses, path, segment)
            claim_addresses(far_ns, far, iface.peer.addresses, f"{path}.peer", segment)

        for name, vxlan in spec.vxlans.items():
            claim_name(netns, name, f"{base}.vxlans.{name}")
            claim_addresses(
                netns,
                name,
                vxlan.addresses,
                f"{base}.vxlans.{name}",
                ("vxlan", str(vxlan.id), str(vxlan.port)),
            )

    for netns, _ in topology.spaces():
        problems.extend(_overlaps(netns, spaces[netns]))

    # Pass 2: what refers to names and subnets (routes, NAT, neighbours, rules).
    for netns, spec in topology.spaces():
        base = _space_path(netns)
        space = spaces[netns]
        problems.extend(_route_problems(netns, spec, spaces))
        for j, masq in enumerate(spec.masquerade):
            if masq.out not in space.names:
                problems.append(
                    Problem(
                        f"{base}.masquerade[{j}].out",
                        f"interface {masq.out!r} is not declared in namespace {netns}",
                    )
                )
        problems.extend(_vxlan_problems(netns, spec, space))
        devices = [("neighbors", j, n.dev) for j, n in enumerate(spec.neighbors)]
        devices += [("fdb", j, f.dev) for j, f in enumerate(spec.fdb)]
        for field_name, j, dev in devices:
            if dev not in space.names:
                problems.append(
                    Problem(
                        f"{base}.{field_name}[{j}].dev",
                        f"interface {dev!r} is not declared in namespace {netns}",
                    )
                )
        declared: dict[tuple[str, str], str] = {}
        for j, chain in enumerate(spec.iptables.chains):
            where = f"{base}.iptables.chains[{j}]"
            if chain.name in BUILTIN_CHAINS[chain.table]:
                problems.append(
                    Problem(
                        f"{where}.name",
                        f"{chain.name} is a built-in chain of the {chain.table} table",
                    )
                )
            elif (chain.table, chain.name) in declared:
                problems.append(
                    Problem(
                        f"{where}.name",
                        f"chain {chain.name} of table "
                        f"{chain.table} is already declared (at "
                        f"{declared[(chain.table, chain.name)]})",
                    )
                )
            else:
                declared[(chain.table, chain.name)] = where
        for j, rule in enumerate(spec.iptables.rules):
            if (
                rule.chain not in BUILTIN_CHAINS[rule.table]
                and (rule.table, rule.chain) not in declared
            ):
                problems.append(
                    Problem(
                        f"{base}.iptables.rules[{j}].chain",
                        f"chain "
                        f"{rule.chain} is neither built into the {rule.table} "
                        "table nor declared under iptables.chains",
                    )
                )
        seen_masq: dict[tuple[str, str], str] = {}
        for j, masq in enumerate(spec.masquerade):
            key2 = (masq.source, masq.out)
            if key2 in seen_masq:
                problems.append(
                    Problem(
                        f"{base}.masquerade[{j}]",
                        f"the same rule is already declared (at {seen_masq[key2]})",
                    )
                )
            seen_masq[key2] = f"{base}.masquerade[{j}]"
    problems.extend(_check_checks(topology, spaces))
    for kind in KINDS:
        problems.extend(kind.validate(topology))
    return problems


def _overlaps(netns: str, space: _Space) -> list[Problem]:
    """Subnets of one namespace that overlap on two different interfaces: the kernel takes both
    addresses, but reaches the shared range through one interface only. Host addresses (/32,
    /128) make no subnet route and overlap nothing. Sorted by network, so the check is
    n log n for the thousand addresses of a big root namespace."""
    problems: list[Problem] = []
    order = {a.where: n for n, a in enumerate(space.addresses)}
    if len(space.addresses) < 2:
        return []
    routed = [a for a in space.addresses if a.routed]
    routed.sort(
        key=lambda a: (
            a.iface.version,
            int(a.iface.network.network_address),
            a.iface.network.prefixlen,
            order[a.where],
        )
    )
    reported: set[str] = set()
    open_blocks: list[_Address] = []
    for address in routed:
        net = address.iface.network
        while open_blocks and (
            open_blocks[-1].iface.version != address.iface.version
            or int(open_blocks[-1].iface.network.broadcast_address) < int(net.network_address)
        ):
            open_blocks.pop()
        other = next((o for o in reversed(open_blocks) if o.dev != address.dev), None)
        if other is not None:
            first, second = sorted((other, address), key=lambda a: order[a.where])
            if second.where not in reported:
                reported.add(second.where)
                problems.append(
                    Problem(
                        second.where,
                        f"its subnet {second.iface.network} overlaps {first.iface.network} of "
                        f"{first.dev} (at {first.where}) in {_where(netns)}: the kernel would "
                        "reach the shared addresses through one of the two interfaces only",
                    )
                )
        open_blocks.append(address)
    return sorted(problems, key=lambda p: order[p.path])


def _route_problems(netns: str, spec: Namespace, spaces: dict[str, _Space]) -> list[Problem]:
    problems: list[Problem] = []
    space = spaces[netns]
    base = _space_path(netns)
    seen_routes: dict[tuple[int, str], str] = {}
    for j, route in enumerate(spec.routes):
        path = f"{base}.routes[{j}]"
        if route.via is None and route.dev is None:
            problems.append(Problem(path, "a route needs 'via' (a gateway), 'dev', or both"))
            continue
        if route.dev is not None and route.dev not in space.names:
            elsewhere = [
                other for other, s in spaces.items() if other != netns and route.dev in s.names
            ]
            hint = (
                f" (it is an interface of {_where(elsewhere[0])}: a route leaves through an "
                "interface of its own namespace)"
                if elsewhere
                else ""
            )
            problems.append(
                Problem(
                    f"{path}.dev",
                    f"interface {route.dev!r} is not declared in namespace {netns}{hint}",
                )
            )
        family = 6 if ":" in (route.via or route.to) else 4
        if family == 6 and spec.ipv6 is False:
            problems.append(
                Problem(
                    f"{path}.{'via' if route.via else 'to'}",
                    f"an IPv6 route, but namespace {netns} has ipv6: false",
                )
            )
            continue
        if (
            route.to != "default"
            and route.via is not None
            and fields.ip_network(route.to).version != fields.ip_address(route.via).version
        ):
            problems.append(
                Problem(
                    f"{path}.via",
                    f"gateway {route.via} and destination {route.to} are of different IP versions",
                )
            )
            continue
        key = (family, "default" if route.to in ("0.0.0.0/0", "::/0") else route.to)
        if key in seen_routes:
            problems.append(
                Problem(
                    f"{path}.to",
                    f"a route to {route.to} is already declared (at {seen_routes[key]})",
                )
            )
        else:
            seen_routes[key] = path
        if route.to != "default":
            destination = fields.ip_network(route.to)
            connected = space.by_subnet.get(route.to)
            if connected is not None:
                consequence = (
                    "the kernel refuses a second route to it ('File exists')"
                    if destination.version == 4
                    else "the kernel's own route to it would always win over this one"
                )
                problems.append(
                    Problem(
                        f"{path}.to",
                        f"{route.to} is the subnet of {connected.dev}'s address "
                        f"{connected.iface} (at {connected.where}), which the kernel routes "
                        f"already: {consequence}",
                    )
                )
        if route.onlink and route.dev is None:
            problems.append(
                Problem(
                    f"{path}.onlink",
                    "onlink needs dev (the interface the gateway is directly reachable on)",
                )
            )
        if route.via is not None:
            problems.extend(_gateway_problems(netns, space, route, f"{path}.via"))
    return problems


def _gateway_problems(netns: str, space: _Space, route: Route, path: str) -> list[Problem]:
    """What the kernel refuses, or takes and then cannot use, as a route's gateway."""
    assert route.via is not None
    gateway = fields.ip_address(route.via)
    special = special_address(gateway)
    if special:
        return [Problem(path, f"gateway {route.via} is {special}: a gateway is a host address")]
    own = space.by_ip.get(route.via)
    if own is not None:
        return [
            Problem(
                path,
                f"gateway {route.via} is an address of {_where(netns)} itself (at "
                f"{own.where}): a gateway is the next hop, another host",
            )
        ]
    if route.onlink or route.dev in space.external:
        return []
    if route.dev is not None and route.dev in space.names:
        candidates = [a for a in space.on(route.dev) if a.iface.version == gateway.version]
        scope = f"on {route.dev}"
    else:
        candidates = [a for a in space.addresses if a.iface.version == gateway.version]
        scope = f"attached to namespace {netns}"
    inside = next((a for a in candidates if gateway in a.iface.network), None)
    if inside is None:
        listing = ", ".join(sorted({str(a.iface.network) for a in candidates})) or "none"
        return [
            Problem(
                path,
                f"gateway {route.via} is outside every subnet {scope} (attached: {listing})",
            )
        ]
    role = subnet_role(gateway, inside.iface.network)
    if role:
        return [
            Problem(
                path,
                f"gateway {route.via} is the {role} address of {inside.iface.network} (at "
                f"{inside.where}), not a host",
            )
        ]
    return []


def _vxlan_problems(netns: str, spec: Namespace, space: _Space) -> list[Problem]:
    problems: list[Problem] = []
    base = _space_path(netns)
    vnis: dict[tuple[int, int, int], str] = {}
    for name, vxlan in spec.vxlans.items():
        where = f"{base}.vxlans.{name}"
        if vxlan.dev is not None and vxlan.dev not in space.names:
            problems.append(
                Problem(
                    f"{where}.dev",
                    f"interface {vxlan.dev!r} is not declared in namespace {netns}",
                )
            )
        # the kernel keeps one UDP socket per port and family: an IPv4 and an IPv6 device may
        # share a VNI and port (flannel's flannel.1 and flannel-v6.1 do)
        family = 6 if vxlan.local is not None and ":" in vxlan.local else 4
        key = (vxlan.id, vxlan.port, family)
        if key in vnis:
            problems.append(
                Problem(
                    f"{where}.id",
                    f"VNI {vxlan.id} on UDP port {vxlan.port} is already the VXLAN {vnis[key]}'s "
                    f"in {_where(netns)}: the kernel refuses a second device for it",
                )
            )
        else:
            vnis[key] = name
        if vxlan.local is not None and netns != HOST and vxlan.local not in space.by_ip:
            problems.append(
                Problem(
                    f"{where}.local",
                    f"{vxlan.local} is not an address of {_where(netns)}: the tunnel's "
                    "packets would leave from an address it does not have",
                )
            )
    return problems


def _check_checks(topology: Topology, spaces: dict[str, _Space]) -> list[Problem]:
    problems: list[Problem] = []
    for i, check in enumerate(topology.checks):
        path = f"checks[{i}]"
        if check.from_ not in spaces and check.from_ != UPSTREAM:
            problems.append(Problem(f"{path}.from", f"namespace {check.from_!r} is not declared"))
        if check.kind == "dns":
            if check.name is None:
                problems.append(Problem(f"{path}.name", "a dns check needs the name to resolve"))
            for key, value in (("to", check.to), ("port", check.port)):
                if value is not None:
                    problems.append(Problem(f"{path}.{key}", f"a dns check has no {key}"))
            continue
        if check.name is not None:
            problems.append(Problem(f"{path}.name", "only dns checks have a name"))
        if check.to is None:
            problems.append(Problem(f"{path}.to", "required: an address or a namespace's name"))
            continue
        is_address = True
        try:
            version = fields.ip_address(check.to).version
        except ValueError:
            is_address = False
        if is_address and check.family not in (None, version):
            problems.append(
                Problem(
                    f"{path}.family",
                    f"is {check.family}, but {check.to} is an IPv{version} address",
                )
            )
        if not is_address:
            if check.to not in spaces and check.to not in service_names(topology):
                problems.append(
                    Problem(
                        f"{path}.to",
                        f"{check.to!r} is neither an address, a declared namespace nor a Service",
                    )
                )
            elif check.to in spaces and topology.first_address(check.to, check.family) is None:
                family = f"IPv{check.family} " if check.family else ""
                problems.append(
                    Problem(
                        f"{path}.to",
                        f"namespace {check.to} has no {family}address to check against",
                    )
                )
        if check.kind == "tcp" and check.port is None:
            problems.append(Problem(f"{path}.port", "a tcp check needs a port"))
        if check.kind == "ping" and check.port is not None:
            problems.append(Problem(f"{path}.port", "a ping check has no port"))
        if check.listen:
            if check.kind != "tcp":
                problems.append(Problem(f"{path}.listen", "only tcp checks start a listener"))
            elif is_address:
                problems.append(
                    Problem(
                        f"{path}.listen",
                        "to start a listener, 'to' must name the namespace to listen in",
                    )
                )
    return problems
