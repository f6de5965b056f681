"""One expanded topology becomes one core topology per host; each then goes through the usual
pipeline (build_plan, the renderer) into a standalone bundle.

What goes where:

- a named namespace (core, container, pod) goes to its host, with its veth pairs (both ends are
  on that host: `nsgen.fleet.place` refuses a pair that would cross machines);
- the root namespace of the file (`host:`) is every host's root namespace, except that a root
  bridge is built only where a namespace is cabled to it (a bridge nothing is cabled to, on
  every host), a root veth end only where its far end is, and a DNAT rule to a namespace only
  on that namespace's host (a published port is published where its container runs);
- a Kubernetes node becomes its host's root namespace: its cni0, flannel.1, routes, ARP and
  FDB entries, kube-proxy chains and sysctls move there; its uplink and the node-network bridge
  (the stand-in for the machines' LAN) give way to the real underlay, so every node address
  becomes its host's underlay address (in the VXLAN device's `local`, the FDB's `dst`, host-gw
  routes' `via`), and the pods' veth ends go to the root namespace's cni0;
- a root bridge with ports on several hosts is joined across them, as flannel joins nodes: on
  each host a VXLAN device over the underlay (its MTU is the underlay's less 50, which the
  kernel derives from `dev`), and for every port on another host a /32 route into the tunnel,
  a permanent ARP entry and an FDB entry for that host's VTEP; proxy ARP on the bridge answers
  the local ports for their peers elsewhere. For a Docker-style network, the network's own
  rules are extended to the tunnel: isolation from other networks, icc and internal, and no
  masquerade of the network's traffic to its own containers on other hosts.

The joining is at layer 3 (routed), not a bridge stretched at layer 2: the core VXLAN device
cannot be made a bridge port yet. Unicast IPv4 between the ports works as on one bridge;
broadcast and multicast stay on each host.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from nsgen.errors import Problem
from nsgen.expand.docker import DEFAULT_NETWORK, chain_names
from nsgen.fields import HOST, ip_interface
from nsgen.fleet.model import VNI_BASE, FleetHost, FleetSugar
from nsgen.fleet.place import Placement, host_topology_name
from nsgen.messages import pydantic_problems
from nsgen.model import Topology
from nsgen.validate import check_topology

FORWARD = "net.ipv4.ip_forward"


@dataclass(frozen=True)
class HostPart:
    """One host's share of the topology: a complete core topology of its own."""

    name: str
    spec: FleetHost
    topology: Topology


@dataclass(frozen=True)
class DockerNetwork:
    """What the overlay needs to know of a Docker-style network (from `networks:`)."""

    name: str
    bridge: str
    subnet: str
    internal: bool
    icc: bool


def docker_networks(raw: Any) -> dict[str, DockerNetwork]:
    """The Docker-style networks of a file's `networks:` (already validated by the expander),
    by bridge name."""
    from nsgen.expand.docker import Network

    found: dict[str, DockerNetwork] = {}
    for name, value in (raw or {}).items():
        spec = Network.model_validate(value)
        bridge = spec.bridge or ("docker0" if name == DEFAULT_NETWORK else f"br-{name}")
        found[bridge] = DockerNetwork(name, bridge, spec.subnet, spec.internal, spec.icc)
    return found


def vtep_mac(address: str) -> str:
    """A host's MAC on every overlay: locally administered, 0a:4e and its underlay address."""
    packed = ip_interface(address).ip.packed
    return ":".join(f"{b:02x}" for b in (0x0A, 0x4E, *packed))


def overlay_device(vni: int) -> str:
    return f"vx-{vni}"


