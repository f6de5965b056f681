"""Checks that relate objects of a topology to each other: references exist, names and addresses
are unique, gateways are reachable. Field syntax was already checked by `nsgen.model`."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from nsgen import fields
from nsgen.errors import Problem
from nsgen.fields import BUILTIN_CHAINS, _check_name
from nsgen.kinds.registry import KINDS
from nsgen.model import HOST, Topology
from nsgen.names import near_name, peer_name

AnyInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


@dataclass
class _Space:
    """What one namespace will hold: interface names (with where they were declared) and subnets."""

    names: dict[str, str] = field(default_factory=dict)
    external: set[str] = field(default_factory=set)
    subnets: list[AnyInterface] = field(default_factory=list)


def _space_path(netns: str) -> str:
    return HOST if netns == HOST else f"namespaces.{netns}"


def check_topology(topology: Topology) -> list[Problem]:
    """Every cross-object problem of a topology, in file order; an empty list means it is usable."""
    problems: list[Problem] = []
    spaces = {netns: _Space() for netns, _ in topology.spaces()}
    specs = dict(topology.spaces())
    for space in spaces.values():
        space.names["lo"] = "the kernel (every namespace has its loopback 'lo')"
    addresses: dict[str, str] = {}

    def claim_name(netns: str, name: str, path: str) -> None:
        space = spaces[netns]
        if name in space.names:
            problems.append(
                Problem(
                    path,
                    f"interface name {name!r} is already used in namespace {netns} "
                    f"(by {space.names[name]})",
                )
            )
        else:
            space.names[name] = path

    def claim_addresses(netns: str, values: list[str], path: str) -> None:
        for k, value in enumerate(values):
            iface = fields.ip_interface(value)
            where = f"{path}.addresses[{k}]"
            ip = str(iface.ip)
            if ip in addresses:
                problems.append(
                    Problem(where, f"address {ip} is already assigned (at {addresses[ip]})")
                )
            else:
                addresses[ip] = where
            if iface.version == 6 and netns in specs and specs[netns].ipv6 is False:
                problems.append(
                    Problem(where, f"{value} is IPv6, but namespace {netns} has ipv6: false")
                )
            if netns in spaces:
                spaces[netns].subnets.append(iface)

    def derived(name: str, path: str) -> bool:
        try:
            _check_name(name, "interface name")
        except ValueError as exc:
            problems.append(Problem(path, f"derived {exc}; set it explicitly"))
            return False
        return True

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
            claim_addresses(netns, bridge.addresses, f"{base}.bridges.{name}")
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
            if derived(near, f"{path}.name"):
                claim_name(netns, near, path)
            claim_addresses(netns, iface.addresses, path)
            far_ns = iface.peer.netns
            if far_ns not in spaces:
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
            if iface.peer.bridge is not None:
                far_spec = specs[far_ns]
                if iface.peer.bridge not in far_spec.bridges:
                    problems.append(
                        Problem(
                            f"{path}.peer.bridge",
                            f"bridge {iface.peer.bridge!r} is not declared "
                            f"in namespace {far_ns} (under {_space_path(far_ns)}.bridges)",
                        )
                    )
            far = peer_name(netns, iface)
            if derived(far, f"{path}.peer.name"):
                claim_name(far_ns, far, f"{path}.peer")
            claim_addresses(far_ns, iface.peer.addresses, f"{path}.peer")

        for name, vxlan in spec.vxlans.items():
            claim_name(netns, name, f"{base}.vxlans.{name}")
            claim_addresses(netns, vxlan.addresses, f"{base}.vxlans.{name}")

    # Pass 2: what refers to names and subnets (routes, NAT, neighbours, rules).
    for netns, spec in topology.spaces():
        base = _space_path(netns)
        space = spaces[netns]
        seen_routes: dict[tuple[int, str], str] = {}
        for j, route in enumerate(spec.routes):
            path = f"{base}.routes[{j}]"
            if route.via is None and route.dev is None:
                problems.append(Problem(path, "a route needs 'via' (a gateway), 'dev', or both"))
                continue
            if route.dev is not None and route.dev not in space.names:
                problems.append(
                    Problem(
                        f"{path}.dev",
                        f"interface {route.dev!r} is not declared in namespace {netns}",
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
                        f"gateway {route.via} and destination "
                        f"{route.to} are of different IP versions",
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
            if route.onlink and route.dev is None:
                problems.append(
                    Problem(
                        f"{path}.onlink",
                        "onlink needs dev (the interface the gateway is directly reachable on)",
                    )
                )
            if route.via is not None and route.dev not in space.external and not route.onlink:
                gateway = fields.ip_address(route.via)
                attached = [s.network for s in space.subnets if s.version == gateway.version]
                if not any(gateway in net for net in attached):
                    listing = ", ".join(sorted({str(n) for n in attached})) or "none"
                    problems.append(
                        Problem(
                            f"{path}.via",
                            f"gateway {route.via} is outside every subnet attached "
                            f"to namespace {netns} (attached: {listing})",
                        )
                    )
        for j, masq in enumerate(spec.masquerade):
            if masq.out not in space.names:
                problems.append(
                    Problem(
                        f"{base}.masquerade[{j}].out",
                        f"interface {masq.out!r} is not declared in namespace {netns}",
                    )
                )
        for name, vxlan in spec.vxlans.items():
            if vxlan.dev is not None and vxlan.dev not in space.names:
                problems.append(
                    Problem(
                        f"{base}.vxlans.{name}.dev",
                        f"interface {vxlan.dev!r} is not declared in namespace {netns}",
                    )
                )
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


def _check_checks(topology: Topology, spaces: dict[str, _Space]) -> list[Problem]:
    problems: list[Problem] = []
    for i, check in enumerate(topology.checks):
        path = f"checks[{i}]"
        if check.from_ not in spaces:
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
            if check.to not in spaces:
                problems.append(
                    Problem(
                        f"{path}.to", f"{check.to!r} is neither an address nor a declared namespace"
                    )
                )
            elif topology.first_address(check.to, check.family) is None:
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
