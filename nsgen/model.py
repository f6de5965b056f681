"""The topology model: typed, strict (unknown keys are errors), one shape for every namespace.

Field-level rules (name syntax, address syntax) live in `nsgen.fields` as validators; rules that
relate one object to another (references, uniqueness, gateways) live in `nsgen.validate`.
Docker- and Kubernetes-style sugar (`networks`, `containers`, `cluster`) is declared by the
expanders in `nsgen.expand`, which turn it into the core objects below.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, Field, ValidationInfo, WithJsonSchema, field_validator
from pydantic.json_schema import SkipJsonSchema

from nsgen.fields import (
    HOST,
    CheckTarget,
    HostName,
    IfAddr,
    IfName,
    IpAddr,
    Label,
    MacAddr,
    NsName,
    NsRef,
    RouteDest,
    Strict,
    Subnet,
    SysctlKey,
    SysctlValue,
    TopologyName,
    _ipaddr,
    description_text,
    ip_interface,
)
from nsgen.kinds.commands import Command
from nsgen.kinds.links import LinkMac, Mtu
from nsgen.kinds.rules import Iptables
from nsgen.kinds.shaping import Shaping

__all__ = ["HOST"]


class Peer(Strict):
    """The far end of a veth pair."""

    netns: NsRef = Field(
        HOST, description="Namespace of the far end; 'host' is the root namespace."
    )
    bridge: IfName | None = Field(
        None, description="Attach the far end to this bridge (declared in the far end's namespace)."
    )
    name: IfName | None = Field(
        None,
        description="Interface name of the far end. Default, when the near end's name is "
        "derived: 'veth-<namespace>-br' on a bridge, 'veth-<namespace>-host' in the root "
        "namespace; when it is given: '<namespace>-<near name>'; in another named namespace "
        "off any bridge: 'veth-<namespace>'. A default over 15 bytes becomes 'veth' and 7 "
        "hex digits of its sha256.",
    )
    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of the far end.")
    hairpin: bool = Field(
        False,
        description="On a bridge: let frames leave through the port they came in on, so "
        "a namespace can reach itself through a NAT on the bridge's host (bridge CNI's "
        "hairpinMode).",
    )
    mtu: Mtu | None = Field(None, description="MTU of the far end (default 1500).")
    mac: LinkMac | None = Field(
        None, description="MAC address of the far end (default: a random one)."
    )


class Interface(Strict):
    """One end of a veth pair, living in the namespace that declares it."""

    name: IfName | None = Field(
        None,
        description="Interface name. Default: 'veth-<namespace>', or 'veth' and 7 hex digits "
        "of its sha256 when that is over 15 bytes (required in 'host').",
    )
    peer: Peer = Field(description="Where the other end of the pair goes.")
    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of this end.")
    bridge: IfName | None = Field(
        None,
        description="Attach this end to this bridge, declared in the same namespace (with "
        "peer.bridge, the cable joins two bridges).",
    )
    hairpin: bool = Field(
        False, description="On a bridge: let frames leave through the port they came in on."
    )
    mtu: Mtu | None = Field(None, description="MTU of this end (default 1500).")
    mac: LinkMac | None = Field(
        None, description="MAC address of this end (default: a random one)."
    )


class Bridge(Strict):
    """A Linux bridge (a virtual switch) created in the namespace that declares it."""

    addresses: list[IfAddr] = Field(default_factory=list, description="Addresses of the bridge.")
    mtu: Mtu | None = Field(
        None, description="MTU of the bridge, kept whatever its ports' (default: their smallest)."
    )
    mac: LinkMac | None = Field(
        None, description="MAC address of the bridge (default: the lowest of its ports')."
    )


class Route(Strict):
    """A route in the namespace's main table."""

    to: RouteDest = Field(description="Destination subnet, or 'default'.")
    via: IpAddr | None = Field(None, description="Gateway; must lie in an attached subnet.")
    dev: IfName | None = Field(None, description="Outgoing interface.")
    onlink: bool = Field(
        False,
        description="Treat the gateway as directly reachable on dev (needs dev), even "
        "outside its subnets; flannel's host routes to other nodes' vxlan addresses are such.",
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
    mac: LinkMac | None = Field(None, description="Fixed MAC address of the device.")
    learning: bool = Field(True, description="Learn remote MACs from traffic (flannel: false).")
    addresses: list[IfAddr] = Field(default_factory=list)
    mtu: Mtu | None = Field(
        None,
        description="MTU of the device (default: dev's less the 50 bytes VXLAN adds, 70 over "
        "IPv6; 1500 without dev).",
    )


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


def _host_addresses(value: object) -> str | list[str]:
    """An /etc/hosts entry's address, or its addresses (one of each family, say)."""
    if isinstance(value, str):
        return _ipaddr(value)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return [_ipaddr(v) for v in value]
    raise ValueError(f"expected an address or a list of addresses, got {value!r}")


HostAddresses = Annotated[
    object,
    AfterValidator(_host_addresses),
    WithJsonSchema({"anyOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]}),
]


class Dns(Strict):
    """Files written under /etc/netns/<namespace>/, which `ip netns exec` shows as /etc/..."""

    nameservers: list[IpAddr] = Field(default_factory=list, description="resolv.conf nameservers.")
    search: list[HostName] = Field(default_factory=list, description="resolv.conf search domains.")
    hosts: dict[HostName, HostAddresses] = Field(
        default_factory=dict,
        description="Entries for the namespace's own /etc/hosts: name: address, or name: "
        "[addresses] (an IPv4 and an IPv6 one, say).",
    )


class Namespace(Strict):
    """Everything nsgen builds in one network namespace (the root one, or a named one)."""

    loopback: bool | None = Field(
        None, description="Bring up 'lo' (default: true in named namespaces; not settable in host)."
    )
    ipv6: bool | None = Field(
        None,
        description="IPv6 in this namespace. Default: on; a link nsgen creates that holds an "
        "IPv6 address gets a fixed fe80:: address (no duplicate address detection), any other "
        "none. true: links without an IPv6 address keep the kernel's autoconfigured fe80:: "
        "address. false (named namespaces only): IPv6 is disabled "
        "(net.ipv6.conf.all.disable_ipv6 = 1, no address, not even ::1).",
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
    shaping: dict[IfName, Shaping] = Field(
        default_factory=dict,
        description="Traffic shaping of interfaces in this namespace, by name: rate, delay, "
        "loss ... of the packets leaving each (tc tbf, netem).",
    )
    exec: list[Command] = Field(
        default_factory=list,
        description="Named namespaces only: commands run inside this namespace after "
        "everything else is set up, in order; a string is a shell command line (sh -c), a "
        "list a program and its arguments. nsgen does not undo them.",
    )


class Check(Strict):
    """A connectivity check: `from` a namespace, `to` an address or a namespace's name."""

    from_: NsRef = Field(HOST, alias="from", description="Namespace the probe runs in.")
    to: CheckTarget | None = Field(
        None, description="Address, or a namespace's name (its first address). Not for dns."
    )
    kind: Literal["ping", "tcp", "dns"] = Field("ping", description="What to probe.")
    family: Literal[4, 6] | None = Field(
        None,
        description="IPv4 or IPv6: `to: <namespace>` means its first address of this family; "
        "a dns check asks for A (4) or AAAA (6) records. Default: the family of `to`'s "
        "address; a dns check takes any.",
    )
    port: int | None = Field(None, ge=1, le=65535, description="TCP port (tcp only).")
    listen: bool = Field(
        False, description="tcp: start a short-lived listener in the target namespace first."
    )
    name: HostName | None = Field(None, description="dns: the name that must resolve.")
    expect: Literal["reach", "blocked"] = Field(
        "reach", description="reach: must answer; blocked: must not (isolation holds)."
    )
    timeout: float = Field(2.0, gt=0, le=30, description="Seconds each probe may take.")


class Group(Strict):
    """Namespaces that belong together in a picture (a Docker network, a Kubernetes node)."""

    name: Label = Field(description="Label of the group.")
    kind: Label = Field("group", description="What the group stands for, e.g. 'k8s node'.")
    members: list[NsRef] = Field(default_factory=list)


class ForwardEndpoint(Strict):
    """Where a forwarded connection ends up: a port on an address of a namespace."""

    netns: NsRef
    address: IpAddr
    port: int = Field(ge=1, le=65535)


class Forward(Strict):
    """Connections to `address:port` in the namespaces `netns` are sent on (DNAT) to one of
    `endpoints`: a Docker published port, a Kubernetes Service's ClusterIP or NodePort.

    Plain data for `nsgen check` and `nsgen diagram`, recorded by the expanders beside the
    iptables rules that do the forwarding; nothing is planned from it."""

    kind: Literal["publish", "ClusterIP", "NodePort"]
    name: str = Field(description="The container that publishes, or the Service.")
    protocol: Literal["tcp", "udp"]
    netns: list[NsRef] = Field(description="Namespaces whose rules forward it.")
    address: IpAddr | None = Field(
        None, description="The address it is forwarded from; none: every local address."
    )
    port: int = Field(ge=1, le=65535)
    endpoints: list[ForwardEndpoint]


EXPANDED = {"nsgen-expanded": True}
"""Validation context of a topology that the expanders built (`Topology.model_validate(data,
context=EXPANDED)`): only such a topology may hold `forwards`."""


class Topology(Strict):
    """A whole topology file."""

    name: TopologyName = Field(description="Names the scripts, /run/nsgen/<name>/ and rule tags.")
    description: description_text = Field(
        "", description="Free text, copied into the scripts' header."
    )
    host: Namespace = Field(default_factory=lambda: Namespace(), description="The root namespace.")
    namespaces: dict[NsName, Namespace] = Field(
        default_factory=dict, description="Named namespaces to create, by name, in order."
    )

    firewall: Literal["iptables", "nftables"] = Field(
        "iptables",
        description="The firewall backend: iptables (iptables-restore, rules tagged "
        "nsgen:<name>) or nftables (nft, a table inet nsgen_<name> of the topology's own). "
        "nsgen render/up/lab --firewall overrides it.",
    )
    checks: list[Check] = Field(default_factory=list, description="Connectivity checks.")
    groups: list[Group] = Field(
        default_factory=list, description="Groupings for diagrams (set by the expanders)."
    )
    # Not part of the file format (the schema leaves it out): the expanders fill it.
    forwards: SkipJsonSchema[list[Forward]] = Field(default_factory=list)

    @field_validator("forwards")
    @classmethod
    def _forwards_come_from_expanders(
        cls, value: list[Forward], info: ValidationInfo
    ) -> list[Forward]:
        if value and not (info.context or {}).get("nsgen-expanded"):
            raise ValueError(
                "not a key of the file: nsgen records forwards itself, from `publish:` of "
                "containers and from `services:` of a cluster"
            )
        return value

    def spaces(self) -> list[tuple[str, Namespace]]:
        """Every namespace of the topology, root first, then named ones in declaration order."""
        return [(HOST, self.host), *self.namespaces.items()]

    def first_address(self, netns: str, family: int | None = None) -> str | None:
        """The address a check `to: <namespace>` means: the namespace's first declared address
        (of a veth end in it, either side of the pair declaring it, then of its bridges), of
        `family` if given."""

        def first(addresses: list[str]) -> str | None:
            for address in addresses:
                ip = ip_interface(address).ip
                if family is None or ip.version == family:
                    return str(ip)
            return None

        for space, spec in self.spaces():
            for iface in spec.interfaces:
                found = first(iface.addresses) if space == netns else None
                if found is None and iface.peer.netns == netns:
                    found = first(iface.peer.addresses)
                if found is not None:
                    return found
            if space == netns:
                for bridge in spec.bridges.values():
                    found = first(bridge.addresses)
                    if found is not None:
                        return found
        return None


Family = Literal[4, 6]