def split(
    topology: Topology,
    sugar: FleetSugar,
    placement: Placement,
    networks: dict[str, DockerNetwork] | None = None,
) -> tuple[list[HostPart], list[Problem]]:
    """Every host's topology, in `hosts:` order, and the problems found while making them
    (each under hosts.<host>, with the path inside that host's topology)."""
    data = topology.model_dump(mode="json", by_alias=True)
    problems: list[Problem] = []
    underlay = {host: spec.address for host, spec in sugar.hosts.items()}
    roots, moved = _nodes_as_roots(data, sugar, placement, underlay, problems)
    combined_root = data["host"]
    ports = _bridge_ports(data, placement)
    for bridge in moved:
        combined_root["bridges"].pop(bridge["name"], None)
        combined_root["masquerade"] = [
            m for m in combined_root["masquerade"] if m["source"] != bridge["subnet"]
        ]
    overlays = _overlays(data, ports, sugar, placement, problems)
    owner = _address_owners(topology)
    parts: list[HostPart] = []
    for host, spec in sugar.hosts.items():
        root = copy.deepcopy(combined_root)
        root["bridges"] = {
            name: bridge
            for name, bridge in root["bridges"].items()
            if name not in ports or host in ports[name]
        }
        root["interfaces"] = [
            iface
            for iface in root["interfaces"]
            if iface["peer"]["netns"] == HOST or placement.host(iface["peer"]["netns"]) == host
        ]
        for iface in root["interfaces"]:
            if iface["peer"]["netns"] in placement.nodes:
                iface["peer"]["netns"] = HOST
        root["iptables"]["rules"] = [
            rule
            for rule in root["iptables"]["rules"]
            if placement.host(owner.get(_dnat_target(rule), "")) in (None, host)
        ]
        if spec.dev not in root["external"]:
            root["external"].append(spec.dev)
        for node, node_host in placement.nodes.items():
            if node_host == host:
                _merge(root, roots[node])
        for overlay in overlays:
            if host in overlay.hosts:
                overlay.add_to(root, host, sugar, networks or {}, overlays, topology.name)
        host_data = {
            "name": host_topology_name(topology.name, host),
            "description": _description(topology, host, list(sugar.hosts)),
            "firewall": topology.firewall,
            "host": root,
            "namespaces": {
                name: ns
                for name, ns in data["namespaces"].items()
                if placement.host_of.get(name) == host
            },
            "checks": _checks(topology, data["checks"], host, placement, underlay),
            "groups": _groups(data["groups"], host, placement),
        }
        try:
            part = Topology.model_validate(host_data)
        except ValidationError as exc:
            problems += [
                Problem(f"hosts.{host}", f"in its topology, {p.path}: {p.message}")
                for p in pydantic_problems(exc)
            ]
            continue
        problems += [
            Problem(f"hosts.{host}", f"in its topology, {p.path}: {p.message}")
            for p in check_topology(part)
        ]
        parts.append(HostPart(host, spec, part))
    return parts, problems


def _description(topology: Topology, host: str, hosts: list[str]) -> str:
    line = f"The share of host {host} in {topology.name}, spread over {', '.join(hosts)}."
    return f"{topology.description}\n{line}" if topology.description else line


def _dnat_target(rule: dict[str, Any]) -> str:
    """The address a nat rule sends packets to (DNAT's to_destination), or ''."""
    if rule["table"] != "nat" or not rule.get("to_destination"):
        return ""
    return str(rule["to_destination"]).split(":")[0]  # ADDRESS[:PORT]; these rules are IPv4


def _address_owners(topology: Topology) -> dict[str, str]:
    """Address -> the named namespace that holds it."""
    owners: dict[str, str] = {}
    for netns, spec in topology.spaces():
        for iface in spec.interfaces:
            if netns != HOST:
                owners.update({str(ip_interface(a).ip): netns for a in iface.addresses})
            if iface.peer.netns != HOST:
                owners.update(
                    {str(ip_interface(a).ip): iface.peer.netns for a in iface.peer.addresses}
                )
    return owners


def _bridge_ports(data: dict[str, Any], placement: Placement) -> dict[str, list[str]]:
    """Root bridge -> the hosts of the namespaces cabled to it (in hosts' first-port order)."""
    ports: dict[str, list[str]] = {}
    for netns, spec in data["namespaces"].items():
        host = placement.host_of.get(netns)
        for iface in spec["interfaces"]:
            peer = iface["peer"]
            if peer["netns"] == HOST and peer["bridge"] and host and netns not in placement.nodes:
                hosts = ports.setdefault(peer["bridge"], [])
                if host not in hosts:
                    hosts.append(host)
    return ports


# ---- Kubernetes nodes become their hosts' root namespaces ---------------------------------------


