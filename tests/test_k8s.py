"""The Kubernetes-style vocabulary (`cluster:`, nsgen/expand/k8s.py).

Unit tests check what the expander generates (addresses, names, routes, VXLAN entries, the
kube-proxy rules in order, probabilities) and every validation message. The integration tests
bring the example cluster up for real in a sandbox (host-gw and vxlan), send packets pod to
pod, to a ClusterIP service and to a NodePort from the simulated upstream, and check that
teardown restores the snapshot.
"""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import json
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from nsgen.backends.iptables import rule_text
from nsgen.cli import app
from nsgen.errors import TopologyError
from nsgen.expand.k8s import vtep_mac
from nsgen.kinds.rules import expanded_rules, shares
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Namespace, Topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.sandbox import INTERNET_HOST, UPSTREAM_NETNS, upstream
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, ping, run, sandboxed

SRC = "k8s.yaml"
HOST_GW = EXAMPLES / "k8s-two-nodes.yaml"
VXLAN = EXAMPLES / "k8s-vxlan.yaml"
NSGEN = (sys.executable, "-m", "nsgen")

_BASE: dict[str, Any] = {
    "name": "k8s",
    "host": {"external": ["eth0"]},
    "cluster": {
        "mode": "host-gw",
        "node_network": {"bridge": "k8s-nodes", "subnet": "10.10.0.0/24"},
        "pod_cidr": "10.244.0.0/16",
        "nodes": {
            "node1": {"pods": ["web-a", "client-a"]},
            "node2": {"pods": ["web-b", "client-b"]},
        },
        "services": {
            "web": {
                "type": "ClusterIP",
                "cluster_ip": "10.96.0.10",
                "port": 80,
                "target_port": 8080,
                "endpoints": ["web-a", "web-b"],
            },
            "web-np": {
                "type": "NodePort",
                "node_port": 30080,
                "port": 80,
                "target_port": 8080,
                "endpoints": ["web-a", "web-b"],
            },
        },
    },
}


def base() -> dict[str, Any]:
    return copy.deepcopy(_BASE)


def cluster(data: dict[str, Any]) -> dict[str, Any]:
    return data["cluster"]  # type: ignore[no-any-return]


def load(data: dict[str, Any]) -> Topology:
    return topology_from_data(data, SRC)


def problems(data: dict[str, Any]) -> list[str]:
    """The lines `nsgen validate` would print; fails if the data is accepted."""
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


def rules(space: Namespace) -> list[tuple[str, str, str]]:
    """A namespace's rules as the iptables backend installs them (dispatches written out)."""
    return [(r.table, r.chain, rule_text(r)) for r in expanded_rules(space.iptables)]


# ---- addresses, names, routes ----------------------------------------------------------------


def test_nodes_pods_and_the_host_get_their_addresses_in_declaration_order() -> None:
    topology = load(base())
    assert list(topology.namespaces) == ["node1", "web-a", "client-a", "node2", "web-b", "client-b"]
    assert topology.host.bridges["k8s-nodes"].addresses == ["10.10.0.254/24"]
    assert topology.host.sysctls == {"net.ipv4.ip_forward": "1"}
    assert [(m.source, m.out) for m in topology.host.masquerade] == [
        ("10.10.0.0/24", "eth0"),
        ("10.244.0.0/16", "eth0"),
    ]

    for index, node in enumerate(["node1", "node2"]):
        space = topology.namespaces[node]
        (eth0,) = space.interfaces
        assert eth0.name == "eth0"
        assert eth0.addresses == [f"10.10.0.{index + 1}/24"]
        assert (eth0.peer.netns, eth0.peer.bridge) == ("host", "k8s-nodes")
        seed = f"k8s/{node}"
        assert eth0.peer.name == "veth" + hashlib.sha256(seed.encode()).hexdigest()[:7]
        assert space.bridges["cni0"].addresses == [f"10.244.{index}.1/24"]
        assert space.sysctls == {"net.ipv4.ip_forward": "1"}
        assert space.routes[0].to == "default" and space.routes[0].via == "10.10.0.254"

    pods = {
        "web-a": ("node1", "10.244.0.2/24"),
        "client-a": ("node1", "10.244.0.3/24"),
        "web-b": ("node2", "10.244.1.2/24"),
        "client-b": ("node2", "10.244.1.3/24"),
    }
    for pod, (node, address) in pods.items():
        space = topology.namespaces[pod]
        (eth0,) = space.interfaces
        assert eth0.name == "eth0" and eth0.addresses == [address]
        assert (eth0.peer.netns, eth0.peer.bridge) == (node, "cni0")
        assert re.fullmatch(r"veth[0-9a-f]{7}", eth0.peer.name or "")
        gateway = str(ipaddress.ip_interface(address).network[1])
        assert [(r.to, r.via) for r in space.routes] == [("default", gateway)]


def test_expansion_is_deterministic() -> None:
    assert load(base()).model_dump_json() == load(base()).model_dump_json()


def test_node_subnets_follow_declaration_order_and_the_node_cidr_mask_size() -> None:
    data = base()
    cluster(data)["nodes"] = {"c": {"pods": ["c1"]}, "a": {"pods": ["a1", "a2"]}, "b": {}}
    cluster(data)["node_cidr_mask_size"] = 26
    cluster(data)["services"] = {}
    topology = load(data)
    assert [topology.namespaces[n].bridges["cni0"].addresses for n in "cab"] == [
        ["10.244.0.1/26"],
        ["10.244.0.65/26"],
        ["10.244.0.129/26"],
    ]
    assert topology.namespaces["a2"].interfaces[0].addresses == ["10.244.0.67/26"]
    assert [topology.namespaces[n].interfaces[0].addresses for n in "cab"] == [
        ["10.10.0.1/24"],
        ["10.10.0.2/24"],
        ["10.10.0.3/24"],
    ]


