"""Docker-style vocabulary: `networks:` (user-defined bridge networks) and `containers:`.

Each piece becomes plain core objects, the way Docker's bridge driver builds them:

  network            a host bridge (docker0 / br-<id>) holding the gateway address
  container          a namespace, one veth pair per network (eth0, eth1, ... inside; the
                     host end 'veth' + 7 hex digits, a port of the network's bridge), a default
                     route via the gateway of its first non-internal network
  name resolution    /etc/netns/<container>/hosts: every container it shares a network with
                     (what Docker's embedded DNS server answers); resolv.conf: --dns servers
  isolation, icc,    DROP rules in per-network chains (forward-in__<bridge>, forward-out__
  internal           <bridge>) that the filter chain NSGEN-<topology>-FWD, jumped to from
                     FORWARD, dispatches to by bridge name (Docker 29's nftables layout;
                     iptables writes them into NSGEN-<topology>-FWD: Docker's
                     DOCKER-ISOLATION-STAGE-* and icc rules)
  masquerade         nat POSTROUTING -s SUBNET ! -o BRIDGE -j MASQUERADE
  publish            DNAT rules in the nat chain NSGEN-<topology>-DNAT, jumped to from
                     PREROUTING and OUTPUT for local destinations (Docker's DOCKER chain, with
                     docker-proxy's job done by the kernel), plus a hairpin MASQUERADE
  ipv6: true         the same in the second family (ip6tables, or the same inet table): an
                     IPv6 subnet (a ULA /64 derived from the topology's name when none is
                     given, as Docker 27 derives one from its host ID), a second address per
                     container, NAT66, and with gateway_mode_ipv6: routed no NAT but a filter
                     in forward-in__<bridge> that opens only published container ports to
                     direct routing (Docker's routed mode)

See docs/docker.md for every key. `expand` follows the contract in `nsgen.expand`.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from nsgen.errors import Problem
from nsgen.fields import (
    HOST,
    IfName,
    IpAddr,
    NsName,
    Strict,
    Subnet,
    shown,
)
from nsgen.messages import format_path, pydantic_problems
from nsgen.model import EXPANDED, Group, Topology
from nsgen.names import fitted, near_name, peer_name, short_name

KEYS = ("networks", "containers")

DEFAULT_NETWORK = "bridge"
"""The network a container joins when it names none, and whose bridge is called docker0."""

EMBEDDED_DNS = "127.0.0.11"
"""Where Docker's embedded DNS server listens in a container: the default nameserver."""

CHAIN_LIMIT = 28
"""Longest iptables chain name the core accepts (nsgen.fields.ChainName)."""

_NETWORK_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_LABEL_RE = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?")
_PUBLISH_RE = re.compile(
    r"(?:(?P<ip>[0-9.]{1,15}|\[[0-9A-Fa-f:.]{2,45}\]):)?(?P<published>[0-9]{1,5}):(?P<target>[0-9]{1,5})"
    r"(?:/(?P<protocol>[a-z]{1,8}))?"
)
_PUBLISH_FORM = (
    "HOST_PORT:CONTAINER_PORT[/tcp|udp] or HOST_IP:HOST_PORT:CONTAINER_PORT[/...] "
    "(an IPv6 HOST_IP in brackets)"
)

ULA_BASE = ipaddress.IPv6Network("fd00::/8")
"""Where the IPv6 subnets nsgen picks come from: unique local addresses (RFC 4193)."""


# ---- the vocabulary ----------------------------------------------------------------------


def _network_name(value: str) -> str:
    if not _NETWORK_RE.fullmatch(value) or len(value) > 64:
        raise ValueError(
            f"{shown(value)} is not a valid network name: 1 to 64 letters, digits, "
            "'_', '-', '.', starting with a letter or digit"
        )
    return value


def _container_host_name(value: str) -> str:
    labels = value.rstrip(".").split(".")
    if not all(_LABEL_RE.fullmatch(label) and len(label) <= 63 for label in labels):
        raise ValueError(
            f"{shown(value)} cannot be a container name: the other containers resolve it "
            "as a host name, so use letters, digits and '-' (no '_'; '.' only "
            "between labels)"
        )
    return value


NetworkName = Annotated[str, AfterValidator(_network_name)]
ContainerName = Annotated[NsName, AfterValidator(_container_host_name)]
Port = Annotated[int, Field(ge=1, le=65535)]


class Network(Strict):
    """A user-defined bridge network (`docker network create --subnet ...`)."""

    subnet: Subnet = Field(description="IPv4 subnet of the network, e.g. 172.18.0.0/24.")
    gateway: IpAddr | None = Field(
        None, description="The host's address on the bridge. Default: the first host address."
    )
    bridge: IfName | None = Field(
        None,
        description="Name of the host bridge. Default: docker0 for the network named "
        "'bridge', else br-<network>.",
    )
    masquerade: bool | None = Field(
        None,
        description="Source-NAT traffic leaving the host from this subnet. Default: true "
        "(false for internal networks, where true is an error).",
    )
    internal: bool = Field(
        False,
        description="No way out: no default route, no NAT, nothing forwarded between "
        "this bridge and any other interface.",
    )
    icc: bool = Field(True, description="Inter-container communication on this network.")
    ipv6: bool = Field(
        False, description="Dual stack (docker network create --ipv6): an IPv6 subnet too."
    )
    ipv6_subnet: Subnet | None = Field(
        None,
        description="IPv6 subnet (needs ipv6: true). Default: a /64 of a unique local /48 "
        "derived from the topology's name, the next free one in network order (as Docker 27 "
        "derives one from its host ID).",
    )
    ipv6_gateway: IpAddr | None = Field(
        None, description="The host's IPv6 address on the bridge. Default: the subnet's ::1."
    )
    gateway_mode_ipv6: Literal["nat", "routed"] = Field(
        "nat",
        description="nat: NAT66 out, published ports DNATed from the host's addresses "
        "(Docker's default). routed: no NAT; the containers' addresses are routed, and only "
        "published container ports (and ICMPv6) are open to direct routing "
        "(com.docker.network.bridge.gateway_mode_ipv6).",
    )


class Attachment(Strict):
    """How a container joins one network (the long form of `networks:`)."""

    address: IpAddr | None = Field(
        None, description="The container's address on the network. Default: the next free one."
    )
    ipv6_address: IpAddr | None = Field(
        None,
        description="Its IPv6 address (an ipv6: true network). Default: the next free one.",
    )


class PortLong(Strict):
    """A published port in Compose's long syntax."""

    target: Port = Field(description="Port inside the container.")
    published: Port = Field(description="Port on the host.")
    protocol: Literal["tcp", "udp"] = "tcp"
    host_ip: IpAddr | None = Field(
        None,
        description="Publish on this host address only (of one family, which then is the "
        "only one published). Default: every local address of both families.",
    )


