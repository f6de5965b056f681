"""Kubernetes-style vocabulary: a `cluster:` of nodes, pods and Services, expanded into plain
core objects (namespaces, bridges, veth pairs, routes, VXLAN/ARP/FDB entries, iptables chains).

What each generated object stands in for (docs/kubernetes.md tells the whole story):

- the node network: a bridge in the root namespace, the host on its last address as every
  node's gateway (the machine's LAN and router);
- a node: a namespace with `eth0` on the node network, the pod bridge `cni0` on the first
  address of its pod subnet (the bridge CNI plugin) and forwarding on;
- a pod: a namespace whose `eth0` is a veth to its node's cni0, addressed in order from the
  node's pod subnet (host-local IPAM), default route via cni0;
- cross-node pod traffic: flannel's host-gw routes, or its VXLAN device `flannel.1` with the
  route, ARP and FDB entries flannel installs for every other node;
- Services: kube-proxy, in every node (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, KUBE-NODEPORTS,
  KUBE-MARK-MASQ, KUBE-POSTROUTING; REJECT rules for Services without endpoints): its
  iptables mode's chains, with the Services found through dispatches, which the nftables
  backend spells as kube-proxy's nftables mode does (verdict maps, numgen); and each pod's
  /etc/hosts as a stand-in for cluster DNS, with kubelet's search path in its resolv.conf
  and a nameserver that fails at once for any other name;
- dual stack (`ipv6: true`): every node, pod and cni0 gets an address of each family, flannel
  a route per family (host-gw) or a second VTEP flannel-v6.1 over the nodes' IPv6 addresses
  (vxlan), and a Service its ClusterIPs by `ip_families` and `ip_family_policy`, programmed
  by kube-proxy's second proxier into ip6tables with the same chain names.

Every name and address is derived deterministically from the declaration order, so the same
file always gives the same scripts.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, TypeAdapter, ValidationError

from nsgen.errors import Problem
from nsgen.fields import HOST, HostName, IfName, IpAddr, NsName, Strict, Subnet, shown
from nsgen.messages import pydantic_problems
from nsgen.model import EXPANDED, Topology
from nsgen.names import near_name, peer_name, unique_short_name

KEYS = ("cluster",)

NODE_PORT_RANGE = (30000, 32767)
"""kube-apiserver's default --service-node-port-range."""
MASQ_MARK = "0x4000"
"""The packet mark kube-proxy's KUBE-MARK-MASQ sets (its --iptables-masquerade-bit 14)."""
POD_BRIDGE = "cni0"
NODE_UPLINK = "eth0"
POD_IFNAME = "eth0"
VXLAN_DEVICE = "flannel.1"
VXLAN_VNI = 1
VXLAN_PORT = 8472
"""flannel's VXLAN defaults: VNI 1 (hence the device name flannel.1) and the Linux UDP port."""
UNDERLAY_MTU = 1500
"""The MTU of a node's eth0 (a veth end's default)."""
VXLAN_MTU = UNDERLAY_MTU - 50
"""The overlay's MTU in vxlan mode, as flannel sets it: the underlay's less the 50 bytes VXLAN
adds to each frame (1450). flannel.1 gets it, and flannel's CNI plugin hands it (FLANNEL_MTU)
to the bridge CNI plugin, which gives it to cni0 and to both ends of every pod's veth."""
SERVICE_NAME_MAX = 15
"""So that KUBE-SEP-<NAME>-<n> fits in an iptables chain name (28 characters)."""
FORWARD_SYSCTL = "net.ipv4.ip_forward"
FORWARD_SYSCTL6 = "net.ipv6.conf.all.forwarding"
VXLAN_DEVICE6 = "flannel-v6.1"
"""flannel's VTEP for IPv6: a second VXLAN device, same VNI and port, over the nodes' IPv6."""
DEFAULT_POD_CIDR6 = "fd00:10:244::/56"
DEFAULT_SERVICE_CIDR6 = "fd00:10:96::/112"
"""kind's defaults for a dual-stack cluster."""
DEFAULT_NODE_SUBNET6 = "fd00:10:10::/64"
FAMILY_NAMES = {4: "IPv4", 6: "IPv6"}

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
AnyInterface = ipaddress.IPv4Interface | ipaddress.IPv6Interface


# ---- the vocabulary --------------------------------------------------------------------------

_SERVICE_RE = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")


def _service_name(value: str) -> str:
    if not _SERVICE_RE.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a valid service name: use lower-case letters, digits "
            "and '-', starting with a letter and not ending with '-' (a DNS label, "
            "as in Kubernetes)"
        )
    if len(value) > SERVICE_NAME_MAX:
        raise ValueError(
            f"{shown(value)} is not a valid service name: {len(value)} characters, over "
            f"the limit of {SERVICE_NAME_MAX} (its chain KUBE-SEP-<NAME>-<n> must "
            "fit in 28)"
        )
    return value


def _port(value: int) -> int:
    if not 1 <= value <= 65535:
        raise ValueError(f"{value} is not a port number (1-65535)")
    return value


def _node_port(value: int) -> int:
    low, high = NODE_PORT_RANGE
    if not low <= value <= high:
        raise ValueError(f"{value} is outside the NodePort range {low}-{high}")
    return value


ServiceName = Annotated[str, AfterValidator(_service_name)]
Port = Annotated[int, AfterValidator(_port)]
NodePortNumber = Annotated[int, AfterValidator(_node_port)]


class NodeNetwork(Strict):
    """The network the nodes' eth0 share: a bridge in the root namespace."""

    bridge: IfName = Field("k8s-nodes", description="Bridge in the root namespace.")
    subnet: Subnet = Field(
        "10.10.0.0/24",
        description="IPv4 subnet; the host takes its last address (the nodes' gateway), the "
        "nodes take the first ones in declaration order.",
    )
    subnet_ipv6: Subnet | None = Field(
        None,
        description=f"IPv6 subnet (a dual-stack cluster; default {DEFAULT_NODE_SUBNET6}): "
        "each node and the host take the address with the same host part as their IPv4 one "
        "(10.10.0.1 and fd00:10:10::1; the host .254 and ::fe).",
    )


class Node(Strict):
    """A node: a namespace acting as a Kubernetes node host."""

    pods: list[NsName] = Field(
        default_factory=list,
        description="Pods scheduled on this node; each is a namespace, addressed in order.",
    )


class Service(Strict):
    """A Kubernetes Service, as kube-proxy (iptables mode) implements it on every node."""

    type: Literal["ClusterIP", "NodePort"] = Field(
        "ClusterIP", description="NodePort: also reachable on every node's address."
    )
    cluster_ip: IpAddr | None = Field(
        None, description="Virtual IP in service_cidr. Default: the next free one, in order."
    )
    protocol: Literal["TCP", "UDP"] = Field("TCP", description="Transport protocol.")
    port: Port = Field(description="Port of the cluster IP.")
    target_port: Port | None = Field(None, description="Port on the pods. Default: port.")
    node_port: NodePortNumber | None = Field(
        None,
        description="NodePort only: the port on every node (30000-32767). Default: the "
        "next free one from 30000, in order.",
    )
    endpoints: list[NsName] = Field(
        default_factory=list,
        description="Pods that serve it (what a selector would match). None: connections are "
        "rejected, as kube-proxy does.",
    )
    ip_families: list[Literal["IPv4", "IPv6"]] | None = Field(
        None,
        description="Its families, the first the primary one (spec.ipFamilies). Default: "
        "those of cluster_ip(s), else by ip_family_policy, IPv4 first.",
    )
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] | None = Field(
        None,
        description="spec.ipFamilyPolicy. SingleStack (default): one family. "
        "PreferDualStack: both if the cluster is dual-stack. RequireDualStack: both, an "
        "error if the cluster is not.",
    )
    cluster_ips: list[IpAddr] | None = Field(
        None,
        description="A ClusterIP per family, in ip_families' order (spec.clusterIPs); "
        "cluster_ip is the first. Default: the next free one of each family's service CIDR.",
    )