def test_host_gw_routes_every_other_nodes_pod_subnet_via_its_address() -> None:
    data = base()
    cluster(data)["nodes"]["node3"] = {"pods": []}
    topology = load(data)
    routes = [(r.to, r.via, r.dev, r.onlink) for r in topology.namespaces["node2"].routes]
    assert routes == [
        ("default", "10.10.0.254", None, False),
        ("10.244.0.0/24", "10.10.0.1", "eth0", False),
        ("10.244.2.0/24", "10.10.0.3", "eth0", False),
    ]
    assert not topology.namespaces["node2"].vxlans


def test_vxlan_mode_writes_flannels_device_route_arp_and_fdb_entries() -> None:
    data = base()
    cluster(data)["mode"] = "vxlan"
    cluster(data)["nodes"]["node3"] = {"pods": []}
    topology = load(data)
    node2 = topology.namespaces["node2"]
    vxlan = node2.vxlans["flannel.1"]
    assert (vxlan.id, vxlan.port, vxlan.local, vxlan.dev, vxlan.learning) == (
        1,
        8472,
        "10.10.0.2",
        "eth0",
        False,
    )
    assert vxlan.mac == "0a:58:0a:f4:01:00" == vtep_mac(ipaddress.IPv4Address("10.244.1.0"))
    assert vxlan.addresses == ["10.244.1.0/32"]
    assert [(r.to, r.via, r.dev, r.onlink) for r in node2.routes] == [
        ("default", "10.10.0.254", None, False),
        ("10.244.0.0/24", "10.244.0.0", "flannel.1", True),
        ("10.244.2.0/24", "10.244.2.0", "flannel.1", True),
    ]
    assert [(n.address, n.lladdr, n.dev) for n in node2.neighbors] == [
        ("10.244.0.0", "0a:58:0a:f4:00:00", "flannel.1"),
        ("10.244.2.0", "0a:58:0a:f4:02:00", "flannel.1"),
    ]
    assert [(f.lladdr, f.dst, f.dev) for f in node2.fdb] == [
        ("0a:58:0a:f4:00:00", "10.10.0.1", "flannel.1"),
        ("0a:58:0a:f4:02:00", "10.10.0.3", "flannel.1"),
    ]
    macs = {topology.namespaces[n].vxlans["flannel.1"].mac for n in ("node1", "node2", "node3")}
    assert len(macs) == 3


def test_a_group_per_node_for_diagrams() -> None:
    groups = [(g.name, g.kind, g.members) for g in load(base()).groups]
    assert groups == [
        ("node1", "k8s node", ["node1", "web-a", "client-a"]),
        ("node2", "k8s node", ["node2", "web-b", "client-b"]),
    ]


def test_pods_hosts_files_name_the_pod_and_every_service() -> None:
    topology = load(base())
    dns = topology.namespaces["client-b"].dns
    assert dns is not None
    assert dns.hosts == {
        "client-b": "10.244.1.3",
        "web": "10.96.0.10",
        "web.default": "10.96.0.10",
        "web.default.svc": "10.96.0.10",
        "web.default.svc.cluster.local": "10.96.0.10",
        "web-np": "10.96.0.1",
        "web-np.default": "10.96.0.1",
        "web-np.default.svc": "10.96.0.1",
        "web-np.default.svc.cluster.local": "10.96.0.1",
    }
    # kubelet's search path; a nameserver where nothing listens, so other names fail at once
    assert dns.search == ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"]
    assert dns.nameservers == ["127.0.0.1"]
    data = base()
    cluster(data)["pod_hosts"] = False
    dns = load(data).namespaces["client-b"].dns
    assert dns is not None and dns.hosts == {} and dns.nameservers == ["127.0.0.1"]


def test_core_objects_stay_and_an_existing_masquerade_is_not_doubled() -> None:
    data = base()
    data["host"]["masquerade"] = [{"source": "10.10.0.0/24", "out": "eth0"}]
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 1}
    data["namespaces"] = {"outside": {}}
    topology = load(data)
    assert next(iter(topology.namespaces)) == "outside"
    assert [(m.source, m.out) for m in topology.host.masquerade] == [
        ("10.10.0.0/24", "eth0"),
        ("10.244.0.0/16", "eth0"),
    ]


def test_without_an_external_uplink_the_host_masquerades_nothing() -> None:
    data = base()
    del data["host"]
    topology = load(data)
    assert topology.host.masquerade == []
    assert "k8s-nodes" in topology.host.bridges


# ---- kube-proxy ------------------------------------------------------------------------------