PublishText = Annotated[
    str,
    Field(pattern=r"^([0-9.]{1,15}:|\[[0-9A-Fa-f:.]{2,45}\]:)?[0-9]{1,5}:[0-9]{1,5}(/(tcp|udp))?$"),
]


class Container(Strict):
    """A container: a namespace on one or more networks."""

    networks: list[NetworkName] | dict[NetworkName, Attachment | None] = Field(
        default_factory=lambda: [DEFAULT_NETWORK],
        description="List of network names, or a mapping name: {address: ...}; the container "
        "gets eth0, eth1, ... in this order. Default: [bridge].",
    )
    publish: list[PublishText | PortLong] = Field(
        default_factory=list,
        description="Published ports: 'HOST_PORT:CONTAINER_PORT[/tcp|udp]' "
        "strings (optionally 'HOST_IP:' first) or {published, target, protocol, host_ip}.",
    )
    dns: list[IpAddr] = Field(
        default_factory=lambda: [EMBEDDED_DNS],
        description="Nameservers of the container's resolv.conf (docker run --dns). Default: "
        f"{EMBEDDED_DNS}, Docker's embedded DNS address, where nothing answers here: container "
        "names come from /etc/hosts, other names fail at once.",
    )


class _LooseContainer(Container):
    """Container with the two-form keys left open: `_container_networks` and `_publish_entry`
    check each form on its own, so that error paths stay the file's (a union would add the
    name of every form it tried to each path)."""

    networks: Any = Field(default_factory=lambda: [DEFAULT_NETWORK])
    publish: list[Any] = Field(default_factory=list)


class Sugar(Strict):
    """The keys this module owns, as one model: for a JSON schema of the file format. `expand`
    checks them entry by entry."""

    networks: dict[NetworkName, Network] = Field(
        default_factory=dict, description="Docker-style bridge networks, by name."
    )
    containers: dict[ContainerName, Container] = Field(
        default_factory=dict, description="Docker-style containers (namespaces), by name."
    )


# ---- validation with file paths --------------------------------------------------------------


SCHEMA_MODEL = Sugar
"""For `nsgen schema`: the model whose fields are this expander's KEYS."""


def _validate(tp: Any, value: Any, prefix: tuple[int | str, ...], problems: list[Problem]) -> Any:
    """TypeAdapter(tp).validate_python(value), or None with the problems (paths under prefix)
    appended; unknown keys get a did-you-mean or the known keys as a hint."""
    try:
        return TypeAdapter(tp).validate_python(value)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, prefix, tp))
        return None


def _parse(sugar: dict[str, Any], problems: list[Problem]) -> tuple[Sugar, list[str]]:
    """The sugar, one network and one container at a time, so that one bad entry does not hide
    the others' problems; and every network name the file declares, valid or not."""
    found: dict[str, dict[str, Any]] = {"networks": {}, "containers": {}}
    declared: list[str] = []
    kinds: dict[str, tuple[Any, type[Strict]]] = {
        "networks": (NetworkName, Network),
        "containers": (ContainerName, _LooseContainer),
    }
    for key, (name_type, model) in kinds.items():
        value = sugar.get(key, {})
        if not isinstance(value, dict):
            problems.append(Problem(key, f"expected a mapping (name: ...), got {shown(value)}"))
            continue
        for name, spec in value.items():
            if key == "networks":
                declared.append(str(name))
            where = (key, str(name))
            good_name = _validate(name_type, name, (*where, "[key]"), problems)
            good_spec = _validate(
                model, {} if spec is None and key == "containers" else spec, where, problems
            )
            if good_name is not None and good_spec is not None:
                found[key][good_name] = good_spec
    return Sugar.model_construct(
        networks=found["networks"], containers=found["containers"]
    ), declared


@dataclass(frozen=True)
class Publish:
    protocol: str
    published: int
    target: int
    host_ip: str | None
    path: str


def _publish_text(text: str, path: str, problems: list[Problem]) -> Publish | None:
    match = _PUBLISH_RE.fullmatch(text)
    if not match:
        problems.append(
            Problem(
                path,
                f"{shown(text)} is not a port mapping: write {_PUBLISH_FORM}, "
                "e.g. '8080:80/tcp' (nsgen publishes fixed host ports only, "
                "one port per entry)",
            )
        )
        return None
    protocol = match["protocol"] or "tcp"
    if protocol not in ("tcp", "udp"):
        problems.append(Problem(path, f"{shown(text)}: protocol {protocol!r} is not tcp or udp"))
        return None
    ports = []
    for key in ("published", "target"):
        port = int(match[key])
        if not 1 <= port <= 65535:
            problems.append(Problem(path, f"{shown(text)}: port {port} is outside 1-65535"))
            return None
        ports.append(port)
    host_ip = None
    if match["ip"]:
        bracketed = match["ip"].startswith("[")
        try:
            address = ipaddress.ip_address(match["ip"].strip("[]"))
        except ValueError:
            address = None
        if address is None or bracketed != (address.version == 6):
            what = "an IPv6 address in brackets" if bracketed else "an IPv4 address"
            problems.append(Problem(path, f"{shown(text)}: {match['ip']!r} is not {what}"))
            return None
        host_ip = str(address)
    return Publish(protocol, ports[0], ports[1], host_ip, path)


def _publish_entry(
    value: Any, prefix: tuple[int | str, ...], problems: list[Problem]
) -> Publish | None:
    path = format_path(prefix)
    if isinstance(value, str):
        return _publish_text(value, path, problems)
    if isinstance(value, int) and not isinstance(value, bool):
        problems.append(
            Problem(
                path,
                f"expected a string, got the number {value}: quote the "
                "mapping (YAML reads an unquoted 8080:80 as a base-60 number, "
                "and 80 alone would need a random host port)",
            )
        )
        return None
    if isinstance(value, dict):
        port = _validate(PortLong, value, prefix, problems)
        if port is None:
            return None
        return Publish(port.protocol, port.published, port.target, port.host_ip, path)
    problems.append(
        Problem(
            path,
            f"expected '{_PUBLISH_FORM}' or a mapping "
            f"{{published, target, protocol, host_ip}}, got {shown(value)}",
        )
    )
    return None


@dataclass
class Attach:
    """One container on one network, as the file says it (address: explicit, or assigned)."""

    network: str
    path: str
    explicit: str | None
    address: ipaddress.IPv4Address | None = None
    explicit6: str | None = None
    address6: ipaddress.IPv6Address | None = None