def _nodes_as_roots(
    data: dict[str, Any],
    sugar: FleetSugar,
    placement: Placement,
    underlay: dict[str, str],
    problems: list[Problem],
) -> tuple[dict[str, dict[str, Any]], list[dict[str, str]]]:
    """Each placed node's namespace as root-namespace content (addresses mapped to the
    underlay), and the node-network bridges that are no longer needed (with their subnets).
    The nodes are taken out of data["namespaces"] and their pods cabled to the root."""
    address_map: dict[str, str] = {}
    uplinks: dict[str, str] = {}
    bridges: list[dict[str, str]] = []
    for node, host in placement.nodes.items():
        spec = data["namespaces"][node]
        for iface in spec["interfaces"]:
            if iface["peer"]["netns"] == HOST and iface["addresses"]:
                address_map[str(ip_interface(iface["addresses"][0]).ip)] = underlay[host]
                uplinks[node] = iface["name"]
                bridge = iface["peer"]["bridge"]
                subnet = str(ip_interface(iface["addresses"][0]).network)
                if bridge and {"name": bridge, "subnet": subnet} not in bridges:
                    bridges.append({"name": bridge, "subnet": subnet})
    roots: dict[str, dict[str, Any]] = {}
    for node, host in placement.nodes.items():
        spec = data["namespaces"].pop(node)
        dev = sugar.hosts[host].dev
        uplink = uplinks.get(node)
        if spec.get("dns"):
            problems.append(
                Problem(f"cluster.nodes.{node}", "a node placed on a host cannot have DNS files")
            )
        spec["interfaces"] = [i for i in spec["interfaces"] if i.get("name") != uplink]
        spec["routes"] = [r for r in spec["routes"] if r["to"] != "default"]
        for route in spec["routes"]:
            route["via"] = address_map.get(route["via"], route["via"])
            if route["dev"] == uplink:
                route["dev"] = dev
        for vxlan in spec["vxlans"].values():
            vxlan["local"] = address_map.get(vxlan["local"], vxlan["local"])
            if vxlan["dev"] == uplink:
                vxlan["dev"] = dev
        for entry in spec["fdb"]:
            entry["dst"] = address_map.get(entry["dst"], entry["dst"])
        roots[node] = spec
    for netns_spec in data["namespaces"].values():
        for iface in netns_spec["interfaces"]:
            if iface["peer"]["netns"] in placement.nodes:
                iface["peer"]["netns"] = HOST
    return roots, bridges


def _merge(root: dict[str, Any], node: dict[str, Any]) -> None:
    """Add a node's objects to a root namespace (the root's come first)."""
    for key in ("bridges", "vxlans", "sysctls"):
        root[key].update(node[key])
    for key in ("interfaces", "routes", "neighbors", "fdb", "masquerade"):
        root[key] += node[key]
    root["iptables"]["chains"] += node["iptables"]["chains"]
    root["iptables"]["rules"] += node["iptables"]["rules"]


# ---- root bridges joined across hosts -----------------------------------------------------------


@dataclass
class _Overlay:
    """A root bridge with ports on several hosts, and the tunnel that joins them."""

    bridge: str
    vni: int
    hosts: list[str]
    members: list[tuple[str, str, list[str]]]
    """(namespace, its host, its IPv4 addresses on the bridge) for every port."""

    @property
    def device(self) -> str:
        return overlay_device(self.vni)

    def add_to(
        self,
        root: dict[str, Any],
        host: str,
        sugar: FleetSugar,
        networks: dict[str, DockerNetwork],
        overlays: list[_Overlay],
        topology: str,
    ) -> None:
        """This overlay's part in one host's root namespace."""
        spec = sugar.hosts[host]
        device = self.device
        root["vxlans"][device] = {
            "id": self.vni,
            "local": spec.address,
            "dev": spec.dev,
            "port": sugar.overlay.port,
            "mac": vtep_mac(spec.address),
            "learning": False,
            "addresses": [],
        }
        for other in self.hosts:
            if other != host:
                address = sugar.hosts[other].address
                root["fdb"].append({"dev": device, "lladdr": vtep_mac(address), "dst": address})
        for _, member_host, addresses in self.members:
            if member_host == host:
                continue
            mac = vtep_mac(sugar.hosts[member_host].address)
            for address in addresses:
                root["routes"].append({"to": f"{address}/32", "dev": device})
                root["neighbors"].append({"dev": device, "address": address, "lladdr": mac})
        root["sysctls"][FORWARD] = "1"
        root["sysctls"][f"net.ipv4.conf.{self.bridge}.proxy_arp"] = "1"
        # answer at once: by default a proxied ARP reply waits up to 0.8 s
        root["sysctls"][f"net.ipv4.neigh.{self.bridge}.proxy_delay"] = "0"
        network = networks.get(self.bridge)
        if network is not None:
            _docker_rules(root, host, network, self, networks, overlays, topology)