class Cluster(Strict):
    """The `cluster:` key."""

    mode: Literal["host-gw", "vxlan"] = Field(
        "host-gw", description="How pod traffic crosses nodes (flannel's backends)."
    )
    node_network: NodeNetwork = Field(default_factory=NodeNetwork)
    pod_cidr: Subnet = Field(
        "10.244.0.0/16", description="Pod network (kube-controller-manager --cluster-cidr)."
    )
    node_cidr_mask_size: int = Field(
        24, description="Prefix length of each node's pod subnet (--node-cidr-mask-size)."
    )
    service_cidr: Subnet = Field(
        "10.96.0.0/12", description="Range of cluster IPs (--service-cluster-ip-range)."
    )
    ipv6: bool = Field(
        False,
        description="Dual stack: an IPv6 pod CIDR, service CIDR and node subnet beside the "
        "IPv4 ones (IPv4 stays the primary family).",
    )
    pod_cidr_ipv6: Subnet | None = Field(
        None,
        description=f"IPv6 pod network (the second --cluster-cidr; default {DEFAULT_POD_CIDR6}).",
    )
    node_cidr_mask_size_ipv6: int = Field(
        64, description="Prefix length of each node's IPv6 pod subnet (--node-cidr-mask-size-ipv6)."
    )
    service_cidr_ipv6: Subnet | None = Field(
        None,
        description="Range of IPv6 cluster IPs (the second --service-cluster-ip-range; default "
        f"{DEFAULT_SERVICE_CIDR6}).",
    )
    cluster_domain: HostName = Field(
        "cluster.local", description="DNS domain of service names (kubelet --cluster-domain)."
    )
    pod_hosts: bool = Field(
        True,
        description="Write each pod's /etc/hosts: its own name and every service's "
        "(a stand-in for cluster DNS).",
    )
    nodes: dict[NsName, Node] = Field(description="Nodes by name, in order.")
    services: dict[ServiceName, Service] = Field(default_factory=dict)


class ClusterSugar(Strict):
    """The keys this expander owns, as one model."""

    cluster: Cluster = Field(description="A Kubernetes-style cluster (docs/kubernetes.md).")


SCHEMA_MODEL = ClusterSugar
"""For `nsgen schema`: the model whose fields are this expander's KEYS."""


# ---- the layout: every derived name and address ----------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    pod: str
    address: str
    address6: str | None = None

    def address_of(self, family: int) -> str:
        address = self.address if family == 4 else self.address6
        assert address is not None
        return address


@dataclass(frozen=True)
class ResolvedService:
    """A Service with its defaults filled in."""

    name: str
    type: str
    cluster_ip: str
    """The primary family's ClusterIP (spec.clusterIP)."""
    protocol: str
    port: int
    target_port: int
    node_port: int | None
    endpoints: list[Endpoint]
    cluster_ips: dict[int, str] = field(default_factory=dict)
    """A ClusterIP per family, the primary first (spec.clusterIPs)."""

    @property
    def chain_id(self) -> str:
        return self.name.upper()

    @property
    def families(self) -> tuple[int, ...]:
        return tuple(self.cluster_ips) or (4,)


@dataclass(frozen=True)
class PodLayout:
    name: str
    address: ipaddress.IPv4Interface
    host_veth: str
    address6: ipaddress.IPv6Interface | None = None


@dataclass(frozen=True)
class NodeLayout:
    name: str
    index: int
    address: ipaddress.IPv4Interface
    """eth0 on the node network."""
    subnet: ipaddress.IPv4Network
    """The node's pod subnet (its spec.podCIDR)."""
    bridge_address: ipaddress.IPv4Interface
    """cni0: the first address of the pod subnet, the pods' gateway."""
    host_veth: str
    """The root namespace's end of eth0's veth pair, on the node-network bridge."""
    vtep_address: ipaddress.IPv4Interface
    """flannel.1: the pod subnet's network address as a /32."""
    vtep_mac: str
    pods: list[PodLayout] = field(default_factory=list)
    six: NodeLayout6 | None = None
    """The same in IPv6, in a dual-stack cluster."""


@dataclass(frozen=True)
class NodeLayout6:
    """A node's IPv6 half: eth0's and cni0's second addresses, its second podCIDR and the
    VTEP flannel-v6.1."""

    address: ipaddress.IPv6Interface
    subnet: ipaddress.IPv6Network
    bridge_address: ipaddress.IPv6Interface
    vtep_address: ipaddress.IPv6Interface
    vtep_mac: str


@dataclass(frozen=True)
class Layout6:
    node_network: ipaddress.IPv6Network
    gateway: ipaddress.IPv6Interface
    pod_cidr: ipaddress.IPv6Network


@dataclass(frozen=True)
class Layout:
    node_network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Interface
    pod_cidr: ipaddress.IPv4Network
    nodes: list[NodeLayout]
    services: list[ResolvedService]
    six: Layout6 | None = None
    """The IPv6 ranges of a dual-stack cluster."""

    @property
    def families(self) -> tuple[int, ...]:
        return (4, 6) if self.six is not None else (4,)

    def pods_of(self, family: int) -> str:
        """The pod CIDR of a family."""
        return str(self.pod_cidr if family == 4 else self._six.pod_cidr)

    @property
    def _six(self) -> Layout6:
        assert self.six is not None
        return self.six


def veth_name(seed: str, taken: set[str]) -> str:
    """'veth' + 7 hex digits of sha256(seed), like the bridge CNI plugin's host-side names;
    on the (unlikely) clash with a name in `taken`, the seed gets a counter."""
    return unique_short_name(seed, taken)