def _container_networks(
    value: Any,
    prefix: tuple[int | str, ...],
    declared: list[str],
    defaulted: bool,
    problems: list[Problem],
) -> list[Attach]:
    """The networks a container is on, in order; each one declared under `networks:`."""
    path = format_path(prefix)
    given: list[Attach] = []
    if isinstance(value, list):
        names = _validate(list[NetworkName], value, prefix, problems)
        given = [Attach(name, f"{path}[{i}]", None) for i, name in enumerate(names or [])]
    elif isinstance(value, dict):
        found = _validate(dict[NetworkName, Attachment | None], value, prefix, problems)
        given = [
            Attach(
                name,
                f"{path}.{name}",
                a.address if a else None,
                explicit6=a.ipv6_address if a else None,
            )
            for name, a in (found or {}).items()
        ]
    else:
        problems.append(
            Problem(
                path,
                "expected a list of network names, or a mapping "
                f"network: {{address: ...}}, got {shown(value)}",
            )
        )
    out: list[Attach] = []
    for a in given:
        if a.network not in declared:
            listing = ", ".join(declared) or "none"
            if defaulted:
                problems.append(
                    Problem(
                        format_path(prefix[:-1]),
                        f"network {a.network!r} is "
                        f"not declared under networks: (declared: {listing}) (a "
                        "container without 'networks:' joins the network "
                        f"'{DEFAULT_NETWORK}'; declare it, e.g. networks: "
                        f"{{{DEFAULT_NETWORK}: {{subnet: 172.17.0.0/16}}}})",
                    )
                )
            else:
                problems.append(
                    Problem(
                        a.path,
                        f"network {a.network!r} is not declared under "
                        f"networks: (declared: {listing})",
                    )
                )
        elif any(b.network == a.network for b in out):
            problems.append(Problem(a.path, f"network {a.network!r} is listed twice"))
        else:
            out.append(a)
    return out


# ---- what the file means ---------------------------------------------------------------------


@dataclass
class Net:
    name: str
    spec: Network
    subnet: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    bridge: str
    masquerade: bool
    members: list[str] = field(default_factory=list)
    subnet6: ipaddress.IPv6Network | None = None
    """Its IPv6 subnet, if it has ipv6: true (picked after every network is read)."""
    gateway6: ipaddress.IPv6Address | None = None

    @property
    def routed6(self) -> bool:
        """IPv6 without NAT: Docker's gateway_mode_ipv6 routed."""
        return self.subnet6 is not None and self.spec.gateway_mode_ipv6 == "routed"


@dataclass
class Box:
    """A container with its attachments in declaration order and its published ports."""

    name: str
    attach: list[Attach]
    publish: list[Publish]
    dns: list[str]
    partial: bool
    """Some of its networks were rejected: problems that depend on them are not reported."""


def veth_name(topology: str, container: str, network: str) -> str:
    """The host end of a container's veth pair: 'veth' + 7 hex digits, like Docker's, derived
    from the topology, container and network names (the same file always gives the same)."""
    return short_name(f"{topology}/{container}/{network}")


BRIDGE_DIGITS = 12
"""Docker names a user-defined network's bridge br- and 12 hex digits of the network's id."""


def bridge_name(network: str) -> str:
    """The host bridge of a network without `bridge:`: docker0 for the default network,
    'br-<network>' when that fits IFNAMSIZ, else 'br-' and 12 hex digits of its sha256 (the
    shape of Docker's own br-<network id>)."""
    if network == DEFAULT_NETWORK:
        return "docker0"
    return fitted(f"br-{network}", "br-", BRIDGE_DIGITS)


def chain_names(topology: str) -> tuple[str, str]:
    """The filter chain (isolation) and the nat chain (published ports) of a topology."""
    return f"NSGEN-{topology}-FWD", f"NSGEN-{topology}-DNAT"


def _host_names(topology: Topology) -> dict[str, str]:
    """Interface names the core part declares in the root namespace, with their paths."""
    names: dict[str, str] = {}
    for i, name in enumerate(topology.host.external):
        names[name] = f"host.external[{i}]"
    for name in topology.host.bridges:
        names[name] = f"host.bridges.{name}"
    for name in topology.host.vxlans:
        names[name] = f"host.vxlans.{name}"
    for netns, spec in topology.spaces():
        base = HOST if netns == HOST else f"namespaces.{netns}"
        for i, iface in enumerate(spec.interfaces):
            if netns == HOST and iface.name:
                names[near_name(netns, iface)] = f"{base}.interfaces[{i}]"
            if iface.peer.netns == HOST:
                names[peer_name(netns, iface)] = f"{base}.interfaces[{i}].peer"
    return names


AnyInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


def _host_addresses(topology: Topology) -> list[tuple[AnyInterface, str]]:
    """Addresses the core part puts in the root namespace, with their paths."""
    found: list[tuple[AnyInterface, str]] = []
    for name, bridge in topology.host.bridges.items():
        found += [(ipaddress.ip_interface(a), f"host.bridges.{name}") for a in bridge.addresses]
    for name, vxlan in topology.host.vxlans.items():
        found += [(ipaddress.ip_interface(a), f"host.vxlans.{name}") for a in vxlan.addresses]
    for netns, spec in topology.spaces():
        base = HOST if netns == HOST else f"namespaces.{netns}"
        for i, iface in enumerate(spec.interfaces):
            if netns == HOST:
                found += [
                    (ipaddress.ip_interface(a), f"{base}.interfaces[{i}]") for a in iface.addresses
                ]
            if iface.peer.netns == HOST:
                found += [
                    (ipaddress.ip_interface(a), f"{base}.interfaces[{i}].peer")
                    for a in iface.peer.addresses
                ]
    return found


