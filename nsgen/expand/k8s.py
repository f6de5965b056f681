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
  and a nameserver that fails at once for any other name.

Every name and address is derived deterministically from the declaration order, so the same
file always gives the same scripts.
"""

from __future__ import annotations

import ipaddress
import re
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
SERVICE_NAME_MAX = 15
"""So that KUBE-SEP-<NAME>-<n> fits in an iptables chain name (28 characters)."""
FORWARD_SYSCTL = "net.ipv4.ip_forward"

AnyNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


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


@dataclass(frozen=True)
class ResolvedService:
    """A Service with its defaults filled in."""

    name: str
    type: str
    cluster_ip: str
    protocol: str
    port: int
    target_port: int
    node_port: int | None
    endpoints: list[Endpoint]

    @property
    def chain_id(self) -> str:
        return self.name.upper()


@dataclass(frozen=True)
class PodLayout:
    name: str
    address: ipaddress.IPv4Interface
    host_veth: str


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


@dataclass(frozen=True)
class Layout:
    node_network: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Interface
    pod_cidr: ipaddress.IPv4Network
    nodes: list[NodeLayout]
    services: list[ResolvedService]


def veth_name(seed: str, taken: set[str]) -> str:
    """'veth' + 7 hex digits of sha256(seed), like the bridge CNI plugin's host-side names;
    on the (unlikely) clash with a name in `taken`, the seed gets a counter."""
    return unique_short_name(seed, taken)


def vtep_mac(address: ipaddress.IPv4Address) -> str:
    """A locally administered MAC from the VTEP's address: 0a:58 and the four address bytes."""
    return ":".join(f"{b:02x}" for b in (0x0A, 0x58, *address.packed))


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


def build_layout(topology: Topology, cluster: Cluster) -> Layout:
    """Every address and name of a cluster that passed `cluster_problems`."""
    # Every address is counted from its subnet's start, never listed: a /8 node network or
    # pod CIDR holds millions of addresses, and a cluster uses a few of them.
    node_net = ipaddress.IPv4Network(cluster.node_network.subnet)
    pod_cidr = ipaddress.IPv4Network(cluster.pod_cidr)
    gateway = ipaddress.IPv4Interface((node_net.broadcast_address - 1, node_net.prefixlen))
    mask = cluster.node_cidr_mask_size
    taken_in_host = _host_names(topology)
    nodes: list[NodeLayout] = []
    pod_address: dict[str, str] = {}
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
        )
        taken_in_node: set[str] = {POD_BRIDGE, NODE_UPLINK, VXLAN_DEVICE}
        for pod in node.pods:
            address = ipaddress.IPv4Interface((next(hosts), prefix))
            layout.pods.append(
                PodLayout(pod, address, veth_name(f"{topology.name}/{name}/{pod}", taken_in_node))
            )
            pod_address[pod] = str(address.ip)
        nodes.append(layout)
    return Layout(node_net, gateway, pod_cidr, nodes, _resolve_services(cluster, pod_address))


