"""The topology model: typed, strict (unknown keys are errors), one shape for every namespace.

Field-level rules (name syntax, address syntax) live here as validators; rules that relate
one object to another (references, uniqueness, gateways) live in `nsgen.validate`.
"""

from __future__ import annotations

import ipaddress
import re
import shlex
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

HOST = "host"
"""How a topology names the root namespace (the machine's own network stack)."""

IFNAMSIZ = 15
"""Longest interface name the kernel accepts, in bytes (IFNAMSIZ is 16 with the NUL)."""

_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")
_TOPOLOGY_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")
_HOSTNAME_RE = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?")
_SYSCTL_RE = re.compile(r"net(\.[A-Za-z0-9_-]+)+")
_SYSCTL_VALUE_RE = re.compile(r"-?[0-9]+")


def _check_name(value: str, what: str, pattern: re.Pattern[str] = _NAME_RE) -> str:
    if not value:
        raise ValueError(f"{what} must not be empty")
    if value.startswith("-"):
        raise ValueError(f"{value!r} is not a valid {what}: it must not start with '-'")
    if not pattern.fullmatch(value):
        allowed = "letters, digits, '_', '-'" + (", '.'" if pattern is _NAME_RE else "")
        raise ValueError(f"{value!r} is not a valid {what}: use only {allowed}")
    if len(value.encode()) > IFNAMSIZ:
        raise ValueError(
            f"{value!r} is not a valid {what}: {len(value.encode())} bytes, over the limit of "
            f"{IFNAMSIZ}"
        )
    return value


def _description(value: str) -> str:
    if any(not (ch.isprintable() or ch == "\n") for ch in value):
        raise ValueError("the description may hold printable text and line breaks only")
    return value


def _ifname(value: str) -> str:
    return _check_name(value, "interface name")


def _nsname(value: str) -> str:
    _check_name(value, "namespace name")
    if value == HOST:
        raise ValueError(f"{HOST!r} is reserved for the root namespace: declare it under 'host:'")
    return value


def _nsref(value: str) -> str:
    return value if value == HOST else _check_name(value, "namespace name")


def _topology_name(value: str) -> str:
    return _check_name(value, "topology name", _TOPOLOGY_RE)


def _family(value: str) -> str:
    return "IPv6" if ":" in value else "IPv4"


def _ifaddr(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length (write it as ADDRESS/PREFIX, e.g. /24)")
    try:
        iface = ipaddress.ip_interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} interface address") from None
    if iface.ip == iface.network.network_address and iface.network.prefixlen < iface.max_prefixlen - 1:
        raise ValueError(f"{value!r} is the network address of its subnet, not a host address")
    return str(iface)


def _ipaddr(value: str) -> str:
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} address") from None


def _network(value: str) -> str:
    try:
        net = ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"{value!r} is not a valid {_family(value)} subnet (CIDR)") from None
    if str(net) != value and "/" in value:
        raise ValueError(f"{value!r} has host bits set: the subnet is {net}")
    if "/" not in value:
        raise ValueError(f"{value!r} has no prefix length (write it as NETWORK/PREFIX)")
    return str(net)


def _route_dest(value: str) -> str:
    return value if value == "default" else _network(value)


def _hostname(value: str) -> str:
    if not _HOSTNAME_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid host name")
    return value


def _sysctl_key(value: str) -> str:
    if not _SYSCTL_RE.fullmatch(value):
        raise ValueError(
            f"{value!r} is not a network sysctl nsgen manages: it must look like net.ipv4.ip_forward"
        )
    return value


def _sysctl_value(value: int | str) -> str:
    text = str(value)
    if isinstance(value, bool) or not _SYSCTL_VALUE_RE.fullmatch(text):
        raise ValueError(f"{value!r} is not a valid sysctl value: nsgen writes integers only")
    return text


_CHAIN_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,27}")
_MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
BUILTIN_CHAINS = {
    "filter": ("INPUT", "FORWARD", "OUTPUT"),
    "nat": ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"),
    "mangle": ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"),
    "raw": ("PREROUTING", "OUTPUT"),
}
_RULE_FORBIDDEN = {"-t", "--table", "-A", "--append", "-I", "--insert", "-D", "--delete", "-N",
                   "--new-chain", "-X", "--delete-chain", "-F", "--flush", "-P", "--policy", "-Z",
                   "--zero", "-R", "--replace", "-E", "--rename-chain", "-L", "--list", "-S"}