def _networks(topology: Topology, sugar: Sugar, problems: list[Problem]) -> dict[str, Net]:
    nets: dict[str, Net] = {}
    host_names = _host_names(topology)
    host_addresses = _host_addresses(topology)
    bridges: dict[str, str] = {}
    subnets: dict[str, ipaddress.IPv4Network] = {}
    subnets6: dict[str, ipaddress.IPv6Network] = {}
    for name, spec in sugar.networks.items():
        base = f"networks.{name}"
        subnet = ipaddress.ip_network(spec.subnet)
        if not isinstance(subnet, ipaddress.IPv4Network):
            problems.append(
                Problem(
                    f"{base}.subnet",
                    f"{spec.subnet} is IPv6: subnet is the network's IPv4 subnet; an IPv6 "
                    "one goes in ipv6_subnet (with ipv6: true)",
                )
            )
            continue
        if subnet.prefixlen > 30:
            problems.append(
                Problem(
                    f"{base}.subnet",
                    f"{subnet} is too small: a network needs "
                    "room for a gateway and a container (at most /30)",
                )
            )
            continue
        ok = True
        for other, other_subnet in subnets.items():
            if subnet.overlaps(other_subnet):
                problems.append(
                    Problem(
                        f"{base}.subnet",
                        f"{subnet} overlaps {other_subnet} of "
                        f"network {other} (networks.{other}.subnet)",
                    )
                )
                ok = False
        subnets[name] = subnet
        for iface, where in host_addresses:
            if iface.version == 4 and iface.network.overlaps(subnet):
                problems.append(
                    Problem(
                        f"{base}.subnet",
                        f"{subnet} overlaps the root namespace's {iface} (at {where})",
                    )
                )
                ok = False
        gateway = subnet.network_address + 1  # the first host address, as Docker's IPAM picks
        if spec.gateway is not None:
            given = ipaddress.ip_address(spec.gateway)
            if not isinstance(given, ipaddress.IPv4Address):
                problems.append(
                    Problem(
                        f"{base}.gateway",
                        f"{spec.gateway} is IPv6: gateway is the network's IPv4 gateway; an "
                        "IPv6 one goes in ipv6_gateway (with ipv6: true)",
                    )
                )
                ok = False
            elif given not in subnet:
                problems.append(
                    Problem(f"{base}.gateway", f"{spec.gateway} is outside the subnet {subnet}")
                )
                ok = False
            elif given in (subnet.network_address, subnet.broadcast_address):
                kind = "network" if given == subnet.network_address else "broadcast"
                problems.append(
                    Problem(
                        f"{base}.gateway",
                        f"{spec.gateway} is the {kind} address of {subnet}, not a host address",
                    )
                )
                ok = False
            else:
                gateway = given
        bridge = spec.bridge or bridge_name(name)
        where, fix = f"{base}.bridge", ""
        if spec.bridge is None:
            where, fix = base, " (a derived name: set 'bridge:' explicitly)"
        if bridge in bridges:
            problems.append(
                Problem(
                    where,
                    f"bridge {bridge} is already the bridge of network {bridges[bridge]}{fix}",
                )
            )
            ok = False
        elif bridge in host_names:
            problems.append(
                Problem(
                    where,
                    f"bridge {bridge} clashes with the root namespace's "
                    f"interface declared at {host_names[bridge]}{fix}",
                )
            )
            ok = False
        bridges.setdefault(bridge, name)
        masquerade = not spec.internal if spec.masquerade is None else spec.masquerade
        if spec.internal and spec.masquerade:
            problems.append(
                Problem(
                    f"{base}.masquerade",
                    "an internal network has no way out, "
                    "so nothing to masquerade: remove masquerade or internal",
                )
            )
            ok = False
        subnet6, gateway6, ok6 = _ipv6_subnet(name, spec, subnets6, host_addresses, problems)
        if ok and ok6:
            nets[name] = Net(name, spec, subnet, gateway, bridge, masquerade)
            nets[name].subnet6, nets[name].gateway6 = subnet6, gateway6
    _pick_ipv6_subnets(topology.name, nets, subnets6, host_addresses)
    return nets


def _ipv6_subnet(
    name: str,
    spec: Network,
    subnets6: dict[str, ipaddress.IPv6Network],
    host_addresses: list[tuple[AnyInterface, str]],
    problems: list[Problem],
) -> tuple[ipaddress.IPv6Network | None, ipaddress.IPv6Address | None, bool]:
    """A network's IPv6 subnet and gateway as the file gives them (None: none given, or
    none wanted), and whether they are usable. A subnet given is recorded in `subnets6`."""
    base = f"networks.{name}"
    if not spec.ipv6:
        for key in ("ipv6_subnet", "ipv6_gateway"):
            if getattr(spec, key) is not None:
                problems.append(Problem(f"{base}.{key}", "needs ipv6: true"))
                return None, None, False
        if spec.gateway_mode_ipv6 != "nat":
            problems.append(Problem(f"{base}.gateway_mode_ipv6", "needs ipv6: true"))
            return None, None, False
        return None, None, True
    if spec.internal and spec.gateway_mode_ipv6 == "routed":
        problems.append(
            Problem(
                f"{base}.gateway_mode_ipv6",
                "an internal network routes nothing out: remove gateway_mode_ipv6 or internal",
            )
        )
        return None, None, False
    if spec.ipv6_subnet is None:
        if spec.ipv6_gateway is not None:
            problems.append(
                Problem(f"{base}.ipv6_gateway", "needs ipv6_subnet (the subnet it lies in)")
            )
            return None, None, False
        return None, None, True
    path = f"{base}.ipv6_subnet"
    subnet6 = ipaddress.ip_network(spec.ipv6_subnet)
    if not isinstance(subnet6, ipaddress.IPv6Network):
        problems.append(Problem(path, f"{subnet6} is IPv4: the IPv4 subnet goes in subnet"))
        return None, None, False
    if subnet6.prefixlen > 126:
        problems.append(
            Problem(path, f"{subnet6} is too small: room for a gateway and a container (/126)")
        )
        return None, None, False
    for other, other_subnet in subnets6.items():
        if subnet6.overlaps(other_subnet):
            problems.append(
                Problem(
                    path,
                    f"{subnet6} overlaps {other_subnet} of network {other} "
                    f"(networks.{other}.ipv6_subnet)",
                )
            )
            return None, None, False
    for iface, where in host_addresses:
        if iface.version == 6 and iface.network.overlaps(subnet6):
            problems.append(
                Problem(path, f"{subnet6} overlaps the root namespace's {iface} (at {where})")
            )
            return None, None, False
    subnets6[name] = subnet6
    gateway6 = subnet6.network_address + 1
    if spec.ipv6_gateway is not None:
        given = ipaddress.ip_address(spec.ipv6_gateway)
        if given not in subnet6 or given == subnet6.network_address:
            problems.append(
                Problem(
                    f"{base}.ipv6_gateway",
                    f"{given} is not a host address of the subnet {subnet6}",
                )
            )
            return None, None, False
        gateway6 = ipaddress.IPv6Address(given)
    return subnet6, gateway6, True


def ula_prefix(topology: str) -> ipaddress.IPv6Network:
    """The unique local /48 a topology's IPv6 networks take their /64s from, when the file
    gives them none: Docker 27's algorithm (daemon.deriveULABaseNetwork) with the topology's
    name in place of the engine's host ID: the 40 low bits of the first 8 bytes of its
    sha256 are the global ID after fd00::/8."""
    digest = hashlib.sha256(topology.encode()).digest()
    global_id = int.from_bytes(digest[:8], "big") & (2**40 - 1)
    base = int(ULA_BASE.network_address) + (global_id << 80)
    return ipaddress.IPv6Network((base, 48))


