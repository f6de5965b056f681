"""Where everything runs: the `hosts:` placement resolved against the expanded topology, and
every problem with it (an unknown name, an object placed twice or nowhere, two Kubernetes nodes
on one machine, a veth pair or a listening check that would cross machines, host addresses).

Placed objects are namespaces by name: core namespaces, Docker-style containers and Kubernetes
nodes. A node's pods go with it, and the node itself becomes its host's own network stack (a
node placed on a machine *is* that machine), so a host runs at most one node."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from nsgen.errors import Problem
from nsgen.fields import HOST, IFNAMSIZ, ip_address, ip_interface
from nsgen.fleet.model import FleetSugar
from nsgen.model import Topology

K8S_NODE = "k8s node"
"""The group kind nsgen.expand.k8s gives each node (members: the node, then its pods)."""
DOCKER_NETWORK = "docker network"
"""The group kind nsgen.expand.docker gives each network (members: its containers)."""


@dataclass
class Placement:
    """Which host runs what."""

    host_of: dict[str, str] = field(default_factory=dict)
    """Named namespace -> host, for every namespace that stays a namespace."""
    nodes: dict[str, str] = field(default_factory=dict)
    """Kubernetes node -> host: the node becomes that host's root namespace."""
    pods: dict[str, str] = field(default_factory=dict)
    """Pod -> its node."""

    def host(self, netns: str) -> str | None:
        """The host of a namespace or node, if placed."""
        return self.host_of.get(netns) or self.nodes.get(netns)


def host_topology_name(topology: str, host: str) -> str:
    """The name of a host's own topology (its scripts' record /run/nsgen/<name>/ and rule tag)."""
    return f"{topology}-{host}"


def object_path(topology: Topology, name: str) -> str:
    """Where the file declares a namespace: namespaces.X, containers.X or cluster.nodes.X."""
    for group in topology.groups:
        if group.kind == K8S_NODE and group.members and group.members[0] == name:
            return f"cluster.nodes.{name}"
        if group.kind == K8S_NODE and name in group.members:
            return f"cluster.nodes.{group.name}.pods[{group.members.index(name) - 1}]"
        if group.kind == DOCKER_NETWORK and name in group.members:
            return f"containers.{name}"
    return f"namespaces.{name}"


def resolve(topology: Topology, sugar: FleetSugar) -> tuple[Placement, list[Problem]]:
    """The placement of every named namespace, and every problem with `hosts:` itself."""
    problems: list[Problem] = []
    placement = Placement()
    nodes = {
        g.members[0]: g.members[1:] for g in topology.groups if g.kind == K8S_NODE and g.members
    }
    placement.pods = {pod: node for node, pods in nodes.items() for pod in pods}
    if not sugar.hosts:
        problems.append(Problem("hosts", "name at least one host to place the topology on"))
    placed_at: dict[str, str] = {}
    node_on: dict[str, tuple[str, str]] = {}
    for host, spec in sugar.hosts.items():
        for i, name in enumerate(spec.place):
            path = f"hosts.{host}.place[{i}]"
            if name in placement.pods:
                node = placement.pods[name]
                problems.append(
                    Problem(path, f"{name!r} is a pod: it runs on its node {node}; place the node")
                )
            elif name not in topology.namespaces:
                known = ", ".join(n for n in topology.namespaces if n not in placement.pods)
                problems.append(
                    Problem(
                        path,
                        f"{name!r} is not a namespace, container or node of the topology "
                        f"(known: {known or 'none'})",
                    )
                )
            elif name in placed_at:
                problems.append(Problem(path, f"{name!r} is already placed (at {placed_at[name]})"))
            elif name in nodes:
                placed_at[name] = path
                if host in node_on:
                    other, where = node_on[host]
                    problems.append(
                        Problem(
                            path,
                            f"node {name} would share host {host} with node {other} ({where}): "
                            "a node placed on a host becomes that machine's own network "
                            "stack, so a host runs one node",
                        )
                    )
                else:
                    node_on[host] = (name, path)
                    placement.nodes[name] = host
            else:
                placed_at[name] = path
                placement.host_of[name] = host
    for node, host in placement.nodes.items():
        for pod in nodes[node]:
            placement.host_of[pod] = host
    for name in topology.namespaces:
        if name not in placed_at and name not in placement.pods:
            problems.append(
                Problem(
                    object_path(topology, name),
                    f"{name} is placed on no host: list it under one host's place",
                )
            )
    problems += _host_problems(topology, sugar)
    problems += _cable_problems(topology, placement)
    problems += _check_problems(topology, placement)
    return placement, problems