EXPECTED_NODE_RULES = [
    ("nat", "PREROUTING", "-j KUBE-SERVICES"),
    ("nat", "OUTPUT", "-j KUBE-SERVICES"),
    ("nat", "POSTROUTING", "-j KUBE-POSTROUTING"),
    ("nat", "POSTROUTING", "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE"),
    ("nat", "KUBE-MARK-MASQ", "-j MARK --or-mark 0x4000"),
    ("nat", "KUBE-POSTROUTING", "-m mark ! --mark 0x4000/0x4000 -j RETURN"),
    ("nat", "KUBE-POSTROUTING", "-j MARK --xor-mark 0x4000"),
    ("nat", "KUBE-POSTROUTING", "-j MASQUERADE"),
    ("nat", "KUBE-SERVICES", "-d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-SVC-WEB"),
    ("nat", "KUBE-SERVICES", "-d 10.96.0.1/32 -p tcp --dport 80 -j KUBE-SVC-WEB-NP"),
    ("nat", "KUBE-SERVICES", "-m addrtype --dst-type LOCAL -j KUBE-NODEPORTS"),
    ("nat", "KUBE-NODEPORTS", "-p tcp --dport 30080 -j KUBE-MARK-MASQ"),
    ("nat", "KUBE-NODEPORTS", "-p tcp --dport 30080 -j KUBE-SVC-WEB-NP"),
    (
        "nat",
        "KUBE-SVC-WEB",
        "! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp --dport 80 -j KUBE-MARK-MASQ",
    ),
    (
        "nat",
        "KUBE-SVC-WEB",
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB-1",
    ),
    ("nat", "KUBE-SVC-WEB", "-j KUBE-SEP-WEB-2"),
    ("nat", "KUBE-SEP-WEB-1", "-s 10.244.0.2/32 -j KUBE-MARK-MASQ"),
    ("nat", "KUBE-SEP-WEB-1", "-p tcp -j DNAT --to-destination 10.244.0.2:8080"),
    ("nat", "KUBE-SEP-WEB-2", "-s 10.244.1.2/32 -j KUBE-MARK-MASQ"),
    ("nat", "KUBE-SEP-WEB-2", "-p tcp -j DNAT --to-destination 10.244.1.2:8080"),
    (
        "nat",
        "KUBE-SVC-WEB-NP",
        "! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp --dport 80 -j KUBE-MARK-MASQ",
    ),
    (
        "nat",
        "KUBE-SVC-WEB-NP",
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-WEB-NP-1",
    ),
    ("nat", "KUBE-SVC-WEB-NP", "-j KUBE-SEP-WEB-NP-2"),
    ("nat", "KUBE-SEP-WEB-NP-1", "-s 10.244.0.2/32 -j KUBE-MARK-MASQ"),
    ("nat", "KUBE-SEP-WEB-NP-1", "-p tcp -j DNAT --to-destination 10.244.0.2:8080"),
    ("nat", "KUBE-SEP-WEB-NP-2", "-s 10.244.1.2/32 -j KUBE-MARK-MASQ"),
    ("nat", "KUBE-SEP-WEB-NP-2", "-p tcp -j DNAT --to-destination 10.244.1.2:8080"),
]


def test_every_node_gets_kube_proxys_chains_and_rules_in_order() -> None:
    topology = load(base())
    for node in ("node1", "node2"):
        space = topology.namespaces[node]
        assert [(c.table, c.name, c.inline) for c in space.iptables.chains] == [
            ("nat", "KUBE-SERVICES", False),
            ("nat", "KUBE-NODEPORTS", False),
            ("nat", "KUBE-MARK-MASQ", False),
            ("nat", "KUBE-POSTROUTING", False),
            ("nat", "KUBE-SVC-WEB", False),
            ("nat", "KUBE-SEP-WEB-1", False),
            ("nat", "KUBE-SEP-WEB-2", False),
            ("nat", "KUBE-SVC-WEB-NP", False),
            ("nat", "KUBE-SEP-WEB-NP-1", False),
            ("nat", "KUBE-SEP-WEB-NP-2", False),
            ("nat", "KUBE-EXT-WEB-NP", True),  # iptables writes its rules in KUBE-NODEPORTS
        ]
        assert rules(space) == EXPECTED_NODE_RULES
    for pod in ("web-a", "client-b"):
        assert rules(topology.namespaces[pod]) == []
    assert topology.host.iptables.rules == []


def test_probabilities_spread_connections_evenly_over_n_endpoints() -> None:
    data = base()
    pods = ["p1", "p2", "p3", "p4"]
    cluster(data)["nodes"]["node1"]["pods"] += pods
    cluster(data)["services"] = {
        "four": {"cluster_ip": "10.96.0.4", "port": 53, "protocol": "UDP", "endpoints": pods},
        "one": {"cluster_ip": "10.96.0.1", "port": 80, "endpoints": ["p1"]},
    }
    space = load(data).namespaces["node1"]
    four = [rule for table, chain, rule in rules(space) if chain == "KUBE-SVC-FOUR"]
    assert four == [
        "! -s 10.244.0.0/16 -d 10.96.0.4/32 -p udp --dport 53 -j KUBE-MARK-MASQ",
        "-m statistic --mode random --probability 0.25000000000 -j KUBE-SEP-FOUR-1",
        "-m statistic --mode random --probability 0.33333333333 -j KUBE-SEP-FOUR-2",
        "-m statistic --mode random --probability 0.50000000000 -j KUBE-SEP-FOUR-3",
        "-j KUBE-SEP-FOUR-4",
    ]
    assert [rule for _, chain, rule in rules(space) if chain == "KUBE-SEP-FOUR-3"] == [
        "-s 10.244.0.6/32 -j KUBE-MARK-MASQ",
        "-p udp -j DNAT --to-destination 10.244.0.6:53",
    ]
    one = [rule for _, chain, rule in rules(space) if chain == "KUBE-SVC-ONE"]
    assert one[1:] == ["-j KUBE-SEP-ONE-1"]
    assert shares(4) == ["0.25000000000", "0.33333333333", "0.50000000000", None]
    assert shares(7)[0] == "0.14285714286"
    assert shares(1) == [None]
    # no NodePort service: no KUBE-NODEPORTS chain and no jump to it
    assert not any("KUBE-NODEPORTS" in f"{chain} {rule}" for _, chain, rule in rules(space))