def _pick_ipv6_subnets(
    topology: str,
    nets: dict[str, Net],
    taken: dict[str, ipaddress.IPv6Network],
    host_addresses: list[tuple[AnyInterface, str]],
) -> None:
    """An IPv6 /64 for every ipv6: true network without ipv6_subnet, in network order: the
    next /64 of the topology's unique local /48 that no subnet of the file overlaps."""
    used = [*taken.values()]
    used += [iface.network for iface, _ in host_addresses if iface.version == 6]
    candidates = ula_prefix(topology).subnets(new_prefix=64)
    for net in nets.values():
        if not net.spec.ipv6 or net.subnet6 is not None:
            continue
        subnet6 = next(c for c in candidates if not any(c.overlaps(u) for u in used))
        used.append(subnet6)
        net.subnet6, net.gateway6 = subnet6, subnet6.network_address + 1


def _containers(
    topology: Topology,
    sugar: Sugar,
    declared: list[str],
    nets: dict[str, Net],
    problems: list[Problem],
) -> list[Box]:
    boxes: list[Box] = []
    for name, spec in sugar.containers.items():
        base: tuple[int | str, ...] = ("containers", name)
        if name in topology.namespaces:
            problems.append(
                Problem(
                    format_path(base),
                    f"container {name} clashes with the "
                    f"namespace declared at namespaces.{name}: a container is a "
                    "namespace of the same name",
                )
            )
            continue
        attach = _container_networks(
            spec.networks,
            (*base, "networks"),
            declared,
            "networks" not in spec.model_fields_set,
            problems,
        )
        partial = any(a.network not in nets for a in attach)
        attach = [a for a in attach if a.network in nets]
        publish = [
            p
            for i, value in enumerate(spec.publish)
            if (p := _publish_entry(value, (*base, "publish", i), problems)) is not None
        ]
        boxes.append(Box(name, attach, publish, spec.dns, partial))
    return boxes


def _assign(nets: dict[str, Net], boxes: list[Box], problems: list[Problem]) -> None:
    """Explicit addresses first (each reserved once), then the next free host addresses, in
    container declaration order; the gateway is reserved before either."""
    taken: dict[str, dict[ipaddress.IPv4Address, str]] = {
        name: {
            net.gateway: f"networks.{name}.gateway"
            + ("" if net.spec.gateway else " (the default gateway)")
        }
        for name, net in nets.items()
    }
    for box in boxes:
        for a in box.attach:
            net = nets[a.network]
            net.members.append(box.name)
            if a.explicit is None:
                continue
            where = f"{a.path}.address"
            if ":" in a.explicit:
                problems.append(
                    Problem(
                        where,
                        f"{a.explicit} is not an IPv4 address (an IPv6 one goes in ipv6_address)",
                    )
                )
                continue
            address = ipaddress.IPv4Address(a.explicit)
            if address not in net.subnet:
                problems.append(
                    Problem(
                        where, f"{address} is outside the subnet {net.subnet} of network {net.name}"
                    )
                )
            elif address in (net.subnet.network_address, net.subnet.broadcast_address):
                kind = "network" if address == net.subnet.network_address else "broadcast"
                problems.append(
                    Problem(
                        where,
                        f"{address} is the {kind} address of {net.subnet}, not a host address",
                    )
                )
            elif address in taken[net.name]:
                problems.append(
                    Problem(
                        where,
                        f"{address} is already taken on network "
                        f"{net.name} (by {taken[net.name][address]})",
                    )
                )
            else:
                taken[net.name][address] = where
                a.address = address
    # The next free host address of each network, counted (never listed: a /8 holds 16
    # million); each step past a taken one is paid for by that one's reservation.
    cursor = {name: int(net.subnet.network_address) + 1 for name, net in nets.items()}
    for box in boxes:
        for a in box.attach:
            if a.explicit is not None:
                continue
            last = int(nets[a.network].subnet.broadcast_address) - 1
            while (
                cursor[a.network] <= last
                and ipaddress.IPv4Address(cursor[a.network]) in taken[a.network]
            ):
                cursor[a.network] += 1
            picked = ipaddress.IPv4Address(cursor[a.network]) if cursor[a.network] <= last else None
            if picked is None:
                problems.append(
                    Problem(
                        a.path,
                        f"network {a.network} ({nets[a.network].subnet})"
                        " has no free address left for this container",
                    )
                )
                continue
            taken[a.network][picked] = a.path
            a.address = picked
    _assign6(nets, boxes, problems)


def _assign6(nets: dict[str, Net], boxes: list[Box], problems: list[Problem]) -> None:
    """IPv6 addresses on the ipv6: true networks, in the same order as the IPv4 ones: the
    gateway, then explicit ipv6_address, then the lowest free host addresses."""
    taken: dict[str, dict[ipaddress.IPv6Address, str]] = {
        name: {net.gateway6: f"networks.{name}.ipv6_gateway"}
        for name, net in nets.items()
        if net.gateway6 is not None
    }
    for box in boxes:
        for a in box.attach:
            if a.explicit6 is None:
                continue
            net = nets[a.network]
            where = f"{a.path}.ipv6_address"
            if net.subnet6 is None:
                problems.append(Problem(where, f"network {net.name} has no IPv6 (ipv6: true)"))
                continue
            address = ipaddress.ip_address(a.explicit6)
            if not isinstance(address, ipaddress.IPv6Address) or address not in net.subnet6:
                problems.append(
                    Problem(where, f"{address} is outside the IPv6 subnet {net.subnet6}")
                )
            elif address == net.subnet6.network_address:
                problems.append(Problem(where, f"{address} is the subnet-router anycast address"))
            elif address in taken[net.name]:
                problems.append(
                    Problem(
                        where,
                        f"{address} is already taken on network {net.name} "
                        f"(by {taken[net.name][address]})",
                    )
                )
            else:
                taken[net.name][address] = where
                a.address6 = address
    free = {name: net.subnet6.hosts() for name, net in nets.items() if net.subnet6 is not None}
    for box in boxes:
        for a in box.attach:
            if a.explicit6 is not None or a.network not in free:
                continue
            picked = next((h for h in free[a.network] if h not in taken[a.network]), None)
            if picked is None:
                problems.append(
                    Problem(
                        a.path,
                        f"network {a.network} ({nets[a.network].subnet6}) has no free "
                        "IPv6 address left for this container",
                    )
                )
                continue
            taken[a.network][picked] = a.path
            a.address6 = picked