def vtep_mac(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """A locally administered MAC from the VTEP's address: 0a:58 and the four address bytes
    (IPv6: four bytes of the address's sha256, the address being longer than a MAC)."""
    tail = address.packed if address.version == 4 else hashlib.sha256(address.packed).digest()
    return ":".join(f"{b:02x}" for b in (0x0A, 0x58, *tail[:4]))


def ranges6(cluster: Cluster) -> tuple[str, str, str]:
    """The IPv6 node subnet, pod CIDR and service CIDR of a dual-stack cluster, defaults
    filled in."""
    return (
        cluster.node_network.subnet_ipv6 or DEFAULT_NODE_SUBNET6,
        cluster.pod_cidr_ipv6 or DEFAULT_POD_CIDR6,
        cluster.service_cidr_ipv6 or DEFAULT_SERVICE_CIDR6,
    )


def _nth_subnet(cidr: ipaddress.IPv6Network, prefix: int, n: int) -> ipaddress.IPv6Network:
    """The n-th (0-based) subnet of length `prefix` in `cidr`, without enumerating it."""
    base = int(cidr.network_address) + n * 2 ** (128 - prefix)
    return ipaddress.IPv6Network((base, prefix))


def _host_names(topology: Topology) -> set[str]:
    """Interface names the core part of the file puts in the root namespace (derived ones as
    nsgen.names derives them)."""
    names = set(topology.host.external) | set(topology.host.bridges) | set(topology.host.vxlans)
    for iface in topology.host.interfaces:
        if iface.name:
            names.add(near_name(HOST, iface))
    for netns, spec in topology.spaces():
        for iface in spec.interfaces:
            if iface.peer.netns == HOST:
                names.add(peer_name(netns, iface))
    return names


def _layout6(cluster: Cluster, gateway: ipaddress.IPv4Interface) -> Layout6 | None:
    """The IPv6 ranges of a dual-stack cluster (None: single stack). The host's address on
    the node network has the host part of its IPv4 one (.254 gives ::fe)."""
    if not cluster.ipv6:
        return None
    node_text, pod_text, _ = ranges6(cluster)
    node_net = ipaddress.IPv6Network(node_text)
    host_part = int(gateway.ip) - int(gateway.network.network_address)
    at = node_net.network_address + host_part
    return Layout6(
        node_net,
        ipaddress.IPv6Interface(f"{at}/{node_net.prefixlen}"),
        ipaddress.IPv6Network(pod_text),
    )


def _node6(cluster: Cluster, six: Layout6, index: int) -> NodeLayout6:
    """A node's IPv6 addresses: its index-th pod subnet (cni0 ::1, pods ::2 ...), eth0 at
    the host part of its IPv4 address, the VTEP at the subnet's first address."""
    subnet = _nth_subnet(six.pod_cidr, cluster.node_cidr_mask_size_ipv6, index)
    prefix = subnet.prefixlen
    vtep = ipaddress.IPv6Interface(f"{subnet.network_address}/128")
    return NodeLayout6(
        address=ipaddress.IPv6Interface(
            f"{six.node_network.network_address + index + 1}/{six.node_network.prefixlen}"
        ),
        subnet=subnet,
        bridge_address=ipaddress.IPv6Interface(f"{subnet.network_address + 1}/{prefix}"),
        vtep_address=vtep,
        vtep_mac=vtep_mac(vtep.ip),
    )


def build_layout(topology: Topology, cluster: Cluster) -> Layout:
    """Every address and name of a cluster that passed `cluster_problems`."""
    # Every address is counted from its subnet's start, never listed: a /8 node network or
    # pod CIDR holds millions of addresses, and a cluster uses a few of them.
    node_net = ipaddress.IPv4Network(cluster.node_network.subnet)
    pod_cidr = ipaddress.IPv4Network(cluster.pod_cidr)
    gateway = ipaddress.IPv4Interface((node_net.broadcast_address - 1, node_net.prefixlen))
    six = _layout6(cluster, gateway)
    mask = cluster.node_cidr_mask_size
    taken_in_host = _host_names(topology)
    nodes: list[NodeLayout] = []
    pod_address: dict[str, str] = {}
    pod_address6: dict[str, str] = {}
    for index, (name, node) in enumerate(cluster.nodes.items()):
        subnet = ipaddress.IPv4Network(
            (int(pod_cidr.network_address) + index * 2 ** (32 - mask), mask)
        )
        prefix = subnet.prefixlen
        hosts = (subnet.network_address + n for n in range(1, subnet.num_addresses - 1))
        bridge_address = ipaddress.IPv4Interface((next(hosts), prefix))
        vtep = ipaddress.IPv4Interface((subnet.network_address, 32))
        layout = NodeLayout(
            name=name,
            index=index,
            address=ipaddress.IPv4Interface(
                (node_net.network_address + 1 + index, node_net.prefixlen)
            ),
            subnet=subnet,
            bridge_address=bridge_address,
            host_veth=veth_name(f"{topology.name}/{name}", taken_in_host),
            vtep_address=vtep,
            vtep_mac=vtep_mac(vtep.ip),
            six=None if six is None else _node6(cluster, six, index),
        )
        taken_in_node: set[str] = {POD_BRIDGE, NODE_UPLINK, VXLAN_DEVICE, VXLAN_DEVICE6}
        for number, pod in enumerate(node.pods, start=2):
            address = ipaddress.IPv4Interface((next(hosts), prefix))
            address6 = None
            if layout.six is not None:
                subnet6 = layout.six.subnet
                address6 = ipaddress.IPv6Interface(
                    f"{subnet6.network_address + number}/{subnet6.prefixlen}"
                )
                pod_address6[pod] = str(address6.ip)
            layout.pods.append(
                PodLayout(
                    pod,
                    address,
                    veth_name(f"{topology.name}/{name}/{pod}", taken_in_node),
                    address6,
                )
            )
            pod_address[pod] = str(address.ip)
        nodes.append(layout)
    services = _resolve_services(cluster, pod_address, pod_address6)
    return Layout(node_net, gateway, pod_cidr, nodes, services, six)


def _family(address: str) -> int:
    return 6 if ":" in address else 4


def given_ips(service: Service) -> list[str]:
    """The ClusterIPs a Service's file gives, primary first (cluster_ips, else cluster_ip)."""
    if service.cluster_ips:
        return list(service.cluster_ips)
    return [service.cluster_ip] if service.cluster_ip else []


def service_families(service: Service, dual: bool) -> tuple[int, ...]:
    """A valid Service's families, the primary first, as the API server decides them: its
    ip_families, else the families of the ClusterIPs it gives, else the cluster's (IPv4
    first); one for SingleStack, both for the DualStack policies when the cluster has both."""
    order = [4 if f == "IPv4" else 6 for f in service.ip_families or []]
    order = order or [_family(ip) for ip in given_ips(service)]
    first = order[0] if order else 4
    if (service.ip_family_policy or "SingleStack") == "SingleStack" or not dual:
        return (first,)
    return (first, 6 if first == 4 else 4)


def _free_addresses(
    net: ipaddress.IPv4Network | ipaddress.IPv6Network, used: set[str]
) -> Iterator[str]:
    """The addresses of `net` not in `used`, in order, counted from its start (a /12 or a
    /112 holds a million addresses or more; only a few are ever asked for)."""
    first, count = net.network_address + 1, net.num_addresses - 2
    return (str(first + n) for n in range(count) if str(first + n) not in used)


def _resolve_services(
    cluster: Cluster, pod_address: dict[str, str], pod_address6: dict[str, str]
) -> list[ResolvedService]:
    nets = {4: ipaddress.ip_network(cluster.service_cidr)}
    if cluster.ipv6:
        nets[6] = ipaddress.ip_network(ranges6(cluster)[2])
    used_ips = {ip for s in cluster.services.values() for ip in given_ips(s)}
    used_ports = {s.node_port for s in cluster.services.values() if s.node_port}
    free_ips = {family: _free_addresses(net, used_ips) for family, net in nets.items()}
    free_ports = (
        p for p in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if p not in used_ports
    )
    resolved = []
    for name, service in cluster.services.items():
        node_port = service.node_port
        if service.type == "NodePort" and node_port is None:
            node_port = next(free_ports)
        given = {_family(ip): ip for ip in given_ips(service)}
        ips = {
            family: given.get(family) or next(free_ips[family])
            for family in service_families(service, cluster.ipv6)
        }
        resolved.append(
            ResolvedService(
                name=name,
                type=service.type,
                cluster_ip=next(iter(ips.values())),
                protocol=service.protocol.lower(),
                port=service.port,
                target_port=service.target_port or service.port,
                node_port=node_port,
                endpoints=[
                    Endpoint(pod, pod_address[pod], pod_address6.get(pod))
                    for pod in service.endpoints
                ],
                cluster_ips=ips,
            )
        )
    return resolved


# ---- kube-proxy and flannel rules ------------------------------------------------------------


def svc_chain(service: ResolvedService) -> str:
    return f"KUBE-SVC-{service.chain_id}"


def sep_chain(service: ResolvedService, number: int) -> str:
    return f"KUBE-SEP-{service.chain_id}-{number}"


def ext_chain(service: ResolvedService) -> str:
    return f"KUBE-EXT-{service.chain_id}"


def node_chains(layout: Layout) -> list[dict[str, Any]]:
    """Every own chain in a node, in creation order (nsgen.kinds.rules.Chain's fields). A
    NodePort Service's KUBE-EXT-<NAME> is inline: nftables makes it a chain (kube-proxy's
    external-*), iptables writes its two rules into KUBE-NODEPORTS (as this nsgen always did)."""
    services = layout.services
    if not services:
        return []
    chains: list[dict[str, Any]] = [{"table": "nat", "name": "KUBE-SERVICES"}]
    if any(s.type == "NodePort" for s in services):
        chains.append({"table": "nat", "name": "KUBE-NODEPORTS"})
    chains += [
        {"table": "nat", "name": "KUBE-MARK-MASQ"},
        {"table": "nat", "name": "KUBE-POSTROUTING"},
    ]
    for service in services:
        if service.endpoints:
            chains.append({"table": "nat", "name": svc_chain(service)})
            chains += [
                {"table": "nat", "name": sep_chain(service, i)}
                for i in range(1, len(service.endpoints) + 1)
            ]
            if service.type == "NodePort":
                chains.append({"table": "nat", "name": ext_chain(service), "inline": True})
    empty = [s for s in services if not s.endpoints]
    if empty:
        chains.append({"table": "filter", "name": "KUBE-SERVICES"})
    if any(s.type == "NodePort" for s in empty):
        chains.append({"table": "filter", "name": "KUBE-EXTERNAL-SERVICES"})
    return chains


def node_rules(layout: Layout) -> list[dict[str, Any]]:
    """The firewall rules of every node, in order, as data (nsgen.kinds.rules.Rule's fields):
    flannel's masquerade of pod traffic leaving the pod network, then kube-proxy's, chain by
    chain; in a dual-stack cluster the same again for IPv6 (kube-proxy runs a proxier per
    family, with the same chain names, each holding the Services of its family). The
    Services are found through dispatches, as kube-proxy's nftables mode finds them:
    KUBE-SERVICES by ClusterIP . protocol . port (its map service-ips; IPv6's is
    service-ips-v6, kube-proxy's ip6 table's service-ips), KUBE-NODEPORTS by protocol . node
    port (service-nodeports), and each KUBE-SVC-<NAME> picks an endpoint at random (numgen;
    the statistic match's cascade in iptables)."""
    rules: list[dict[str, Any]] = []
    for family in layout.families:
        rules += _family_rules(layout, family)
    return rules


def _family_rules(layout: Layout, family: int) -> list[dict[str, Any]]:
    """node_rules of one family."""
    pods = layout.pods_of(family)
    host = "/32" if family == 4 else "/128"
    maps = "" if family == 4 else "-v6"  # one table holds both families' maps in nftables
    rules: list[dict[str, Any]] = []

    def add(table: str, chain: str, **fields: Any) -> None:
        said = {"family": 6} if family == 6 else {}  # IPv4 is the default
        rules.append({"table": table, "chain": chain, **said, **fields})

    def dnat_to(address: str, port: int) -> str:
        return f"{address}:{port}" if family == 4 else f"[{address}]:{port}"

    services = [s for s in layout.services if family in s.families]
    if services:
        add("nat", "PREROUTING", jump="KUBE-SERVICES")
        add("nat", "OUTPUT", jump="KUBE-SERVICES")
        add("nat", "POSTROUTING", jump="KUBE-POSTROUTING")
    add("nat", "POSTROUTING", source=pods, jump="MASQUERADE", **{"not": {"destination": pods}})
    if not services:
        return rules

    add("nat", "KUBE-MARK-MASQ", jump="MARK", or_mark=MASQ_MARK)
    add("nat", "KUBE-POSTROUTING", jump="RETURN", **{"not": {"mark": f"{MASQ_MARK}/{MASQ_MARK}"}})
    add("nat", "KUBE-POSTROUTING", jump="MARK", xor_mark=MASQ_MARK)
    add("nat", "KUBE-POSTROUTING", jump="MASQUERADE")

    served = [s for s in services if s.endpoints]
    if served:
        entries = [
            {
                "destination": f"{service.cluster_ips[family]}{host}",
                "protocol": service.protocol,
                "dport": service.port,
                "jump": svc_chain(service),
            }
            for service in served
        ]
        by = ["destination", "protocol", "dport"]
        dispatch = {"name": f"service-ips{maps}", "by": by, "entries": entries}
        add("nat", "KUBE-SERVICES", dispatch=dispatch)
    if any(s.type == "NodePort" for s in services):
        add("nat", "KUBE-SERVICES", dst_type="LOCAL", jump="KUBE-NODEPORTS")
    external = [s for s in served if s.type == "NodePort"]
    if external:
        entries = [
            {"protocol": s.protocol, "dport": s.node_port, "jump": ext_chain(s)} for s in external
        ]
        dispatch = {
            "name": f"service-nodeports{maps}",
            "by": ["protocol", "dport"],
            "entries": entries,
        }
        add("nat", "KUBE-NODEPORTS", dispatch=dispatch)
    for service in external:
        add("nat", ext_chain(service), jump="KUBE-MARK-MASQ")
        add("nat", ext_chain(service), jump=svc_chain(service))
    for service in served:
        chain = svc_chain(service)
        add(
            "nat",
            chain,
            destination=f"{service.cluster_ips[family]}{host}",
            protocol=service.protocol,
            dport=service.port,
            jump="KUBE-MARK-MASQ",
            **{"not": {"source": pods}},
        )
        count = len(service.endpoints)
        picks = [{"jump": sep_chain(service, i)} for i in range(1, count + 1)]
        add("nat", chain, dispatch={"by": "random", "entries": picks})
        for i, endpoint in enumerate(service.endpoints, start=1):
            sep = sep_chain(service, i)
            address = endpoint.address_of(family)
            add("nat", sep, source=f"{address}{host}", jump="KUBE-MARK-MASQ")
            add(
                "nat",
                sep,
                protocol=service.protocol,
                jump="DNAT",
                to_destination=dnat_to(address, service.target_port),
            )

    empty = [s for s in services if not s.endpoints]
    if empty:
        new = {"ctstate": ["NEW"]}
        add("filter", "FORWARD", **new, jump="KUBE-SERVICES")
        add("filter", "OUTPUT", **new, jump="KUBE-SERVICES")
        external = [s for s in empty if s.type == "NodePort"]
        if external:
            add("filter", "INPUT", **new, jump="KUBE-EXTERNAL-SERVICES")
            add("filter", "FORWARD", **new, jump="KUBE-EXTERNAL-SERVICES")
        unreachable = "icmp-port-unreachable" if family == 4 else "icmp6-port-unreachable"
        reject = {"jump": "REJECT", "reject_with": unreachable}
        for service in empty:
            add(
                "filter",
                "KUBE-SERVICES",
                destination=f"{service.cluster_ips[family]}{host}",
                protocol=service.protocol,
                dport=service.port,
                **reject,
            )
        for service in external:
            add(
                "filter",
                "KUBE-EXTERNAL-SERVICES",
                dst_type="LOCAL",
                protocol=service.protocol,
                dport=service.node_port,
                **reject,
            )
    return rules


# ---- validation ------------------------------------------------------------------------------


def _is_host_name(name: str) -> bool:
    try:
        TypeAdapter(HostName).validate_python(name)
    except ValidationError:
        return False
    return True


def _model_problems(exc: ValidationError) -> list[Problem]:
    """The vocabulary's pydantic errors, with a hint for an unknown key."""
    return pydantic_problems(exc, ("cluster",), Cluster)


def _core_networks(topology: Topology) -> list[tuple[AnyNetwork, str]]:
    """Every subnet the core part of the file attaches somewhere, with where it is declared."""
    found: list[tuple[AnyNetwork, str]] = []
    for netns, spec in topology.spaces():
        base = HOST if netns == HOST else f"namespaces.{netns}"
        owners: list[tuple[list[str], str]] = [
            (bridge.addresses, f"{base}.bridges.{name}") for name, bridge in spec.bridges.items()
        ]
        for i, iface in enumerate(spec.interfaces):
            owners.append((iface.addresses, f"{base}.interfaces[{i}]"))
            owners.append((iface.peer.addresses, f"{base}.interfaces[{i}].peer"))
        owners += [(vx.addresses, f"{base}.vxlans.{name}") for name, vx in spec.vxlans.items()]
        for addresses, where in owners:
            found += [(ipaddress.ip_interface(a).network, where) for a in addresses]
    return found


def _overlaps(
    topology: Topology,
    path: str,
    what: str,
    text: str,
    net: AnyNetwork,
    earlier: Mapping[str, AnyNetwork],
    ranges: Mapping[str, tuple[str, str]],
) -> list[Problem]:
    """The problems of one cluster range `net` (at `path`, named `what`, written `text`): it
    overlaps a range checked before it, or a subnet of its family attached in the core part."""
    problems = [
        Problem(path, f"{text} overlaps {ranges[other_path][0]} {other} ({other_path})")
        for other_path, other in earlier.items()
        if net.overlaps(other)
    ]
    problems += [
        Problem(path, f"{what} {text} overlaps {core}, attached at {where}")
        for core, where in _core_networks(topology)
        if core.version == net.version and net.overlaps(core)
    ]
    return problems


def _network_problems(topology: Topology, cluster: Cluster) -> list[Problem]:
    problems: list[Problem] = []
    ranges = {
        "cluster.node_network.subnet": ("the node network", cluster.node_network.subnet),
        "cluster.pod_cidr": ("the pod CIDR", cluster.pod_cidr),
        "cluster.service_cidr": ("the service CIDR", cluster.service_cidr),
    }
    nets: dict[str, ipaddress.IPv4Network] = {}
    for path, (what, text) in ranges.items():
        net = ipaddress.ip_network(text)
        if not isinstance(net, ipaddress.IPv4Network):
            problems.append(
                Problem(
                    path,
                    f"{text} is IPv6: {path.split('.')[-1]} is the IPv4 range; the IPv6 one "
                    f"goes in {path.split('.')[-1]}_ipv6 (with ipv6: true)",
                )
            )
            continue
        problems += _overlaps(topology, path, what, text, net, nets, ranges)
        nets[path] = net
    if "cluster.pod_cidr" in nets:
        pod_prefix = nets["cluster.pod_cidr"].prefixlen
        mask = cluster.node_cidr_mask_size
        if not pod_prefix <= mask <= 30:
            problems.append(
                Problem(
                    "cluster.node_cidr_mask_size",
                    f"{mask} must lie between the pod CIDR's prefix length ({pod_prefix}) and 30",
                )
            )
    if "cluster.node_network.subnet" in nets and nets["cluster.node_network.subnet"].prefixlen > 30:
        problems.append(
            Problem(
                "cluster.node_network.subnet",
                f"{cluster.node_network.subnet} "
                "has no room for a gateway and a node (use /30 or larger)",
            )
        )
    return problems + _network_problems6(topology, cluster)


def _network_problems6(topology: Topology, cluster: Cluster) -> list[Problem]:
    """The IPv6 ranges: given only with ipv6: true, IPv6, apart from each other and from the
    core part's IPv6 subnets, with room for the nodes and their pods."""
    given = {
        "cluster.node_network.subnet_ipv6": cluster.node_network.subnet_ipv6,
        "cluster.pod_cidr_ipv6": cluster.pod_cidr_ipv6,
        "cluster.service_cidr_ipv6": cluster.service_cidr_ipv6,
    }
    if not cluster.ipv6:
        return [Problem(path, "needs ipv6: true") for path, value in given.items() if value]
    problems: list[Problem] = []
    node_text, pod_text, service_text = ranges6(cluster)
    ranges = {
        "cluster.node_network.subnet_ipv6": ("the IPv6 node network", node_text),
        "cluster.pod_cidr_ipv6": ("the IPv6 pod CIDR", pod_text),
        "cluster.service_cidr_ipv6": ("the IPv6 service CIDR", service_text),
    }
    nets: dict[str, ipaddress.IPv6Network] = {}
    for path, (what, text) in ranges.items():
        net = ipaddress.ip_network(text)
        if not isinstance(net, ipaddress.IPv6Network):
            problems.append(
                Problem(path, f"{text} is IPv4: the IPv4 range goes in the key without _ipv6")
            )
            continue
        problems += _overlaps(topology, path, what, text, net, nets, ranges)
        nets[path] = net
    pods6 = nets.get("cluster.pod_cidr_ipv6")
    mask6 = cluster.node_cidr_mask_size_ipv6
    if pods6 is not None:
        if not pods6.prefixlen <= mask6 <= 120:
            problems.append(
                Problem(
                    "cluster.node_cidr_mask_size_ipv6",
                    f"{mask6} must lie between the IPv6 pod CIDR's prefix length "
                    f"({pods6.prefixlen}) and 120",
                )
            )
        elif len(cluster.nodes) > 2 ** (mask6 - pods6.prefixlen):
            problems.append(
                Problem(
                    "cluster.pod_cidr_ipv6",
                    f"{pods6} holds {2 ** (mask6 - pods6.prefixlen)} node subnets of /{mask6}, "
                    f"too few for {len(cluster.nodes)} nodes",
                )
            )
    node6 = nets.get("cluster.node_network.subnet_ipv6")
    node4 = ipaddress.ip_network(cluster.node_network.subnet)
    if node6 is not None and node6.num_addresses < node4.num_addresses:
        problems.append(
            Problem(
                "cluster.node_network.subnet_ipv6",
                f"{node6} is smaller than the IPv4 node network {node4}: each node's IPv6 "
                "address has the host part of its IPv4 one",
            )
        )
    service6 = nets.get("cluster.service_cidr_ipv6")
    if service6 is not None and service6.prefixlen > 126:
        problems.append(
            Problem("cluster.service_cidr_ipv6", f"{service6} has no room for a cluster IP")
        )
    return problems


def cluster_problems(topology: Topology, cluster: Cluster) -> list[Problem]:
    """Everything wrong with a cluster that its field types cannot tell, in file order."""
    problems = _network_problems(topology, cluster)
    if problems:
        return problems
    node_net = ipaddress.IPv4Network(cluster.node_network.subnet)
    pod_cidr = ipaddress.IPv4Network(cluster.pod_cidr)
    service_net = ipaddress.IPv4Network(cluster.service_cidr)
    mask = cluster.node_cidr_mask_size

    # The node-network bridge and forwarding in the root namespace.
    bridge = cluster.node_network.bridge
    if bridge in _host_names(topology):
        problems.append(
            Problem(
                "cluster.node_network.bridge",
                f"{bridge!r} is already an interface of the root namespace (declared under host)",
            )
        )
    forward = topology.host.sysctls.get(FORWARD_SYSCTL)
    if forward is not None and forward != "1":
        problems.append(
            Problem(
                f"host.sysctls.{FORWARD_SYSCTL}",
                f"is {forward}, but the cluster "
                "needs 1: the host routes between the node network and the "
                "uplink",
            )
        )

    # Nodes and pods: namespace names, sizes.
    if not cluster.nodes:
        problems.append(Problem("cluster.nodes", "a cluster needs at least one node"))
    room_nodes = min(2 ** (mask - pod_cidr.prefixlen), node_net.num_addresses - 3)
    if len(cluster.nodes) > room_nodes:
        problems.append(
            Problem(
                "cluster.nodes",
                f"{len(cluster.nodes)} nodes do not fit: room "
                f"for {room_nodes} (the pod CIDR {pod_cidr} holds "
                f"{2 ** (mask - pod_cidr.prefixlen)} node subnets of /{mask}; the "
                f"node network {node_net} has {node_net.num_addresses - 3} "
                "addresses besides the gateway)",
            )
        )
    room_pods = 2 ** (32 - mask) - 3
    declared: dict[str, str] = {name: f"namespaces.{name}" for name in topology.namespaces}
    for name in cluster.nodes:
        path = f"cluster.nodes.{name}"
        if name in declared:
            problems.append(
                Problem(path, f"node name {name!r} is already a namespace (at {declared[name]})")
            )
        else:
            declared[name] = path
    pods: set[str] = set()
    for name, node in cluster.nodes.items():
        for i, pod in enumerate(node.pods):
            path = f"cluster.nodes.{name}.pods[{i}]"
            if cluster.pod_hosts and not _is_host_name(pod):
                problems.append(
                    Problem(
                        path,
                        f"{pod!r} cannot be a pod name while pod_hosts is on: it goes into the "
                        "pod's /etc/hosts, so use letters, digits and '-' (no '_'; '.' only "
                        "between labels)",
                    )
                )
            if pod in declared:
                problems.append(
                    Problem(path, f"pod name {pod!r} is already a namespace (at {declared[pod]})")
                )
            else:
                declared[pod] = path
            pods.add(pod)
        if len(node.pods) > room_pods:
            problems.append(
                Problem(
                    f"cluster.nodes.{name}.pods",
                    f"{len(node.pods)} pods do not "
                    f"fit in a /{mask} pod subnet: room for {room_pods} (its first "
                    f"address is {POD_BRIDGE}'s)",
                )
            )

    # Services.
    ips: dict[str, str] = {}
    node_ports: dict[int, str] = {}
    for name, service in cluster.services.items():
        base = f"cluster.services.{name}"
        family_problems = _service_family_problems(cluster, service, base)
        problems += family_problems
        for path, text in _ips_to_check(service, base, family_problems):
            ip = ipaddress.ip_address(text)
            if ip.version == 6:
                problems += _cluster_ip6_problems(cluster, path, ip, ips, base)
            elif ip in pod_cidr:
                problems.append(Problem(path, f"{ip} falls into the pod CIDR {pod_cidr}"))
            elif ip in node_net:
                problems.append(Problem(path, f"{ip} falls into the node network {node_net}"))
            elif ip not in service_net:
                problems.append(Problem(path, f"{ip} is outside the service CIDR {service_net}"))
            elif ip in (service_net.network_address, service_net.broadcast_address):
                problems.append(
                    Problem(
                        path,
                        f"{ip} is the network or broadcast address of the "
                        f"service CIDR {service_net}",
                    )
                )
            elif str(ip) in ips:
                problems.append(Problem(path, f"{ip} is already the cluster IP of {ips[str(ip)]}"))
            else:
                ips[str(ip)] = base
        if service.node_port is not None:
            path = f"{base}.node_port"
            if service.type != "NodePort":
                problems.append(
                    Problem(
                        path,
                        f"only a NodePort service has a node_port (this "
                        f"one is type {service.type})",
                    )
                )
            elif service.node_port in node_ports:
                problems.append(
                    Problem(
                        path,
                        f"node port {service.node_port} is already used by "
                        f"{node_ports[service.node_port]}",
                    )
                )
            else:
                node_ports[service.node_port] = base
        seen: dict[str, int] = {}
        for i, endpoint in enumerate(service.endpoints):
            path = f"{base}.endpoints[{i}]"
            if endpoint in cluster.nodes:
                problems.append(Problem(path, f"{endpoint!r} is a node, not a pod"))
            elif endpoint not in pods:
                listing = ", ".join(sorted(pods)) or "none"
                problems.append(
                    Problem(path, f"{endpoint!r} is not a pod of the cluster (pods: {listing})")
                )
            elif endpoint in seen:
                problems.append(
                    Problem(
                        path,
                        f"pod {endpoint!r} is already an endpoint (at endpoints[{seen[endpoint]}])",
                    )
                )
            else:
                seen[endpoint] = i
    if cluster.pod_hosts and cluster.services:
        longest = max(cluster.services, key=len)
        fqdn = f"{longest}.default.svc.{cluster.cluster_domain}"
        if len(fqdn) > 253:
            problems.append(
                Problem(
                    "cluster.cluster_domain",
                    f"the service name {fqdn[:40]}... is {len(fqdn)} characters, over the 253 "
                    "of a host name: shorten the cluster domain",
                )
            )
    automatic = sum(
        1
        for s in cluster.services.values()
        if 4 in service_families(s, cluster.ipv6) and not any(":" not in i for i in given_ips(s))
    )
    taken4 = sum(1 for ip in ips if ":" not in ip)
    if automatic > service_net.num_addresses - 2 - taken4:
        problems.append(
            Problem(
                "cluster.services",
                f"the service CIDR {service_net} has too few "
                f"free addresses for {automatic} services without a cluster_ip",
            )
        )
    automatic = sum(
        1 for s in cluster.services.values() if s.type == "NodePort" and s.node_port is None
    )
    if automatic > NODE_PORT_RANGE[1] - NODE_PORT_RANGE[0] + 1 - len(node_ports):
        problems.append(Problem("cluster.services", "too few free node ports left"))
    return problems


def _ips_to_check(
    service: Service, base: str, family_problems: list[Problem]
) -> list[tuple[str, str]]:
    """The ClusterIPs a Service gives, with their paths (none once its families are wrong:
    one problem per cause)."""
    if family_problems:
        return []
    if service.cluster_ips:
        return [(f"{base}.cluster_ips[{i}]", ip) for i, ip in enumerate(service.cluster_ips)]
    return [(f"{base}.cluster_ip", service.cluster_ip)] if service.cluster_ip else []


def _service_family_problems(cluster: Cluster, service: Service, base: str) -> list[Problem]:
    """ip_families, ip_family_policy and the ClusterIPs given, as the API server checks them."""
    problems: list[Problem] = []
    named = service.ip_families or []
    ips = service.cluster_ips or []
    if len(set(named)) != len(named):
        problems.append(Problem(f"{base}.ip_families", "names a family twice"))
    if len(ips) > 2 or len({_family(ip) for ip in ips}) != len(ips):
        problems.append(Problem(f"{base}.cluster_ips", "gives one address per family, at most two"))
    if service.cluster_ip and ips and service.cluster_ip != ips[0]:
        problems.append(
            Problem(
                f"{base}.cluster_ip",
                f"{service.cluster_ip} is not cluster_ips[0] ({ips[0]}): cluster_ip is the "
                "primary family's ClusterIP",
            )
        )
    if problems:
        return problems
    from_ips = [FAMILY_NAMES[_family(ip)] for ip in given_ips(service)]
    if named and from_ips and from_ips != named[: len(from_ips)]:
        problems.append(
            Problem(
                f"{base}.cluster_ips" if ips else f"{base}.cluster_ip",
                f"the addresses are {', '.join(from_ips)}, in another order than ip_families "
                f"({', '.join(named)})",
            )
        )
    for i, family in enumerate(named or from_ips):
        if family == "IPv6" and not cluster.ipv6:
            where = (
                f"{base}.ip_families[{i}]"
                if named
                else (f"{base}.cluster_ips[{i}]" if ips else f"{base}.cluster_ip")
            )
            problems.append(Problem(where, "IPv6, but the cluster has no IPv6 (ipv6: true)"))
    policy = service.ip_family_policy
    two = len(named) == 2 or len(given_ips(service)) == 2
    if two and policy in (None, "SingleStack"):
        problems.append(
            Problem(
                f"{base}.ip_family_policy",
                f"{policy or 'not set'}, but the Service names two families: set "
                "PreferDualStack or RequireDualStack (as Kubernetes requires since 1.23)",
            )
        )
    if policy == "RequireDualStack" and not cluster.ipv6:
        problems.append(
            Problem(
                f"{base}.ip_family_policy",
                "RequireDualStack, but the cluster is IPv4 only (ipv6: true makes it dual-stack)",
            )
        )
    return problems


def _cluster_ip6_problems(
    cluster: Cluster,
    path: str,
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address,
    ips: dict[str, str],
    base: str,
) -> list[Problem]:
    """An IPv6 ClusterIP: inside the IPv6 service CIDR, outside the other IPv6 ranges, not
    the CIDR's first address, not another Service's."""
    node6, pods6, services6 = (ipaddress.ip_network(r) for r in ranges6(cluster))
    if ip in pods6:
        return [Problem(path, f"{ip} falls into the IPv6 pod CIDR {pods6}")]
    if ip in node6:
        return [Problem(path, f"{ip} falls into the IPv6 node network {node6}")]
    if ip not in services6:
        return [Problem(path, f"{ip} is outside the IPv6 service CIDR {services6}")]
    if ip == services6.network_address:
        return [Problem(path, f"{ip} is the first address of the IPv6 service CIDR {services6}")]
    if str(ip) in ips:
        return [Problem(path, f"{ip} is already the cluster IP of {ips[str(ip)]}")]
    ips[str(ip)] = base
    return []


# ---- the expansion ---------------------------------------------------------------------------


def check(sugar: dict[str, Any]) -> list[Problem]:
    """The problems of `cluster:` that need nothing from the core part of the file: its
    fields."""
    try:
        Cluster.model_validate(sugar["cluster"])
    except ValidationError as exc:
        return _model_problems(exc)
    return []


def expand(topology: Topology, sugar: dict[str, Any]) -> tuple[Topology, list[Problem]]:
    """The topology with the cluster's namespaces, links, routes and rules added."""
    try:
        cluster = Cluster.model_validate(sugar["cluster"])
    except ValidationError as exc:
        return topology, _model_problems(exc)
    problems = cluster_problems(topology, cluster)
    if problems:
        return topology, problems
    layout = build_layout(topology, cluster)
    data = topology.model_dump(mode="json", by_alias=True)
    _add_host(data, topology, cluster, layout)
    for node in layout.nodes:
        data["namespaces"][node.name] = _node_namespace(cluster, layout, node)
        for pod in node.pods:
            data["namespaces"][pod.name] = _pod_namespace(cluster, layout, node, pod)
        data["groups"].append(
            {
                "name": node.name,
                "kind": "k8s node",
                "members": [node.name, *(p.name for p in node.pods)],
            }
        )
    data["forwards"] += _forwards(layout)
    try:
        return Topology.model_validate(data, context=EXPANDED), []
    except ValidationError as exc:  # a generated value the core refuses: report it, never hide it
        return topology, pydantic_problems(exc)


def _forwards(layout: Layout) -> list[dict[str, Any]]:
    """Each Service as plain data (`Topology.forwards`): its ClusterIP and, for a NodePort
    Service, its node port on every local address of the nodes, both sent to the endpoints'
    target port, as `node_rules` program every node to do."""
    nodes = [node.name for node in layout.nodes]
    found: list[dict[str, Any]] = []
    for service in layout.services:
        endpoints = [
            {"netns": e.pod, "address": e.address, "port": service.target_port}
            for e in service.endpoints
        ]
        common = {"name": service.name, "protocol": service.protocol, "netns": nodes}
        found.append(
            {
                **common,
                "kind": "ClusterIP",
                "address": service.cluster_ip,
                "port": service.port,
                "endpoints": endpoints,
            }
        )
        if service.node_port is not None:
            found.append(
                {
                    **common,
                    "kind": "NodePort",
                    "address": None,
                    "port": service.node_port,
                    "endpoints": endpoints,
                }
            )
    return found


def _add_host(data: dict[str, Any], topology: Topology, cluster: Cluster, layout: Layout) -> None:
    host = data["host"]
    gateways = [str(layout.gateway)]
    sources: list[AnyNetwork] = [layout.node_network, layout.pod_cidr]
    host["sysctls"][FORWARD_SYSCTL] = "1"
    if layout.six is not None:
        gateways.append(str(layout.six.gateway))
        sources += [layout.six.node_network, layout.six.pod_cidr]
        host["sysctls"][FORWARD_SYSCTL6] = "1"
    host["bridges"][cluster.node_network.bridge] = {"addresses": gateways}
    for out in topology.host.external:
        for source in sources:
            entry = {"source": str(source), "out": out}
            if entry not in host["masquerade"]:
                host["masquerade"].append(entry)


def _node_namespace(cluster: Cluster, layout: Layout, node: NodeLayout) -> dict[str, Any]:
    others = [other for other in layout.nodes if other is not node]
    routes: list[dict[str, Any]] = [{"to": "default", "via": str(layout.gateway.ip)}]
    spec: dict[str, Any] = {
        "bridges": {POD_BRIDGE: {"addresses": [str(node.bridge_address)], **_mtu(cluster)}},
        "interfaces": [
            {
                "name": NODE_UPLINK,
                "peer": {
                    "netns": HOST,
                    "bridge": cluster.node_network.bridge,
                    "name": node.host_veth,
                },
                "addresses": [str(node.address)],
            }
        ],
        "routes": routes,
        "sysctls": {FORWARD_SYSCTL: "1"},
    }
    if node.six is not None:
        six = node.six
        spec["bridges"][POD_BRIDGE]["addresses"].append(str(six.bridge_address))
        spec["interfaces"][0]["addresses"].append(str(six.address))
        assert layout.six is not None
        routes.append({"to": "default", "via": str(layout.six.gateway.ip)})
        spec["sysctls"][FORWARD_SYSCTL6] = "1"
    if cluster.mode == "host-gw":
        routes += [
            {"to": str(other.subnet), "via": str(other.address.ip), "dev": NODE_UPLINK}
            for other in others
        ]
        routes += [
            {"to": str(other.six.subnet), "via": str(other.six.address.ip), "dev": NODE_UPLINK}
            for other in others
            if other.six is not None
        ]
    else:
        spec["vxlans"] = {
            VXLAN_DEVICE: {**_vtep(node.address, node.vtep_mac, node.vtep_address), **_mtu(cluster)}
        }
        routes += [
            {
                "to": str(other.subnet),
                "via": str(other.vtep_address.ip),
                "dev": VXLAN_DEVICE,
                "onlink": True,
            }
            for other in others
        ]
        spec["neighbors"] = [
            {"dev": VXLAN_DEVICE, "address": str(other.vtep_address.ip), "lladdr": other.vtep_mac}
            for other in others
        ]
        spec["fdb"] = [
            {"dev": VXLAN_DEVICE, "lladdr": other.vtep_mac, "dst": str(other.address.ip)}
            for other in others
        ]
        if node.six is not None:
            _add_vtep6(spec, node.six, [o.six for o in others if o.six is not None])
    spec["iptables"] = {
        "chains": node_chains(layout),
        "rules": node_rules(layout),
    }
    return spec


def _vtep(local: AnyInterface, mac: str, address: AnyInterface) -> dict[str, Any]:
    """A flannel VTEP of either family: a VXLAN device over the node's address `local`, with
    flannel's VNI and port, its fixed MAC, no learning (the FDB is written), and `address`."""
    return {
        "id": VXLAN_VNI,
        "local": str(local.ip),
        "dev": NODE_UPLINK,
        "port": VXLAN_PORT,
        "mac": mac,
        "learning": False,
        "addresses": [str(address)],
    }


def _add_vtep6(spec: dict[str, Any], node: NodeLayout6, others: list[NodeLayout6]) -> None:
    """flannel's second VTEP, flannel-v6.1: a VXLAN device over the node's IPv6 address (same
    VNI and port as flannel.1), and per other node the same three entries in IPv6: a route
    onlink via its VTEP address, a permanent neighbour (NDP) entry and an FDB entry."""
    spec["vxlans"][VXLAN_DEVICE6] = _vtep(node.address, node.vtep_mac, node.vtep_address)
    spec["routes"] += [
        {
            "to": str(other.subnet),
            "via": str(other.vtep_address.ip),
            "dev": VXLAN_DEVICE6,
            "onlink": True,
        }
        for other in others
    ]
    spec["neighbors"] += [
        {"dev": VXLAN_DEVICE6, "address": str(other.vtep_address.ip), "lladdr": other.vtep_mac}
        for other in others
    ]
    spec["fdb"] += [
        {"dev": VXLAN_DEVICE6, "lladdr": other.vtep_mac, "dst": str(other.address.ip)}
        for other in others
    ]


def _mtu(cluster: Cluster) -> dict[str, int]:
    """The MTU key of the pod network's links: the overlay's in vxlan mode; in host-gw mode
    none (pod packets travel unwrapped, so the default 1500 holds, as with flannel)."""
    return {"mtu": VXLAN_MTU} if cluster.mode == "vxlan" else {}


def _pod_namespace(
    cluster: Cluster, layout: Layout, node: NodeLayout, pod: PodLayout
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interfaces": [
            {
                "name": POD_IFNAME,
                # hairpin: a pod reaching itself through its own Service (bridge CNI hairpinMode)
                "peer": {
                    "netns": node.name,
                    "bridge": POD_BRIDGE,
                    "name": pod.host_veth,
                    "hairpin": True,
                    **_mtu(cluster),
                },
                "addresses": [str(pod.address)],
                **_mtu(cluster),
            }
        ],
        "routes": [{"to": "default", "via": str(node.bridge_address.ip)}],
    }
    if pod.address6 is not None and node.six is not None:
        spec["interfaces"][0]["addresses"].append(str(pod.address6))
        spec["routes"].append({"to": "default", "via": str(node.six.bridge_address.ip)})
    spec["dns"] = pod_dns(cluster, layout, pod)
    return spec