def test_cluster_ips_and_node_ports_are_allocated_in_order_when_left_out() -> None:
    data = base()
    cluster(data)["services"] = {
        "a": {"type": "NodePort", "port": 80, "endpoints": ["web-a"]},
        "b": {
            "cluster_ip": "10.96.0.2",
            "type": "NodePort",
            "node_port": 30000,
            "port": 81,
            "endpoints": ["web-a"],
        },
        "c": {"type": "NodePort", "port": 82, "endpoints": ["web-a"]},
    }
    space = load(data).namespaces["node1"]
    services = [rule for _, chain, rule in rules(space) if chain == "KUBE-SERVICES"]
    assert services[:3] == [
        "-d 10.96.0.1/32 -p tcp --dport 80 -j KUBE-SVC-A",
        "-d 10.96.0.2/32 -p tcp --dport 81 -j KUBE-SVC-B",
        "-d 10.96.0.3/32 -p tcp --dport 82 -j KUBE-SVC-C",
    ]
    nodeports = [rule for _, chain, rule in rules(space) if chain == "KUBE-NODEPORTS"]
    assert nodeports[::2] == [
        "-p tcp --dport 30001 -j KUBE-MARK-MASQ",
        "-p tcp --dport 30000 -j KUBE-MARK-MASQ",
        "-p tcp --dport 30002 -j KUBE-MARK-MASQ",
    ]
    # target_port defaults to port
    sep = [rule for _, chain, rule in rules(space) if chain == "KUBE-SEP-C-1"]
    assert sep[-1] == "-p tcp -j DNAT --to-destination 10.244.0.2:82"


def test_a_service_without_endpoints_is_rejected_in_the_filter_table() -> None:
    data = base()
    cluster(data)["services"] = {
        "idle": {"cluster_ip": "10.96.0.20", "port": 80},
        "idle-np": {"type": "NodePort", "cluster_ip": "10.96.0.21", "node_port": 30090, "port": 80},
    }
    space = load(data).namespaces["node1"]
    assert [(c.table, c.name) for c in space.iptables.chains] == [
        ("nat", "KUBE-SERVICES"),
        ("nat", "KUBE-NODEPORTS"),
        ("nat", "KUBE-MARK-MASQ"),
        ("nat", "KUBE-POSTROUTING"),
        ("filter", "KUBE-SERVICES"),
        ("filter", "KUBE-EXTERNAL-SERVICES"),
    ]
    reject = "-j REJECT --reject-with icmp-port-unreachable"
    assert [r for r in rules(space) if r[0] == "filter"] == [
        ("filter", "FORWARD", "-m conntrack --ctstate NEW -j KUBE-SERVICES"),
        ("filter", "OUTPUT", "-m conntrack --ctstate NEW -j KUBE-SERVICES"),
        ("filter", "INPUT", "-m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES"),
        ("filter", "FORWARD", "-m conntrack --ctstate NEW -j KUBE-EXTERNAL-SERVICES"),
        ("filter", "KUBE-SERVICES", f"-d 10.96.0.20/32 -p tcp --dport 80 {reject}"),
        ("filter", "KUBE-SERVICES", f"-d 10.96.0.21/32 -p tcp --dport 80 {reject}"),
        (
            "filter",
            "KUBE-EXTERNAL-SERVICES",
            f"-p tcp --dport 30090 -m addrtype --dst-type LOCAL {reject}",
        ),
    ]
    assert not any(chain.startswith("KUBE-SVC") for _, chain, _ in rules(space))


def test_without_services_a_node_only_masquerades_pod_traffic_leaving_the_pod_network() -> None:
    data = base()
    cluster(data)["services"] = {}
    space = load(data).namespaces["node1"]
    assert space.iptables.chains == []
    assert rules(space) == [
        ("nat", "POSTROUTING", "-s 10.244.0.0/16 ! -d 10.244.0.0/16 -j MASQUERADE")
    ]
    assert load(data).namespaces["web-a"].dns is not None


# ---- validation ------------------------------------------------------------------------------


def _set(path: str, value: Any) -> Any:
    """A mutation of base(): set the value at a '/'-separated path of keys."""

    def mutate(data: dict[str, Any]) -> None:
        *parents, last = path.split("/")
        target = data
        for key in parents:
            target = target[key]
        target[last] = value

    return mutate


def _many_pods(data: dict[str, Any]) -> None:
    cluster(data)["nodes"]["node1"]["pods"] = [f"p{i}" for i in range(254)]
    cluster(data)["services"] = {}


def _many_nodes(data: dict[str, Any]) -> None:
    cluster(data)["node_network"]["subnet"] = "10.10.0.0/16"
    cluster(data)["nodes"] = {f"n{i}": {} for i in range(257)}
    cluster(data)["services"] = {}


def _core_namespace(name: str) -> Any:
    def mutate(data: dict[str, Any]) -> None:
        data["namespaces"] = {name: {}}

    return mutate


C = "cluster"
ENDPOINTS = ("web-a", "web-b")
NODES = "cluster/nodes"
WEB = "cluster/services/web"
WEB_NP = "cluster/services/web-np"