def _check_veths(topology: Topology, boxes: list[Box], problems: list[Problem]) -> None:
    """The derived host ends must be new names in the root namespace (a clash of 7 hex digits
    is unlikely, not impossible)."""
    used = _host_names(topology)
    for box in boxes:
        for a in box.attach:
            name = veth_name(topology.name, box.name, a.network)
            if name in used:
                problems.append(
                    Problem(
                        a.path,
                        f"the derived host end {name} of this veth pair "
                        f"clashes with the interface at {used[name]}: rename the "
                        "container or the network",
                    )
                )
            used[name] = a.path


def _outbound(box: Box, nets: dict[str, Net]) -> Attach | None:
    """The container's first attachment to a non-internal network: its way out and where its
    published ports are sent."""
    return next((a for a in box.attach if not nets[a.network].spec.internal), None)


def _outbound6(box: Box, nets: dict[str, Net]) -> Attach | None:
    """The same for IPv6: its first attachment to a non-internal network with IPv6 (Docker
    picks a container's gateway per family)."""
    return next(
        (
            a
            for a in box.attach
            if not nets[a.network].spec.internal and nets[a.network].subnet6 is not None
        ),
        None,
    )


def _check_publish(boxes: list[Box], nets: dict[str, Net], problems: list[Problem]) -> None:
    seen: dict[tuple[str, int], list[Publish]] = {}
    for box in boxes:
        for port in box.publish:
            if _outbound(box, nets) is None and not box.partial:
                on = ", ".join(a.network for a in box.attach)
                where = f"only on internal networks ({on})" if on else "on no network"
                problems.append(
                    Problem(
                        port.path,
                        f"container {box.name} is {where}: nothing "
                        "from outside can reach it, so it cannot publish ports",
                    )
                )
            if port.host_ip is not None and ":" in port.host_ip and not box.partial:
                out6 = _outbound6(box, nets)
                if out6 is None:
                    problems.append(
                        Problem(
                            port.path,
                            f"{port.host_ip} is an IPv6 address, but container {box.name} "
                            "has none to publish to (Docker's docker-proxy would relay IPv6 "
                            "to its IPv4 address; nsgen does not)",
                        )
                    )
                elif nets[out6.network].routed6:
                    problems.append(
                        Problem(
                            port.path,
                            f"network {out6.network} routes IPv6 (gateway_mode_ipv6: routed): "
                            "the container port is open on the container's own address, and a "
                            "host address has no effect (Docker ignores it with a warning)",
                        )
                    )
            key = (port.protocol, port.published)
            for other in seen.get(key, []):
                if None in (port.host_ip, other.host_ip) or port.host_ip == other.host_ip:
                    problems.append(
                        Problem(
                            port.path,
                            f"host port {port.published}/"
                            f"{port.protocol} is already published (at "
                            f"{other.path})",
                        )
                    )
                    break
            seen.setdefault(key, []).append(port)


# ---- core objects ----------------------------------------------------------------------------


def _rule(table: str, chain: str, **fields: Any) -> dict[str, Any]:
    """A core firewall rule as data (nsgen.kinds.rules.Rule's fields)."""
    return {"table": table, "chain": chain, **fields}


def _family(*nets: Net) -> dict[str, Any]:
    """The family of a rule about these networks' bridges (it holds no address): both when
    every one of them has IPv6, else IPv4 (the default, left unsaid)."""
    return {"family": "both"} if all(n.subnet6 is not None for n in nets) else {}


def _v4(port: Publish) -> bool:
    return port.host_ip is None or ":" not in port.host_ip


def _v6(port: Publish) -> bool:
    return port.host_ip is None or ":" in port.host_ip