POD_NAMESERVER = "127.0.0.1"
"""The nameserver of every pod's resolv.conf: the pod's own loopback, where nothing listens, so
a name that /etc/hosts does not hold fails at once (a real pod's points at the kube-dns
Service, where CoreDNS answers)."""


def service_names(service: str, domain: str) -> list[str]:
    """The names a pod in namespace `default` resolves a Service by, as CoreDNS answers them
    through kubelet's search path: web, web.default, web.default.svc, web.default.svc.DOMAIN."""
    return [
        service,
        f"{service}.default",
        f"{service}.default.svc",
        f"{service}.default.svc.{domain}",
    ]


def pod_dns(cluster: Cluster, layout: Layout, pod: PodLayout) -> dict[str, Any]:
    """A pod's resolv.conf and hosts: kubelet's search path for namespace `default`, the
    nameserver POD_NAMESERVER, and (with `pod_hosts`) the pod's own name and every name CoreDNS
    would answer for each Service, at its cluster IPs (one per family)."""
    domain = cluster.cluster_domain.rstrip(".")
    dns: dict[str, Any] = {
        "nameservers": [POD_NAMESERVER],
        "search": [f"default.svc.{domain}", f"svc.{domain}", domain],
    }
    if cluster.pod_hosts:

        def addresses(found: list[str]) -> str | list[str]:
            return found[0] if len(found) == 1 else found

        own = [str(pod.address.ip)] + ([str(pod.address6.ip)] if pod.address6 else [])
        hosts: dict[str, str | list[str]] = {pod.name: addresses(own)}
        for service in layout.services:
            ips = addresses(list(service.cluster_ips.values()))
            for name in service_names(service.name, domain):
                hosts.setdefault(name, ips)
        dns["hosts"] = hosts
    return dns