VALIDATION_CASES = [
    (_set(C, None), ["cluster: expected a mapping (key: value), got null"]),
    (
        _set("cluster/nodes/node1/pod", []),
        ["cluster.nodes.node1.pod: unknown key 'pod' (did you mean 'pods'?)"],
    ),
    (
        _set("cluster/colour", "blue"),
        [
            "cluster.colour: unknown key 'colour' (known keys: cluster_domain, ipv6, mode, "
            "node_cidr_mask_size, node_cidr_mask_size_ipv6, node_network, nodes, pod_cidr, "
            "pod_cidr_ipv6, pod_hosts, service_cidr, service_cidr_ipv6, services)"
        ],
    ),
    (
        _set("cluster/mode", "overlay"),
        ["cluster.mode: must be 'host-gw' or 'vxlan', got 'overlay'"],
    ),
    (
        _set(NODES, {}),
        [
            "cluster.nodes: a cluster needs at least one node",
            *[
                f"cluster.services.{service}.endpoints[{i}]: '{pod}' is not a pod of the cluster "
                "(pods: none)"
                for service in ("web", "web-np")
                for i, pod in enumerate(ENDPOINTS)
            ],
        ],
    ),
    (
        _set("cluster/nodes/node2/pods", ["web-b", "client-b", "node1"]),
        [
            "cluster.nodes.node2.pods[2]: pod name 'node1' is already a namespace (at "
            "cluster.nodes.node1)"
        ],
    ),
    (
        _set("cluster/nodes/node2/pods", ["client-b", "web-a"]),
        [
            "cluster.nodes.node2.pods[1]: pod name 'web-a' is already a namespace (at "
            "cluster.nodes.node1.pods[0])",
            "cluster.services.web.endpoints[1]: 'web-b' is not a pod of the cluster (pods: "
            "client-a, client-b, web-a)",
            "cluster.services.web-np.endpoints[1]: 'web-b' is not a pod of the cluster (pods: "
            "client-a, client-b, web-a)",
        ],
    ),
    (
        _core_namespace("web-b"),
        [
            "cluster.nodes.node2.pods[0]: pod name 'web-b' is already a namespace (at "
            "namespaces.web-b)"
        ],
    ),
    (
        _core_namespace("node2"),
        ["cluster.nodes.node2: node name 'node2' is already a namespace (at namespaces.node2)"],
    ),
    (
        _set("cluster/nodes/node1/pods", ["host"]),
        [
            "cluster.nodes.node1.pods[0]: 'host' is reserved for the root namespace: declare it "
            "under 'host:'"
        ],
    ),
    (
        _set("cluster/services/web/endpoints", ["web-a", "web-c", "node1", "web-a"]),
        [
            "cluster.services.web.endpoints[1]: 'web-c' is not a pod of the cluster (pods: "
            "client-a, client-b, web-a, web-b)",
            "cluster.services.web.endpoints[2]: 'node1' is a node, not a pod",
            "cluster.services.web.endpoints[3]: pod 'web-a' is already an endpoint (at "
            "endpoints[0])",
        ],
    ),
    (
        _set("cluster/services/web/cluster_ip", "10.244.3.3"),
        ["cluster.services.web.cluster_ip: 10.244.3.3 falls into the pod CIDR 10.244.0.0/16"],
    ),
    (
        _set("cluster/services/web/cluster_ip", "10.10.0.77"),
        ["cluster.services.web.cluster_ip: 10.10.0.77 falls into the node network 10.10.0.0/24"],
    ),
    (
        _set("cluster/services/web/cluster_ip", "192.168.1.1"),
        ["cluster.services.web.cluster_ip: 192.168.1.1 is outside the service CIDR 10.96.0.0/12"],
    ),
    (
        _set("cluster/services/web/cluster_ip", "10.96.0.0"),
        [
            "cluster.services.web.cluster_ip: 10.96.0.0 is the network or broadcast address of the "
            "service CIDR 10.96.0.0/12"
        ],
    ),
    (
        _set("cluster/services/web-np/cluster_ip", "10.96.0.10"),
        [
            "cluster.services.web-np.cluster_ip: 10.96.0.10 is already the cluster IP of "
            "cluster.services.web"
        ],
    ),
    (
        _set("cluster/services/web/cluster_ip", "10.96.0.300"),
        ["cluster.services.web.cluster_ip: '10.96.0.300' is not a valid IPv4 address"],
    ),
    (
        _set("cluster/services/web-np/node_port", 29999),
        ["cluster.services.web-np.node_port: 29999 is outside the NodePort range 30000-32767"],
    ),
    (
        _set("cluster/services/web-np/node_port", 32768),
        ["cluster.services.web-np.node_port: 32768 is outside the NodePort range 30000-32767"],
    ),
    (
        _set("cluster/services/web/node_port", 30080),
        [
            "cluster.services.web.node_port: only a NodePort service has a node_port (this one is "
            "type ClusterIP)"
        ],
    ),
    (
        _set("cluster/services/other", {"type": "NodePort", "node_port": 30080, "port": 80}),
        [
            "cluster.services.other.node_port: node port 30080 is already used by "
            "cluster.services.web-np"
        ],
    ),
    (
        _set("cluster/services/web/port", 0),
        ["cluster.services.web.port: 0 is not a port number (1-65535)"],
    ),
    (
        _set("cluster/services/web/port", "80"),
        ["cluster.services.web.port: expected an integer, got '80'"],
    ),
    (
        _set("cluster/services/web/type", "LoadBalancer"),
        ["cluster.services.web.type: must be 'ClusterIP' or 'NodePort', got 'LoadBalancer'"],
    ),
    (
        _set("cluster/services/Web", {"port": 80}),
        [
            "cluster.services.Web: 'Web' is not a valid service name: use lower-case letters, "
            "digits and '-', starting with a letter and not ending with '-' (a DNS label, as in "
            "Kubernetes)"
        ],
    ),
    (
        _set("cluster/services/a-very-long-name", {"port": 80}),
        [
            "cluster.services.a-very-long-name: 'a-very-long-name' is not a valid service name: 16 "
            "characters, over the limit of 15 (its chain KUBE-SEP-<NAME>-<n> must fit in 28)"
        ],
    ),
    (
        _set("cluster/services/web/port", None),
        ["cluster.services.web.port: expected an integer, got null"],
    ),
    (
        _many_pods,
        [
            "cluster.nodes.node1.pods: 254 pods do not fit in a /24 pod subnet: room for 253 (its "
            "first address is cni0's)"
        ],
    ),
    (
        _set("cluster/node_cidr_mask_size", 30),
        [
            "cluster.nodes.node1.pods: 2 pods do not fit in a /30 pod subnet: room for 1 (its first "
            "address is cni0's)",
            "cluster.nodes.node2.pods: 2 pods do not fit in a /30 pod subnet: room for 1 (its first "
            "address is cni0's)",
        ],
    ),
    (
        _many_nodes,
        [
            "cluster.nodes: 257 nodes do not fit: room for 256 (the pod CIDR 10.244.0.0/16 holds 256 "
            "node subnets of /24; the node network 10.10.0.0/16 has 65533 addresses besides the "
            "gateway)"
        ],
    ),
    (
        _set("cluster/node_network/subnet", "10.10.0.0/30"),
        [
            "cluster.nodes: 2 nodes do not fit: room for 1 (the pod CIDR 10.244.0.0/16 holds 256 "
            "node subnets of /24; the node network 10.10.0.0/30 has 1 addresses besides the "
            "gateway)"
        ],
    ),
    (
        _set("cluster/node_cidr_mask_size", 8),
        [
            "cluster.node_cidr_mask_size: 8 must lie between the pod CIDR's prefix length (16) "
            "and 30"
        ],
    ),
    (
        _set("cluster/pod_cidr", "10.10.0.0/16"),
        [
            "cluster.pod_cidr: 10.10.0.0/16 overlaps the node network 10.10.0.0/24 "
            "(cluster.node_network.subnet)"
        ],
    ),
    (
        _set("cluster/service_cidr", "10.0.0.0/8"),
        [
            "cluster.service_cidr: 10.0.0.0/8 overlaps the node network 10.10.0.0/24 "
            "(cluster.node_network.subnet)",
            "cluster.service_cidr: 10.0.0.0/8 overlaps the pod CIDR 10.244.0.0/16 "
            "(cluster.pod_cidr)",
        ],
    ),
    (
        _set("cluster/pod_cidr", "fd00:244::/56"),
        [
            "cluster.pod_cidr: fd00:244::/56 is IPv6: pod_cidr is the IPv4 range; the IPv6 one "
            "goes in pod_cidr_ipv6 (with ipv6: true)"
        ],
    ),
    (
        _set("cluster/pod_cidr", "10.244.0.1/16"),
        ["cluster.pod_cidr: '10.244.0.1/16' has host bits set: the subnet is 10.244.0.0/16"],
    ),
    (
        _set("cluster/node_network/subnet", "10.10.0.0/31"),
        [
            "cluster.node_network.subnet: 10.10.0.0/31 has no room for a gateway and a node (use "
            "/30 or larger)"
        ],
    ),
    (
        _set("host/bridges", {"k8s-nodes": {}}),
        [
            "cluster.node_network.bridge: 'k8s-nodes' is already an interface of the root namespace "
            "(declared under host)"
        ],
    ),
    (
        _set("host/bridges", {"br0": {"addresses": ["10.244.5.1/24"]}}),
        [
            "cluster.pod_cidr: the pod CIDR 10.244.0.0/16 overlaps 10.244.5.0/24, attached at "
            "host.bridges.br0"
        ],
    ),
    (
        _set("host/sysctls", {"net.ipv4.ip_forward": 0}),
        [
            "host.sysctls.net.ipv4.ip_forward: is 0, but the cluster needs 1: the host routes between "
            "the node network and the uplink"
        ],
    ),
]