def _overlays(
    data: dict[str, Any],
    ports: dict[str, list[str]],
    sugar: FleetSugar,
    placement: Placement,
    problems: list[Problem],
) -> list[_Overlay]:
    """Every root bridge with ports on two hosts or more, in declaration order."""
    root = data["host"]
    spanning = [name for name in root["bridges"] if len(ports.get(name, [])) > 1]
    for bridge in sugar.overlay.vni:
        if bridge not in spanning:
            listing = ", ".join(spanning) or "none"
            problems.append(
                Problem(
                    f"overlay.vni.{bridge}",
                    f"{bridge} is not a root bridge with ports on several hosts "
                    f"(those are: {listing})",
                )
            )
    given = set(sugar.overlay.vni.values())
    free = (vni for vni in range(VNI_BASE, 16777216) if vni not in given)
    found: list[_Overlay] = []
    for bridge in spanning:
        path = f"host.bridges.{bridge}"
        if "." in bridge:
            problems.append(
                Problem(
                    path,
                    f"{bridge} has ports on several hosts, and its name holds a '.', which its "
                    "proxy_arp sysctl cannot name: rename the bridge",
                )
            )
            continue
        members: list[tuple[str, str, list[str]]] = []
        for netns, spec in data["namespaces"].items():
            host = placement.host_of.get(netns)
            for i, iface in enumerate(spec["interfaces"]):
                peer = iface["peer"]
                if host is None or peer["netns"] != HOST or peer["bridge"] != bridge:
                    continue
                v6 = [a for a in iface["addresses"] if ip_interface(a).version == 6]
                if v6:
                    problems.append(
                        Problem(
                            f"namespaces.{netns}.interfaces[{i}].addresses",
                            f"{v6[0]} is IPv6, on bridge {bridge}, which spans hosts: the "
                            "overlay joins IPv4 only",
                        )
                    )
                v4 = [str(ip_interface(a).ip) for a in iface["addresses"] if ":" not in a]
                members.append((netns, host, v4))
        vni = sugar.overlay.vni.get(bridge) or next(free)
        found.append(_Overlay(bridge, vni, ports[bridge], members))
    if found and root["sysctls"].get(FORWARD, "1") != "1":
        problems.append(
            Problem(
                f"host.sysctls.{FORWARD}",
                f"is {root['sysctls'][FORWARD]}, but bridge {found[0].bridge} spans hosts, "
                "and the hosts route between it and the tunnel",
            )
        )
    return found


def _docker_rules(
    root: dict[str, Any],
    host: str,
    network: DockerNetwork,
    overlay: _Overlay,
    networks: dict[str, DockerNetwork],
    overlays: list[_Overlay],
    topology: str,
) -> None:
    """A Docker-style network's own rules, extended to its tunnel: the tunnel is part of the
    network (a container's traffic to a container of the same network on another host is
    neither masqueraded nor dropped), and apart from every other network."""
    fwd = chain_names(topology)[0]
    bridge, device = network.bridge, overlay.device
    rules = root["iptables"]["rules"]

    def add(table: str, chain: str, **fields: Any) -> None:
        rules.append({"table": table, "chain": chain, **fields})

    add(
        "nat",
        "POSTROUTING",
        source=network.subnet,
        out_interface=device,
        jump="RETURN",
        insert=True,
    )
    verdict = {"jump": "RETURN", "insert": True} if network.icc else {"jump": "DROP"}
    add("filter", fwd, in_interface=bridge, out_interface=device, **verdict)
    add("filter", fwd, in_interface=device, out_interface=bridge, **verdict)
    tunnels = {o.bridge: o.device for o in overlays if host in o.hosts}
    for other in networks.values():
        if other.bridge == bridge or other.bridge not in root["bridges"]:
            continue
        add("filter", fwd, in_interface=other.bridge, out_interface=device, jump="DROP")
        add("filter", fwd, in_interface=device, out_interface=other.bridge, jump="DROP")
        if other.bridge in tunnels:
            add(
                "filter", fwd, in_interface=tunnels[other.bridge], out_interface=device, jump="DROP"
            )
    if network.internal:
        add("filter", fwd, in_interface=device, jump="DROP", **{"not": {"out_interface": bridge}})
        add("filter", fwd, out_interface=device, jump="DROP", **{"not": {"in_interface": bridge}})


# ---- checks and groups --------------------------------------------------------------------------


def _checks(
    topology: Topology,
    checks: list[dict[str, Any]],
    host: str,
    placement: Placement,
    underlay: dict[str, str],
) -> list[dict[str, Any]]:
    """The checks that run on this host (those from its namespaces and node); a target on
    another host, or a node, is named by its address."""
    mine: list[dict[str, Any]] = []
    for check in checks:
        if placement.host(check["from"]) != host:
            continue
        check = dict(check)
        if check["from"] in placement.nodes:
            check["from"] = HOST
        target = check.get("to")
        if target in placement.nodes:
            check["to"] = underlay[placement.nodes[target]]
        elif target in placement.host_of and placement.host_of[target] != host:
            check["to"] = topology.first_address(target)
        mine.append(check)
    return mine


def _groups(groups: list[dict[str, Any]], host: str, placement: Placement) -> list[dict[str, Any]]:
    kept = []
    for group in groups:
        members = [m for m in group["members"] if placement.host_of.get(m) == host]
        if members:
            kept.append({**group, "members": members})
    return kept