def _resolve_services(cluster: Cluster, pod_address: dict[str, str]) -> list[ResolvedService]:
    service_net = ipaddress.ip_network(cluster.service_cidr)
    used_ips = {s.cluster_ip for s in cluster.services.values() if s.cluster_ip}
    used_ports = {s.node_port for s in cluster.services.values() if s.node_port}
    first, count = service_net.network_address + 1, service_net.num_addresses - 2
    free_ips = (str(first + n) for n in range(count) if str(first + n) not in used_ips)
    free_ports = (
        p for p in range(NODE_PORT_RANGE[0], NODE_PORT_RANGE[1] + 1) if p not in used_ports
    )
    resolved = []
    for name, service in cluster.services.items():
        node_port = service.node_port
        if service.type == "NodePort" and node_port is None:
            node_port = next(free_ports)
        resolved.append(
            ResolvedService(
                name=name,
                type=service.type,
                cluster_ip=service.cluster_ip or next(free_ips),
                protocol=service.protocol.lower(),
                port=service.port,
                target_port=service.target_port or service.port,
                node_port=node_port,
                endpoints=[Endpoint(pod, pod_address[pod]) for pod in service.endpoints],
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
    chain. The Services are found through dispatches, as kube-proxy's nftables mode finds
    them: KUBE-SERVICES by ClusterIP . protocol . port (its map service-ips), KUBE-NODEPORTS
    by protocol . node port (service-nodeports), and each KUBE-SVC-<NAME> picks an endpoint
    at random (numgen; the statistic match's cascade in iptables)."""
    pods = str(layout.pod_cidr)
    rules: list[dict[str, Any]] = []

    def add(table: str, chain: str, **fields: Any) -> None:
        rules.append({"table": table, "chain": chain, **fields})

    services = layout.services
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
                "destination": f"{service.cluster_ip}/32",
                "protocol": service.protocol,
                "dport": service.port,
                "jump": svc_chain(service),
            }
            for service in served
        ]
        by = ["destination", "protocol", "dport"]
        add("nat", "KUBE-SERVICES", dispatch={"name": "service-ips", "by": by, "entries": entries})
    if any(s.type == "NodePort" for s in services):
        add("nat", "KUBE-SERVICES", dst_type="LOCAL", jump="KUBE-NODEPORTS")
    external = [s for s in served if s.type == "NodePort"]
    if external:
        entries = [
            {"protocol": s.protocol, "dport": s.node_port, "jump": ext_chain(s)} for s in external
        ]
        dispatch = {"name": "service-nodeports", "by": ["protocol", "dport"], "entries": entries}
        add("nat", "KUBE-NODEPORTS", dispatch=dispatch)
    for service in external:
        add("nat", ext_chain(service), jump="KUBE-MARK-MASQ")
        add("nat", ext_chain(service), jump=svc_chain(service))
    for service in served:
        chain = svc_chain(service)
        add(
            "nat",
            chain,
            destination=f"{service.cluster_ip}/32",
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
            add("nat", sep, source=f"{endpoint.address}/32", jump="KUBE-MARK-MASQ")
            add(
                "nat",
                sep,
                protocol=service.protocol,
                jump="DNAT",
                to_destination=f"{endpoint.address}:{service.target_port}",
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
        reject = {"jump": "REJECT", "reject_with": "icmp-port-unreachable"}
        for service in empty:
            add(
                "filter",
                "KUBE-SERVICES",
                destination=f"{service.cluster_ip}/32",
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


def _ipv6_refused(value: str) -> str:
    """Why an IPv6 value is refused in the cluster's vocabulary."""
    return (
        f"{value} is IPv6: nsgen's cluster is IPv4 only (kube-proxy's Services and the pod "
        "masquerade are iptables rules, and nsgen writes IPv4 firewall rules only)"
    )


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
            problems.append(Problem(path, _ipv6_refused(text)))
            continue
        for earlier_path, earlier in nets.items():
            if net.overlaps(earlier):
                problems.append(
                    Problem(
                        path,
                        f"{text} overlaps {ranges[earlier_path][0]} {earlier} ({earlier_path})",
                    )
                )
        for core, where in _core_networks(topology):
            if core.version == 4 and net.overlaps(core):
                problems.append(
                    Problem(path, f"{what} {text} overlaps {core}, attached at {where}")
                )
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
        if service.cluster_ip is not None:
            path = f"{base}.cluster_ip"
            ip = ipaddress.ip_address(service.cluster_ip)
            if ip.version == 6:
                problems.append(Problem(path, _ipv6_refused(service.cluster_ip)))
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
    automatic = sum(1 for s in cluster.services.values() if s.cluster_ip is None)
    if automatic > service_net.num_addresses - 2 - len(ips):
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
    host["bridges"][cluster.node_network.bridge] = {"addresses": [str(layout.gateway)]}
    host["sysctls"][FORWARD_SYSCTL] = "1"
    for out in topology.host.external:
        for source in (layout.node_network, layout.pod_cidr):
            entry = {"source": str(source), "out": out}
            if entry not in host["masquerade"]:
                host["masquerade"].append(entry)


def _node_namespace(cluster: Cluster, layout: Layout, node: NodeLayout) -> dict[str, Any]:
    others = [other for other in layout.nodes if other is not node]
    routes: list[dict[str, Any]] = [{"to": "default", "via": str(layout.gateway.ip)}]
    spec: dict[str, Any] = {
        "bridges": {POD_BRIDGE: {"addresses": [str(node.bridge_address)]}},
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
    if cluster.mode == "host-gw":
        routes += [
            {"to": str(other.subnet), "via": str(other.address.ip), "dev": NODE_UPLINK}
            for other in others
        ]
    else:
        spec["vxlans"] = {
            VXLAN_DEVICE: {
                "id": VXLAN_VNI,
                "local": str(node.address.ip),
                "dev": NODE_UPLINK,
                "port": VXLAN_PORT,
                "mac": node.vtep_mac,
                "learning": False,
                "addresses": [str(node.vtep_address)],
            }
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
    spec["iptables"] = {
        "chains": node_chains(layout),
        "rules": node_rules(layout),
    }
    return spec


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
                },
                "addresses": [str(pod.address)],
            }
        ],
        "routes": [{"to": "default", "via": str(node.bridge_address.ip)}],
    }
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
    would answer for each Service, at its cluster IP."""
    domain = cluster.cluster_domain.rstrip(".")
    dns: dict[str, Any] = {
        "nameservers": [POD_NAMESERVER],
        "search": [f"default.svc.{domain}", f"svc.{domain}", domain],
    }
    if cluster.pod_hosts:
        hosts = {pod.name: str(pod.address.ip)}
        for service in layout.services:
            for name in service_names(service.name, domain):
                hosts.setdefault(name, service.cluster_ip)
        dns["hosts"] = hosts
    return dns