def _host_problems(topology: Topology, sugar: FleetSugar) -> list[Problem]:
    problems: list[Problem] = []
    if sugar.overlay.vni:
        seen: dict[int, str] = {}
        for bridge, vni in sugar.overlay.vni.items():
            path = f"overlay.vni.{bridge}"
            if not 1 <= vni <= 16777215:
                problems.append(Problem(path, f"{vni} is not a VNI (1-16777215)"))
            elif vni in seen:
                problems.append(Problem(path, f"VNI {vni} is already given to {seen[vni]}"))
            seen[vni] = bridge
    subnets = _subnets(topology)
    addresses: dict[str, str] = {}
    for host, spec in sugar.hosts.items():
        base = f"hosts.{host}"
        name = host_topology_name(topology.name, host)
        if len(name.encode()) > IFNAMSIZ:
            problems.append(
                Problem(
                    base,
                    f"this host's topology is named {name!r}, {len(name.encode())} bytes, over "
                    f"the limit of {IFNAMSIZ} (<topology>-<host>): shorten the topology's or "
                    "the host's name",
                )
            )
        address = ip_address(spec.address)
        if address.version != 4:
            problems.append(
                Problem(f"{base}.address", f"{address} is IPv6: the underlay must be IPv4")
            )
            continue
        if str(address) in addresses:
            problems.append(
                Problem(
                    f"{base}.address",
                    f"{address} is already the address of {addresses[str(address)]}",
                )
            )
        addresses[str(address)] = base
        for subnet, where in subnets:
            if address in subnet:
                problems.append(
                    Problem(
                        f"{base}.address",
                        f"{address} lies in {subnet}, a subnet of the topology ({where}): the "
                        "underlay must be apart from the networks built on it",
                    )
                )
                break
    return problems


def _subnets(topology: Topology) -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    found = []
    for netns, spec in topology.spaces():
        base = HOST if netns == HOST else f"namespaces.{netns}"
        for name, bridge in spec.bridges.items():
            found += [(ip_interface(a).network, f"{base}.bridges.{name}") for a in bridge.addresses]
        for i, iface in enumerate(spec.interfaces):
            for a in [*iface.addresses, *iface.peer.addresses]:
                found.append((ip_interface(a).network, f"{base}.interfaces[{i}]"))
    return found


def _cable_problems(topology: Topology, placement: Placement) -> list[Problem]:
    """A veth pair is a cable inside one machine: both ends must be on one host."""
    problems: list[Problem] = []
    for netns, spec in topology.spaces():
        for i, iface in enumerate(spec.interfaces):
            far = iface.peer.netns
            if HOST in (netns, far):
                continue
            near_host, far_host = placement.host(netns), placement.host(far)
            if near_host and far_host and near_host != far_host:
                problems.append(
                    Problem(
                        f"{object_path(topology, netns)}.interfaces[{i}].peer.netns",
                        f"{netns} is on host {near_host} and {far} on {far_host}: a veth pair "
                        "cannot cross machines; cable both to a bridge under host: instead, "
                        "which nsgen joins across the hosts",
                    )
                )
    return problems


def _check_problems(topology: Topology, placement: Placement) -> list[Problem]:
    problems: list[Problem] = []
    for i, check in enumerate(topology.checks):
        path = f"checks[{i}]"
        for key, value in (("from", check.from_), ("to", check.to)):
            if value == HOST:
                problems.append(
                    Problem(
                        f"{path}.{key}",
                        "with hosts:, 'host' could be any machine's root namespace: name a "
                        "namespace, container or node placed on the machine you mean",
                    )
                )
        if check.listen and check.to is not None:
            source, target = placement.host(check.from_), placement.host(check.to)
            if source and target and source != target:
                problems.append(
                    Problem(
                        f"{path}.listen",
                        f"check.sh starts its listener on the checking host ({source}), but "
                        f"{check.to} is on {target}: run a server in {check.to} and drop listen",
                    )
                )
    return problems