def _chain(value: str) -> str:
    if not _CHAIN_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid chain name: 1 to 28 letters, digits, '_', "
                         "'-', '.', not starting with '-' or '.'")
    return value


def _mac(value: str) -> str:
    if not _MAC_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a MAC address (write it as 02:00:00:00:00:01)")
    return value


def _rule(value: str) -> str:
    if not value.strip():
        raise ValueError("a rule must not be empty")
    if not value.isprintable():
        raise ValueError(f"{value!r}: a rule is one line of printable text")
    try:
        words = shlex.split(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid rule: {exc}") from None
    used = sorted(_RULE_FORBIDDEN.intersection(words))
    if used:
        raise ValueError(f"{value!r}: give only matches and a target; the table, chain and "
                         f"operation come from the other keys (remove {', '.join(used)})")
    return value


IfName = Annotated[str, AfterValidator(_ifname)]
NsName = Annotated[str, AfterValidator(_nsname)]
NsRef = Annotated[str, AfterValidator(_nsref)]
TopologyName = Annotated[str, AfterValidator(_topology_name)]
IfAddr = Annotated[str, AfterValidator(_ifaddr)]
IpAddr = Annotated[str, AfterValidator(_ipaddr)]
Subnet = Annotated[str, AfterValidator(_network)]
RouteDest = Annotated[str, AfterValidator(_route_dest)]
HostName = Annotated[str, AfterValidator(_hostname)]
SysctlKey = Annotated[str, AfterValidator(_sysctl_key)]
SysctlValue = Annotated[int | str, AfterValidator(_sysctl_value)]
ChainName = Annotated[str, AfterValidator(_chain)]
MacAddr = Annotated[str, AfterValidator(_mac)]
RuleText = Annotated[str, AfterValidator(_rule)]
Table = Literal["filter", "nat", "mangle", "raw"]


class Strict(BaseModel):
    """Base of every model: unknown keys are errors, values are never coerced between types."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Peer(Strict):
    """The far end of a veth pair."""

    netns: NsRef = Field(HOST, description="Namespace of the far end; 'host' is the root namespace.")
    bridge: IfName | None = Field(
        None, description="Attach the far end to this bridge (declared in the far end's namespace)."
    )
    name: IfName | None = Field(
        None,
        description="Interface name of the far end. Default, when the near end's name is "
        "derived: 'veth-<namespace>-br' on a bridge, 'veth-<namespace>-host' in the root "
        "namespace; when it is given: '<namespace>-<near name>'; in another named namespace "
        "off any bridge: 'veth-<namespace>'.",
    )
    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of the far end.")


class Interface(Strict):
    """One end of a veth pair, living in the namespace that declares it."""

    name: IfName | None = Field(
        None, description="Interface name. Default: 'veth-<namespace>' (required in 'host')."
    )
    peer: Peer = Field(description="Where the other end of the pair goes.")
    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of this end.")


class Bridge(Strict):
    """A Linux bridge (a virtual switch) created in the namespace that declares it."""

    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of the bridge.")


class Route(Strict):
    """A route in the namespace's main table."""

    to: RouteDest = Field(description="Destination subnet, or 'default'.")
    via: IpAddr | None = Field(None, description="Gateway; must lie in an attached subnet.")
    dev: IfName | None = Field(None, description="Outgoing interface.")
    onlink: bool = Field(
        False, description="Treat the gateway as directly reachable on dev (needs dev), even "
        "outside its subnets; flannel's host routes to other nodes' vxlan addresses are such."
    )


class Masquerade(Strict):
    """Source NAT: packets from `source` leaving through `out` take the address of `out`."""

    source: Subnet = Field(description="Subnet whose packets are rewritten.")
    out: IfName = Field(description="Interface the packets leave through (often the uplink).")


class Vxlan(Strict):
    """A VXLAN device: an Ethernet segment tunnelled in UDP over an underlay interface."""

    id: int = Field(ge=0, le=16777215, description="VXLAN network identifier (VNI).")
    local: IpAddr | None = Field(None, description="Source address of the tunnel's packets.")
    dev: IfName | None = Field(None, description="Underlay interface.")
    port: int = Field(4789, ge=1, le=65535, description="UDP port (flannel uses 8472).")
    mac: MacAddr | None = Field(None, description="Fixed MAC address of the device.")
    learning: bool = Field(True, description="Learn remote MACs from traffic (flannel: false).")
    addresses: list[IfAddr] = Field(default_factory=list)


class Neighbor(Strict):
    """A permanent neighbour (ARP) entry: `address` is at `lladdr` on `dev`."""

    dev: IfName
    address: IpAddr
    lladdr: MacAddr


class FdbEntry(Strict):
    """A bridge forwarding-database entry: frames for `lladdr` on `dev` go to VTEP `dst`."""

    dev: IfName
    lladdr: MacAddr
    dst: IpAddr


class Chain(Strict):
    """An iptables chain of nsgen's own; teardown empties and deletes it."""

    table: Table = "filter"
    name: ChainName


class Rule(Strict):
    """One iptables rule. In the root namespace every rule carries the topology's comment tag,
    so teardown removes exactly it."""

    table: Table = "filter"
    chain: ChainName = Field(description="A built-in chain of the table, or a declared chain.")
    rule: RuleText = Field(description="Matches and target, e.g. '-s 10.0.0.0/8 -j ACCEPT'.")
    insert: bool = Field(False, description="Insert at the top of the chain instead of appending.")


class Iptables(Strict):
    chains: list[Chain] = Field(default_factory=list, description="Own chains, created first.")
    rules: list[Rule] = Field(default_factory=list, description="Rules, in order.")


class Dns(Strict):
    """Files written under /etc/netns/<namespace>/, which `ip netns exec` shows as /etc/..."""

    nameservers: list[IpAddr] = Field(default_factory=list, description="resolv.conf nameservers.")
    search: list[HostName] = Field(default_factory=list, description="resolv.conf search domains.")
    hosts: dict[HostName, IpAddr] = Field(
        default_factory=dict, description="Entries for the namespace's own /etc/hosts: name: address."
    )


class Namespace(Strict):
    """Everything nsgen builds in one network namespace (the root one, or a named one)."""

    loopback: bool | None = Field(
        None, description="Bring up 'lo' (default: true in named namespaces; not settable in host)."
    )
    external: list[IfName] = Field(
        default_factory=list,
        description="Interfaces that exist already and are never created or removed (host only).",
    )
    bridges: dict[IfName, Bridge] = Field(default_factory=dict, description="Bridges by name.")
    interfaces: list[Interface] = Field(default_factory=list, description="veth ends.")
    vxlans: dict[IfName, Vxlan] = Field(default_factory=dict, description="VXLAN devices.")
    routes: list[Route] = Field(default_factory=list, description="Routes, in order.")
    neighbors: list[Neighbor] = Field(default_factory=list, description="Permanent ARP entries.")
    fdb: list[FdbEntry] = Field(default_factory=list, description="Bridge FDB entries (VXLAN).")
    masquerade: list[Masquerade] = Field(
        default_factory=list, description="Source NAT out of an interface (the tutorial's rule)."
    )
    iptables: Iptables = Field(default_factory=Iptables, description="Own chains and rules.")
    sysctls: dict[SysctlKey, SysctlValue] = Field(
        default_factory=dict,
        description="Network sysctls to set, e.g. net.ipv4.ip_forward: 1. Previous values are "
        "restored by teardown.",
    )
    dns: Dns | None = Field(None, description="resolv.conf and hosts (named namespaces only).")


class Topology(Strict):
    """A whole topology file."""

    name: TopologyName = Field(description="Names the scripts, /run/nsgen/<name>/ and rule tags.")
    description: Annotated[str, AfterValidator(_description)] = Field(
        "", description="Free text, copied into the scripts' header."
    )
    host: Namespace = Field(default_factory=Namespace, description="The root namespace.")
    namespaces: dict[NsName, Namespace] = Field(
        default_factory=dict, description="Named namespaces to create, by name, in order."
    )

    def spaces(self) -> list[tuple[str, Namespace]]:
        """Every namespace of the topology, root first, then named ones in declaration order."""
        return [(HOST, self.host), *self.namespaces.items()]


Family = Literal[4, 6]