@pytest.mark.parametrize(
    ("mutate", "expected"), VALIDATION_CASES, ids=[str(i) for i in range(len(VALIDATION_CASES))]
)
def test_validation_reports_every_problem_at_its_path(mutate: Any, expected: list[str]) -> None:
    data = base()
    mutate(data)
    assert problems(data) == [f"{SRC}: {line}" for line in expected]


# ---- the examples ----------------------------------------------------------------------------


@pytest.mark.parametrize("example", [HOST_GW, VXLAN], ids=lambda p: p.stem)
def test_examples_validate_and_render_shellcheck_clean_scripts(
    example: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["validate", str(example)])
    assert result.exit_code == 0, result.output
    assert "is valid: 6 namespace(s), 3 bridge(s), 6 veth pair(s)" in result.stdout
    scripts = write_scripts(render_scripts(build_plan(load_topology(example))), tmp_path)
    shellcheck = Path(sys.executable).parent / "shellcheck"
    checker = str(shellcheck) if shellcheck.exists() else "shellcheck"
    checked = subprocess.run(
        [checker, *map(str, scripts)], capture_output=True, text=True, timeout=120
    )
    assert checked.returncode == 0, checked.stdout


DOCS = EXAMPLES.parent / "docs" / "kubernetes.md"


def test_the_docs_excerpts_are_lines_of_the_rendered_setup_sh() -> None:
    blocks = re.findall(
        r"^```sh\n# setup\.sh of (examples/[\w-]+\.yaml)\n(.*?)^```$", DOCS.read_text(), re.M | re.S
    )
    assert len(blocks) >= 8
    rendered: dict[str, set[str]] = {}
    for example, body in blocks:
        if example not in rendered:
            setup = render_scripts(build_plan(load_topology(EXAMPLES.parent / example)))
            rendered[example] = set(setup["setup.sh"].splitlines())
        missing = [line for line in body.splitlines() if line not in rendered[example]]
        assert missing == [], f"docs/kubernetes.md quotes lines {example} does not render"