def _firewall(
    topology: str, nets: dict[str, Net], boxes: list[Box]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Own chains and rules of the root namespace, in the order they must be created.

    The forward hook is laid out as Docker 29's nftables backend lays it out: FORWARD jumps
    to the chain NSGEN-<topology>-FWD, which sends a packet on by the bridge it leaves
    through (a dispatch keyed by out_interface, to forward-in__<bridge>: what enters that
    network) and by the bridge it came in on (keyed by in_interface, to
    forward-out__<bridge>: what leaves it). Those per-network chains are inline: nftables
    makes them chains of their own behind verdict maps, iptables writes their rules into
    NSGEN-<topology>-FWD, each with the bridge it is keyed by.

    A rule about bridges only goes into both families when its networks have IPv6; one with
    an address goes into that address's family."""
    fwd, dnat = chain_names(topology)
    chains: list[dict[str, Any]] = []
    rules: list[dict[str, Any]] = []
    if not nets:
        return chains, rules
    ordered = list(nets.values())
    any6 = {"family": "both"} if any(net.subnet6 is not None for net in ordered) else {}
    chains.append({"table": "filter", "name": fwd})
    for way in ("in", "out"):
        chains += [
            {"table": "filter", "name": f"forward-{way}__{net.bridge}", "inline": True}
            for net in ordered
        ]
    rules.append(_rule("filter", "FORWARD", jump=fwd, insert=True, **any6))
    for way, key in (("in", "out_interface"), ("out", "in_interface")):
        entries = [{key: net.bridge, "jump": f"forward-{way}__{net.bridge}"} for net in ordered]
        dispatch = {"name": f"forward-{way}-jumps", "by": [key], "entries": entries}
        rules.append(_rule("filter", fwd, dispatch=dispatch, **any6))
    published = [(box, port) for box in boxes for port in box.publish]
    for net in ordered:
        inbound = f"forward-in__{net.bridge}"
        # DOCKER-ISOLATION: no other network forwards into this one (into a routed IPv6
        # network, only to its published ports: see _routed).
        for other in ordered:
            if other is not net:
                family = {} if net.routed6 else _family(other, net)
                rules.append(
                    _rule("filter", inbound, in_interface=other.bridge, jump="DROP", **family)
                )
        if not net.spec.icc:
            rules.append(
                _rule("filter", inbound, in_interface=net.bridge, jump="DROP", **_family(net))
            )
        if net.spec.internal:
            rules.append(
                _rule(
                    "filter",
                    inbound,
                    jump="DROP",
                    **{"not": {"in_interface": net.bridge}},
                    **_family(net),
                )
            )
        rules += _routed(inbound, net, nets, published)
    for net in ordered:
        if net.spec.internal:
            rules.append(
                _rule(
                    "filter",
                    f"forward-out__{net.bridge}",
                    jump="DROP",
                    **{"not": {"out_interface": net.bridge}},
                    **_family(net),
                )
            )
    for net in ordered:
        if net.masquerade:
            rules.append(
                _rule(
                    "nat",
                    "POSTROUTING",
                    source=str(net.subnet),
                    jump="MASQUERADE",
                    **{"not": {"out_interface": net.bridge}},
                )
            )
            if net.subnet6 is not None and not net.routed6:
                rules.append(
                    _rule(
                        "nat",
                        "POSTROUTING",
                        source=str(net.subnet6),
                        jump="MASQUERADE",
                        **{"not": {"out_interface": net.bridge}},
                    )
                )
    nat4 = [(box, port) for box, port in published if _v4(port)]
    nat6 = [
        (box, port, out)
        for box, port in published
        if _v6(port)
        and (out := _outbound6(box, nets)) is not None
        and not nets[out.network].routed6
    ]
    if nat4 or nat6:
        chains.append({"table": "nat", "name": dnat})
        family = {"family": "both"} if nat4 and nat6 else ({"family": 6} if nat6 else {})
        rules.append(_rule("nat", "PREROUTING", dst_type="LOCAL", jump=dnat, **family))
    if nat4:
        # From the host itself, 127.0.0.1 included (CNI portmap's way: route_localnet on the
        # bridge and a masquerade of the loopback source, below)
        rules.append(_rule("nat", "OUTPUT", dst_type="LOCAL", jump=dnat))
    if nat6:
        # ::1 never leaves the loopback (no route_localnet for IPv6): not redirected
        rules.append(
            _rule("nat", "OUTPUT", dst_type="LOCAL", jump=dnat, **{"not": {"destination": "::1"}})
        )
    for box, port in published:
        out = _outbound(box, nets)
        assert out is not None and out.address is not None
        if _v4(port):
            rules.append(
                _rule(
                    "nat",
                    dnat,
                    **({"destination": port.host_ip} if port.host_ip else {}),
                    protocol=port.protocol,
                    dport=port.published,
                    jump="DNAT",
                    to_destination=f"{out.address}:{port.target}",
                )
            )
        out6 = _outbound6(box, nets)
        if _v6(port) and out6 is not None and not nets[out6.network].routed6:
            rules.append(
                _rule(
                    "nat",
                    dnat,
                    **({"destination": port.host_ip} if port.host_ip else {}),
                    protocol=port.protocol,
                    dport=port.published,
                    jump="DNAT",
                    to_destination=f"[{out6.address6}]:{port.target}",
                )
            )
    hairpins: list[dict[str, Any]] = []
    for box, port in published:
        targets: list[tuple[str, str]] = []
        out = _outbound(box, nets)
        assert out is not None
        if _v4(port):
            targets.append((str(nets[out.network].subnet), str(out.address)))
        out6 = _outbound6(box, nets)
        if _v6(port) and out6 is not None and not nets[out6.network].routed6:
            targets.append((str(nets[out6.network].subnet6), str(out6.address6)))
        for subnet, address in targets:
            hairpin = _rule(
                "nat",
                "POSTROUTING",
                source=subnet,
                destination=address,
                protocol=port.protocol,
                dport=port.target,
                ctstate=["DNAT"],
                jump="MASQUERADE",
            )
            if hairpin not in hairpins:  # two host ports for one container port need one rule
                hairpins.append(hairpin)
    rules += hairpins
    localhost: list[dict[str, Any]] = []
    for box, port in published:
        out = _outbound(box, nets)
        assert out is not None
        if not _v4(port):
            continue  # ::1 never leaves the loopback
        # a connection from 127.0.0.1 leaves through the bridge only with route_localnet on
        # it; the container must see (and answer) the gateway, not its own loopback
        rule = _rule(
            "nat",
            "POSTROUTING",
            source="127.0.0.0/8",
            destination=str(out.address),
            protocol=port.protocol,
            dport=port.target,
            jump="MASQUERADE",
        )
        if rule not in localhost:
            localhost.append(rule)
    rules += localhost
    return chains, rules


def _forwards(nets: dict[str, Net], boxes: list[Box]) -> list[dict[str, Any]]:
    """Each published port as plain data (`Topology.forwards`): the host port, on every local
    address of the root namespace or on `host_ip`, sent to the container's address on its
    first non-internal network, as the DNAT rules of `_firewall` do."""
    found: list[dict[str, Any]] = []
    for box in boxes:
        for port in box.publish:
            out = _outbound(box, nets)
            assert out is not None and out.address is not None
            endpoint = {"netns": box.name, "address": str(out.address), "port": port.target}
            found.append(
                {
                    "kind": "publish",
                    "name": box.name,
                    "protocol": port.protocol,
                    "netns": [HOST],
                    "address": port.host_ip,
                    "port": port.published,
                    "endpoints": [endpoint],
                }
            )
    return found


def _publishing_bridges(nets: dict[str, Net], boxes: list[Box]) -> list[str]:
    """The bridges of the networks published ports lead into, in order."""
    bridges: list[str] = []
    for box in boxes:
        out = _outbound(box, nets)
        v4 = any(_v4(port) for port in box.publish)
        if v4 and out is not None and nets[out.network].bridge not in bridges:
            bridges.append(nets[out.network].bridge)
    return bridges


def _routed(
    chain: str, net: Net, nets: dict[str, Net], published: list[tuple[Box, Publish]]
) -> list[dict[str, Any]]:
    """Docker's routed IPv6 mode, for a network that has it, in the chain of what enters it:
    replies come in, published container ports and ICMPv6 are open to direct routing,
    nothing else enters the bridge from elsewhere (the DOCKER chain's ACCEPT, ICMP and DROP
    rules)."""
    rules: list[dict[str, Any]] = []
    if not net.routed6:
        return rules
    rules.append(
        _rule("filter", chain, ctstate=["RELATED", "ESTABLISHED"], jump="ACCEPT", family=6)
    )
    for box, port in published:
        out6 = _outbound6(box, nets)
        if out6 is None or out6.network != net.name or not _v6(port):
            continue
        rules.append(
            _rule(
                "filter",
                chain,
                destination=str(out6.address6),
                protocol=port.protocol,
                dport=port.target,
                jump="ACCEPT",
                **{"not": {"in_interface": net.bridge}},
            )
        )
    rules.append(_rule("filter", chain, protocol="icmpv6", jump="ACCEPT", family=6))
    rules.append(
        _rule("filter", chain, jump="DROP", family=6, **{"not": {"in_interface": net.bridge}})
    )
    return rules


def _hosts(box: Box, boxes: list[Box]) -> dict[str, str | list[str]]:
    """/etc/hosts of a container: itself, then every container it shares a network with, at
    its address on the first such network (in this container's order), and its IPv6 address
    on the first shared network with IPv6 (the AAAA answer of Docker's DNS)."""
    hosts: dict[str, str | list[str]] = {}
    mine = [a.network for a in box.attach]
    for other in boxes:
        theirs = {a.network: a for a in other.attach}
        shared = [theirs[network] for network in mine if network in theirs]
        first = next((str(a.address) for a in shared if a.address is not None), None)
        first6 = next((str(a.address6) for a in shared if a.address6 is not None), None)
        if first is not None:
            hosts[other.name] = first if first6 is None else [first, first6]
    if box.name in hosts:  # itself first, as in Docker's /etc/hosts
        hosts = {box.name: hosts[box.name], **hosts}
    return hosts


def _build(
    topology: Topology, nets: dict[str, Net], boxes: list[Box], problems: list[Problem]
) -> Topology:
    data = topology.model_dump(mode="json", by_alias=True)
    host = data["host"]
    for net in nets.values():
        addresses = [f"{net.gateway}/{net.subnet.prefixlen}"]
        if net.subnet6 is not None:
            addresses.append(f"{net.gateway6}/{net.subnet6.prefixlen}")
        host["bridges"][net.bridge] = {"addresses": addresses}
    for box in boxes:
        interfaces = []
        for k, a in enumerate(box.attach):
            net = nets[a.network]
            addresses = [f"{a.address}/{net.subnet.prefixlen}"]
            if net.subnet6 is not None:
                addresses.append(f"{a.address6}/{net.subnet6.prefixlen}")
            interfaces.append(
                {
                    "name": f"eth{k}",
                    "peer": {
                        "netns": HOST,
                        "bridge": net.bridge,
                        "name": veth_name(topology.name, box.name, net.name),
                        # a container reaching its own published port comes back out of
                        # the port it went in by (Docker sets hairpin mode when the kernel,
                        # not docker-proxy, carries published ports)
                        "hairpin": True,
                    },
                    "addresses": addresses,
                }
            )
        namespace: dict[str, Any] = {"interfaces": interfaces}
        routes = []
        out = _outbound(box, nets)
        if out is not None:
            routes.append({"to": "default", "via": str(nets[out.network].gateway)})
        out6 = _outbound6(box, nets)
        if out6 is not None:
            routes.append({"to": "default", "via": str(nets[out6.network].gateway6)})
        if routes:
            namespace["routes"] = routes
        namespace["dns"] = {"nameservers": box.dns, "hosts": _hosts(box, boxes)}
        data["namespaces"][box.name] = namespace

    if any(not net.spec.internal for net in nets.values()):
        _sysctl(
            host,
            "net.ipv4.ip_forward",
            "1",
            "forwarding between the bridges and the uplink",
            problems,
        )
    if any(not net.spec.internal and net.subnet6 is not None for net in nets.values()):
        _sysctl(
            host,
            "net.ipv6.conf.all.forwarding",
            "1",
            "IPv6 forwarding between the bridges and the uplink",
            problems,
        )
    if any(not net.spec.icc for net in nets.values()):
        _sysctl(
            host,
            "net.bridge.bridge-nf-call-iptables",
            "1",
            "icc: false (traffic between two ports of one bridge must pass iptables)",
            problems,
        )
    if any(not net.spec.icc and net.subnet6 is not None for net in nets.values()):
        _sysctl(
            host,
            "net.bridge.bridge-nf-call-ip6tables",
            "1",
            "icc: false on an IPv6 network (bridged IPv6 traffic must pass ip6tables)",
            problems,
        )

    for bridge in _publishing_bridges(nets, boxes):
        if "." in bridge:
            problems.append(
                Problem(
                    "networks",
                    f"bridge {bridge} publishes ports, which needs the sysctl "
                    f"net.ipv4.conf.{bridge}.route_localnet, and a '.' in a bridge name "
                    "cannot be written in a sysctl key: name the bridge without '.'",
                )
            )
            continue
        _sysctl(
            host,
            f"net.ipv4.conf.{bridge}.route_localnet",
            "1",
            "the host's own connections to 127.0.0.1 on a published port leave through it",
            problems,
        )

    chains, rules = _firewall(topology.name, nets, boxes)
    host["iptables"]["chains"] += chains
    host["iptables"]["rules"] += rules

    data["groups"] += [
        Group(
            name=net.name,
            kind="internal docker network" if net.spec.internal else "docker network",
            members=net.members,
        ).model_dump(mode="json")
        for net in nets.values()
    ]
    data["forwards"] += _forwards(nets, boxes)
    try:
        return Topology.model_validate(data, context=EXPANDED)
    except ValidationError as exc:  # a clash the checks above did not foresee
        problems.extend(pydantic_problems(exc))
        return topology


def _check_topology_name(topology: str, problems: list[Problem]) -> None:
    """The topology name is part of the own iptables chains' names, which iptables limits."""
    longest = max(chain_names(topology), key=len)
    if len(longest.encode()) > CHAIN_LIMIT:
        room = CHAIN_LIMIT - (len(longest.encode()) - len(topology.encode()))
        problems.append(
            Problem(
                "name",
                f"{topology!r} is {len(topology.encode())} bytes: with Docker-style networks "
                f"a topology name has at most {room}, since it is part of the iptables chain "
                f"{longest}, and iptables takes chain names of at most {CHAIN_LIMIT} bytes",
            )
        )


def _sysctl(
    host: dict[str, Any], key: str, value: str, reason: str, problems: list[Problem]
) -> None:
    current = host["sysctls"].get(key)
    if current is None:
        host["sysctls"][key] = value
    elif str(current) != value:
        problems.append(
            Problem(
                f"host.sysctls.{key}",
                f"the Docker-style networks need {key} = "
                f"{value} ({reason}), but the file sets {current}",
            )
        )


def check(sugar: dict[str, Any]) -> list[Problem]:
    """The problems of `networks:` and `containers:` that need nothing from the core part of
    the file: each entry's fields, each container's networks and published ports."""
    problems: list[Problem] = []
    parsed, declared = _parse(sugar, problems)
    for name, spec in parsed.containers.items():
        base: tuple[int | str, ...] = ("containers", name)
        defaulted = "networks" not in spec.model_fields_set
        _container_networks(spec.networks, (*base, "networks"), declared, defaulted, problems)
        for i, value in enumerate(spec.publish):
            _publish_entry(value, (*base, "publish", i), problems)
    return problems


def expand(topology: Topology, sugar: dict[str, Any]) -> tuple[Topology, list[Problem]]:
    """The topology with every network and container as core objects, and the problems found
    in `networks:` and `containers:` (paths as in the file)."""
    problems: list[Problem] = []
    _check_topology_name(topology.name, problems)
    parsed, declared = _parse(sugar, problems)
    nets = _networks(topology, parsed, problems)
    boxes = _containers(topology, parsed, declared, nets, problems)
    _assign(nets, boxes, problems)
    _check_publish(boxes, nets, problems)
    _check_veths(topology, boxes, problems)
    if problems:
        return topology, problems
    expanded = _build(topology, nets, boxes, problems)
    return (topology, problems) if problems else (expanded, problems)