def test_the_two_examples_differ_only_in_the_cross_node_mechanism() -> None:
    host_gw, vxlan = load_topology(HOST_GW), load_topology(VXLAN)
    for name in ("web-a", "client-b"):
        a, b = host_gw.namespaces[name], vxlan.namespaces[name]
        assert (a.interfaces[0].addresses, a.routes) == (b.interfaces[0].addresses, b.routes)
    assert rules(host_gw.namespaces["node1"]) == rules(vxlan.namespaces["node1"])
    assert not host_gw.namespaces["node1"].vxlans
    assert list(vxlan.namespaces["node1"].vxlans) == ["flannel.1"]


# ---- for real, in the sandbox ----------------------------------------------------------------

NODE_ADDRESSES = {"node1": "10.10.0.1", "node2": "10.10.0.2"}
POD_ADDRESSES = {
    "web-a": "10.244.0.2",
    "client-a": "10.244.0.3",
    "web-b": "10.244.1.2",
    "client-b": "10.244.1.3",
}
CLUSTER_IP = "10.96.0.10"
TARGET_PORT = 8080
NODE_PORT = 30080
MAX_REQUESTS = 40

# socketserver's TCPServer, not http.server's HTTPServer: that one looks its own name up
# (getfqdn), which waits on DNS servers a sandbox cannot reach.
SERVER = """
import http.server, socketserver, sys
name, port = sys.argv[1], int(sys.argv[2])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"{name} {self.client_address[0]}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("0.0.0.0", port), Handler).serve_forever()
"""


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=300)


@contextmanager
def http_servers(pods: tuple[str, ...], port: int) -> Iterator[None]:
    """A tiny HTTP server in each pod answering "<pod> <client address>"; stopped by PID."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for pod in pods:
            processes.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", pod, sys.executable, "-c", SERVER, pod, str(port)],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for pod in pods:
            deadline = time.monotonic() + 10
            while not run("ss", "-Hltn", f"sport = :{port}", netns=pod).stdout.strip():
                assert time.monotonic() < deadline, f"the server in {pod} did not start"
                time.sleep(0.05)
        yield
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


def fetch(url: str, netns: str) -> tuple[str, str] | None:
    """One bounded HTTP GET: (pod that answered, client address it saw), or None."""
    result = run("curl", "-s", "--max-time", "3", url, netns=netns, timeout=10)
    if result.returncode != 0:
        return None
    name, seen = result.stdout.split()
    return name, seen


def spread(url: str, netns: str) -> tuple[Counter[str], dict[str, set[str]]]:
    """MAX_REQUESTS requests, each a new connection: hits per endpoint, and the client
    addresses each endpoint saw."""
    hits: Counter[str] = Counter()
    sources: dict[str, set[str]] = {}
    for _ in range(MAX_REQUESTS):
        answer = fetch(url, netns)
        assert answer is not None, f"no answer from {url} in {netns}"
        hits[answer[0]] += 1
        sources.setdefault(answer[0], set()).add(answer[1])
    return hits, sources


def node_addresses(node: str) -> set[str]:
    """Every IPv4 address a node namespace holds (eth0, cni0, flannel.1)."""
    out = run("ip", "-j", "-4", "addr", "show", netns=node).stdout
    return {a["local"] for link in json.loads(out) for a in link.get("addr_info", [])}


def hairpin_mode(node: str, pod: str) -> bool:
    """Whether the cni0 port of a pod's veth is in hairpin mode, read from the kernel."""
    eth0 = json.loads(run("ip", "-j", "link", "show", "eth0", netns=pod).stdout)[0]
    links = json.loads(run("ip", "-d", "-j", "link", "show", netns=node).stdout)
    (port,) = [link for link in links if link["ifindex"] == eth0["link_index"]]
    return bool(port["linkinfo"]["info_slave_data"]["hairpin"])


REPORT: dict[str, Any] = {}


def exercise(mode: str) -> None:
    """Pod to pod, a ClusterIP from the other node, a NodePort from the upstream."""
    assert ping(POD_ADDRESSES["web-a"], netns="client-a"), "same node, over cni0"
    assert ping(POD_ADDRESSES["web-b"], netns="client-a"), "across nodes"
    assert ping(POD_ADDRESSES["client-a"], netns="web-b"), "across nodes, the other way"
    assert ping(NODE_ADDRESSES["node1"], netns="client-b"), "pod -> the other node"
    assert ping(INTERNET_HOST, netns="client-a"), "pod -> simulated internet through two NATs"
    with http_servers(ENDPOINTS, TARGET_PORT):
        # pod to pod on the target port: no NAT, the server sees the client pod's address
        assert fetch(f"http://{POD_ADDRESSES['web-b']}:{TARGET_PORT}/", "client-a") == (
            "web-b",
            POD_ADDRESSES["client-a"],
        )

        hits, sources = spread(f"http://{CLUSTER_IP}/", "client-b")
        assert set(hits) == set(ENDPOINTS), hits
        assert set().union(*sources.values()) == {POD_ADDRESSES["client-b"]}, (
            "pod -> service keeps the pod's source address"
        )
        REPORT[f"{mode}: ClusterIP {CLUSTER_IP}:80 from client-b"] = dict(hits)

        hits, _ = spread("http://web.default.svc.cluster.local/", "client-a")
        assert set(hits) == set(ENDPOINTS), hits
        REPORT[f"{mode}: web.default.svc.cluster.local from client-a"] = dict(hits)

        # hairpin: web-a reaching itself through the service sees cni0's address (KUBE-SEP's
        # -s POD/32 -j KUBE-MARK-MASQ), or the reply would never go back through the DNAT.
        # The DNAT happens in cni0's bridge hook (br_netfilter), so the frame must leave by
        # the port it came in on: the bridge CNI plugin's hairpinMode, which the expansion
        # turns on for every pod port (peer.hairpin in the core format).
        assert hairpin_mode("node1", "web-a")
        hits, sources = spread(f"http://{CLUSTER_IP}/", "web-a")
        assert set(hits) == set(ENDPOINTS), hits
        assert sources["web-a"] == {"10.244.0.1"}, sources
        assert sources["web-b"] == {POD_ADDRESSES["web-a"]}, sources
        REPORT[f"{mode}: ClusterIP from web-a (hairpin)"] = dict(hits)

        # from the node itself (nat OUTPUT): off the pod network, so masqueraded
        hits, sources = spread(f"http://{CLUSTER_IP}/", "node1")
        assert set(hits) == set(ENDPOINTS), hits
        assert set().union(*sources.values()) <= node_addresses("node1"), sources
        REPORT[f"{mode}: ClusterIP from node1 itself"] = dict(hits)

        for node, address in NODE_ADDRESSES.items():
            hits, sources = spread(f"http://{address}:{NODE_PORT}/", UPSTREAM_NETNS)
            assert set(hits) == set(ENDPOINTS), (node, hits)
            # KUBE-MARK-MASQ: the endpoints see the node the request came in through
            assert set().union(*sources.values()) <= node_addresses(node), (node, sources)
            REPORT[f"{mode}: NodePort {address}:{NODE_PORT} from the upstream"] = {
                pod: (count, sorted(sources[pod])) for pod, count in hits.items()
            }
    for what, result in REPORT.items():
        print(f"{what}: {result}")


@sandboxed
def test_host_gw_cluster_carries_pod_service_and_nodeport_traffic(tmp_path: Path) -> None:
    with upstream(["eth0"], routes_back=["10.10.0.0/24"]):
        before = take_snapshot()
        up = nsgen("up", HOST_GW)
        assert up.returncode == 0, up.stderr
        try:
            route = run("ip", "route", "get", POD_ADDRESSES["web-b"], netns="node1").stdout
            assert "via 10.10.0.2 dev eth0" in route, route
            exercise("host-gw")
        finally:
            down = nsgen("down", HOST_GW)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)


def _tx_packets(netns: str, dev: str) -> int:
    out = run("ip", "-j", "-s", "link", "show", "dev", dev, netns=netns).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


def _filter_packets(netns: str, chain: str) -> int:
    out = run("iptables", "-w", "-t", "filter", "-L", chain, "-v", "-x", "-n", netns=netns).stdout
    return sum(int(line.split()[0]) for line in out.splitlines()[2:] if line.strip())


@sandboxed
def test_vxlan_cluster_carries_the_same_traffic_through_flannel_1(tmp_path: Path) -> None:
    data = yaml.safe_load(VXLAN.read_text())
    data["cluster"]["services"]["idle"] = {"cluster_ip": "10.96.0.20", "port": 80}
    data["cluster"]["services"]["idle-np"] = {"type": "NodePort", "node_port": 30090, "port": 80}
    variant = tmp_path / "k8s-vxlan.yaml"
    variant.write_text(yaml.safe_dump(data, sort_keys=False))
    with upstream(["eth0"], routes_back=["10.10.0.0/24"]):
        before = take_snapshot()
        up = nsgen("up", variant)
        assert up.returncode == 0, up.stderr
        try:
            route = run("ip", "route", "get", POD_ADDRESSES["web-b"], netns="node1").stdout
            assert "via 10.244.1.0 dev flannel.1" in route, route
            sent = _tx_packets("node1", "flannel.1")
            assert ping(POD_ADDRESSES["web-b"], netns="client-a")
            assert _tx_packets("node1", "flannel.1") > sent, "the ping did not use the tunnel"
            exercise("vxlan")

            # a Service without endpoints: refused at once (REJECT), not a timeout
            started = time.monotonic()
            refused = run("curl", "-s", "--max-time", "3", "http://10.96.0.20/", netns="client-a")
            assert refused.returncode == 7, (refused.returncode, refused.stderr)
            assert time.monotonic() - started < 2
            rejected = _filter_packets("node1", "KUBE-EXTERNAL-SERVICES")
            refused = run(
                "curl", "-s", "--max-time", "3", "http://10.10.0.1:30090/", netns=UPSTREAM_NETNS
            )
            assert refused.returncode == 7, (refused.returncode, refused.stderr)
            assert _filter_packets("node1", "KUBE-EXTERNAL-SERVICES") > rejected
        finally:
            down = nsgen("down", variant)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)
