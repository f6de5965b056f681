"""The Kubernetes-style cluster in dual stack (`ipv6: true`): what it expands to (a second
address per node, pod and cni0, flannel's routes or second VTEP flannel-v6.1 per family, a
ClusterIP per family by ip_families / ip_family_policy, kube-proxy's rules in ip6tables), the
problems it reports, and, in the sandbox, examples/k8s-dual.yaml (host-gw) and its vxlan
variant with real packets in IPv6: pod to pod across nodes at once after setup, a ClusterIP
spreading over the IPv6 endpoints, hairpin, the node itself, NodePorts of every node from the
upstream, REJECT for a Service without endpoints."""

from __future__ import annotations

import copy
import ipaddress
import json
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

from nsgen.backends.iptables import rule_text
from nsgen.errors import TopologyError
from nsgen.expand.k8s import vtep_mac
from nsgen.kinds.rules import expanded_rules
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Namespace, Topology
from nsgen.sandbox import INTERNET_HOST6, UPSTREAM_NETNS, upstream
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, ping, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
EXAMPLE = EXAMPLES / "k8s-dual.yaml"
SRC = "k6.yaml"


def base() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["checks"] = []
    return copy.deepcopy(data)


def load(data: dict[str, Any]) -> Topology:
    return topology_from_data(data, SRC)


def problems(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, SRC)
    return [line.removeprefix(f"{SRC}: ") for line in caught.value.lines()]


def rules(space: Namespace, family: int) -> list[tuple[str, str, str]]:
    """A node's rules of one family as the iptables backend installs them."""
    return [
        (r.table, r.chain, rule_text(r))
        for r in expanded_rules(space.iptables)
        if family in r.families
    ]


# ---- what ipv6: true expands to --------------------------------------------------------------


def test_every_node_pod_and_cni0_gets_an_address_of_each_family() -> None:
    topology = load(base())
    assert topology.host.bridges["k8s-nodes"].addresses == ["10.10.0.254/24", "fd00:10:10::fe/64"]
    node2 = topology.namespaces["node2"]
    assert node2.interfaces[0].addresses == ["10.10.0.2/24", "fd00:10:10::2/64"]
    assert node2.bridges["cni0"].addresses == ["10.244.1.1/24", "fd00:10:244:1::1/64"]
    assert topology.namespaces["client-b"].interfaces[0].addresses == [
        "10.244.1.3/24",
        "fd00:10:244:1::3/64",
    ]
    assert [(r.to, r.via) for r in topology.namespaces["client-b"].routes] == [
        ("default", "10.244.1.1"),
        ("default", "fd00:10:244:1::1"),
    ]
    assert node2.sysctls == {"net.ipv4.ip_forward": "1", "net.ipv6.conf.all.forwarding": "1"}
    assert [(m.source, m.out) for m in topology.host.masquerade] == [
        ("10.10.0.0/24", "eth0"),
        ("10.244.0.0/16", "eth0"),
        ("fd00:10:10::/64", "eth0"),
        ("fd00:10:244::/56", "eth0"),
    ]


def test_host_gw_routes_each_family_via_the_other_nodes_address_of_that_family() -> None:
    routes = load(base()).namespaces["node1"].routes
    assert [(r.to, r.via, r.dev) for r in routes] == [
        ("default", "10.10.0.254", None),
        ("default", "fd00:10:10::fe", None),
        ("10.244.1.0/24", "10.10.0.2", "eth0"),
        ("fd00:10:244:1::/64", "fd00:10:10::2", "eth0"),
    ]


def test_vxlan_mode_runs_flannels_second_vtep_over_the_nodes_ipv6_addresses() -> None:
    data = base()
    data["cluster"]["mode"] = "vxlan"
    node1 = load(data).namespaces["node1"]
    six = node1.vxlans["flannel-v6.1"]
    assert (six.id, six.local, six.dev, six.port, six.learning, six.addresses) == (
        1,
        "fd00:10:10::1",
        "eth0",
        8472,
        False,
        ["fd00:10:244::/128"],
    )
    remote = vtep_mac(ipaddress.IPv6Address("fd00:10:244:1::"))
    assert [(r.to, r.via, r.dev, r.onlink) for r in node1.routes[-1:]] == [
        ("fd00:10:244:1::/64", "fd00:10:244:1::", "flannel-v6.1", True)
    ]
    assert [(n.dev, n.address, n.lladdr) for n in node1.neighbors[-1:]] == [
        ("flannel-v6.1", "fd00:10:244:1::", remote)
    ]
    assert [(f.dev, f.lladdr, f.dst) for f in node1.fdb[-1:]] == [
        ("flannel-v6.1", remote, "fd00:10:10::2")
    ]
    assert list(node1.vxlans) == ["flannel.1", "flannel-v6.1"]


def test_services_get_a_cluster_ip_per_family_by_their_policy() -> None:
    data = base()
    services = data["cluster"]["services"]
    services["single"] = {"port": 80, "endpoints": ["web-a"]}
    services["six"] = {"port": 80, "ip_families": ["IPv6"], "endpoints": ["web-a"]}
    services["six-first"] = {
        "port": 80,
        "ip_family_policy": "PreferDualStack",
        "ip_families": ["IPv6", "IPv4"],
        "endpoints": ["web-a"],
    }
    hosts = load(data).namespaces["client-a"].dns
    assert hosts is not None
    assert hosts.hosts["web"] == ["10.96.0.10", "fd00:10:96::a"]
    assert hosts.hosts["web-np"] == ["10.96.0.1", "fd00:10:96::1"]
    assert hosts.hosts["single"] == "10.96.0.2"  # SingleStack: the cluster's first family
    assert hosts.hosts["six"] == "fd00:10:96::2"
    assert hosts.hosts["six-first"] == ["fd00:10:96::3", "10.96.0.3"]
    assert hosts.hosts["client-a"] == ["10.244.0.3", "fd00:10:244::3"]


def test_kube_proxy_programs_each_family_with_the_same_chains() -> None:
    data = base()
    data["cluster"]["services"]["idle"] = {
        "type": "NodePort",
        "ip_family_policy": "RequireDualStack",
        "port": 81,
        "node_port": 30090,
    }
    node1 = load(data).namespaces["node1"]
    six = rules(node1, 6)
    assert ("nat", "POSTROUTING", "-s fd00:10:244::/56 ! -d fd00:10:244::/56 -j MASQUERADE") in six
    assert (
        "nat",
        "KUBE-SEP-WEB-2",
        "-p tcp -j DNAT --to-destination [fd00:10:244:1::2]:8080",
    ) in six
    assert ("nat", "KUBE-SEP-WEB-2", "-s fd00:10:244:1::2/128 -j KUBE-MARK-MASQ") in six
    assert (
        "filter",
        "KUBE-SERVICES",
        "-d fd00:10:96::2/128 -p tcp --dport 81 -j REJECT --reject-with icmp6-port-unreachable",
    ) in six
    assert ("nat", "KUBE-NODEPORTS", "-p tcp --dport 30080 -j KUBE-SVC-WEB-NP") in six
    # the IPv4 rules are kube-proxy's as before, and no rule is in both families by accident
    four = rules(node1, 4)
    assert ("nat", "KUBE-SEP-WEB-2", "-s 10.244.1.2/32 -j KUBE-MARK-MASQ") in four
    assert not [r for r in node1.iptables.rules if len(r.families) > 1]
    assert len(four) == len(six)


@pytest.mark.parametrize(
    ("change", "line"),
    [
        (
            lambda c: c.update(ipv6=False),
            "cluster.node_network.subnet_ipv6: needs ipv6: true",
        ),
        (
            lambda c: c.update(pod_cidr_ipv6="10.99.0.0/16"),
            "cluster.pod_cidr_ipv6: 10.99.0.0/16 is IPv4: the IPv4 range goes in the key "
            "without _ipv6",
        ),
        (
            lambda c: c.update(service_cidr_ipv6="fd00:10:244:ff::/112"),
            "cluster.service_cidr_ipv6: fd00:10:244:ff::/112 overlaps the IPv6 pod CIDR "
            "fd00:10:244::/56 (cluster.pod_cidr_ipv6)",
        ),
        (
            lambda c: c["services"]["web"].pop("ip_family_policy"),
            "cluster.services.web.ip_family_policy: not set, but the Service names two "
            "families: set PreferDualStack or RequireDualStack (as Kubernetes requires since "
            "1.23)",
        ),
        (
            lambda c: c["services"]["web"].update(cluster_ips=["10.96.0.10", "fd00:99::a"]),
            "cluster.services.web.cluster_ips[1]: fd00:99::a is outside the IPv6 service CIDR "
            "fd00:10:96::/112",
        ),
        (
            lambda c: c["services"]["web"].update(cluster_ip="10.96.0.11"),
            "cluster.services.web.cluster_ip: 10.96.0.11 is not cluster_ips[0] (10.96.0.10): "
            "cluster_ip is the primary family's ClusterIP",
        ),
        (
            lambda c: c["services"]["web"].update(ip_families=["IPv6", "IPv4"]),
            "cluster.services.web.cluster_ips: the addresses are IPv4, IPv6, in another order "
            "than ip_families (IPv6, IPv4)",
        ),
        (
            lambda c: c["services"]["web"].update(ip_families=["IPv6", "IPv6"]),
            "cluster.services.web.ip_families: names a family twice",
        ),
    ],
)
def test_dual_stack_problems_are_one_line_at_their_path(change: Any, line: str) -> None:
    data = base()
    change(data["cluster"])
    assert line in problems(data)


def test_a_service_of_a_family_the_cluster_lacks_is_refused() -> None:
    data = yaml.safe_load((EXAMPLES / "k8s-two-nodes.yaml").read_text())
    services = data["cluster"]["services"]
    services["web"]["ip_family_policy"] = "RequireDualStack"
    services["web-np"]["ip_families"] = ["IPv6"]
    assert problems(data) == [
        "cluster.services.web.ip_family_policy: RequireDualStack, but the cluster is IPv4 only "
        "(ipv6: true makes it dual-stack)",
        "cluster.services.web-np.ip_families[0]: IPv6, but the cluster has no IPv6 (ipv6: true)",
    ]
    services["web"]["ip_family_policy"] = "PreferDualStack"  # falls back to one family
    del services["web-np"]["ip_families"]
    hosts = load(data).namespaces["client-a"].dns
    assert hosts is not None and hosts.hosts["web"] == "10.96.0.10"


def test_the_dual_example_has_an_ipv6_twin_of_every_check() -> None:
    topology = load_topology(EXAMPLE)
    families = Counter(c.family or 4 for c in topology.checks)
    assert families == {4: 6, 6: 6}


# ---- for real, in the sandbox ----------------------------------------------------------------

PODS6 = {
    "web-a": "fd00:10:244::2",
    "client-a": "fd00:10:244::3",
    "web-b": "fd00:10:244:1::2",
    "client-b": "fd00:10:244:1::3",
}
NODES6 = {"node1": "fd00:10:10::1", "node2": "fd00:10:10::2"}
CLUSTER_IP6 = "fd00:10:96::a"
ENDPOINTS = ("web-a", "web-b")
MAX_REQUESTS = 40

# socketserver's, on [::] with IPv4 mapped in: answers "<pod> <client address>"
SERVER6 = """
import http.server, socket, socketserver, sys
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
class Server(socketserver.ThreadingTCPServer):
    address_family = socket.AF_INET6
    allow_reuse_address = True
Server(("::", port), Handler).serve_forever()
"""


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=300)


@contextmanager
def http_servers(pods: tuple[str, ...], port: int) -> Iterator[None]:
    """The server above in each pod; stopped by PID."""
    processes: list[subprocess.Popen[bytes]] = []
    try:
        for pod in pods:
            processes.append(
                subprocess.Popen(
                    ["ip", "netns", "exec", pod, sys.executable, "-c", SERVER6, pod, str(port)],
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


def fetch6(url: str, netns: str, family: str = "-6") -> tuple[str, str] | None:
    """One bounded HTTP GET over IPv6 (or `family` -4): (pod that answered, client address
    it saw), or None."""
    result = run("curl", family, "-g", "-s", "--max-time", "3", url, netns=netns, timeout=10)
    if result.returncode != 0:
        return None
    name, seen = result.stdout.split()
    return name, seen


def spread6(url: str, netns: str, family: str = "-6") -> tuple[Counter[str], dict[str, set[str]]]:
    """MAX_REQUESTS requests, each a new connection: hits per endpoint, and the client
    addresses each endpoint saw."""
    hits: Counter[str] = Counter()
    sources: dict[str, set[str]] = {}
    for _ in range(MAX_REQUESTS):
        answer = fetch6(url, netns, family)
        assert answer is not None, f"no answer from {url} in {netns}"
        hits[answer[0]] += 1
        sources.setdefault(answer[0], set()).add(answer[1])
    return hits, sources


def addresses6(netns: str) -> set[str]:
    out = run("ip", "-j", "-6", "addr", "show", "scope", "global", netns=netns).stdout
    found = (a.get("local") for link in json.loads(out) for a in link.get("addr_info", []))
    return {address for address in found if address}


def exercise6(mode: str) -> None:
    """The IPv6 twin of tests/test_k8s.py's exercise: the first packets right after setup,
    pod to pod, a ClusterIP from a pod, by name, hairpin, from the node, NodePorts."""
    # no wait after setup: every address, link-local ones included, is usable at once
    assert ping(PODS6["web-b"], netns="client-a"), "across nodes, the first packet"
    assert ping(PODS6["client-a"], netns="web-b"), "across nodes, the other way"
    assert ping(PODS6["web-a"], netns="client-a"), "same node, over cni0"
    assert ping(NODES6["node1"], netns="client-b"), "pod -> the other node"
    assert ping(INTERNET_HOST6, netns="client-a"), "pod -> the internet through two NAT66s"
    with http_servers(ENDPOINTS, 8080):
        assert fetch6(f"http://[{PODS6['web-b']}]:8080/", "client-a") == (
            "web-b",
            PODS6["client-a"],
        )
        hits, sources = spread6(f"http://[{CLUSTER_IP6}]/", "client-b")
        assert set(hits) == set(ENDPOINTS), hits
        assert set().union(*sources.values()) == {PODS6["client-b"]}
        print(f"{mode}: ClusterIP [{CLUSTER_IP6}]:80 from client-b: {dict(hits)}")
        # the IPv4 ClusterIP of the same Service spreads over the IPv4 endpoints beside it
        hits, sources = spread6("http://10.96.0.10/", "client-b", "-4")
        assert set(hits) == set(ENDPOINTS), hits
        assert set().union(*sources.values()) == {"::ffff:10.244.1.3"}
        print(f"{mode}: ClusterIP 10.96.0.10:80 from client-b: {dict(hits)}")

        hits, _ = spread6("http://web.default.svc.cluster.local/", "client-a")
        assert set(hits) == set(ENDPOINTS), hits

        hits, sources = spread6(f"http://[{CLUSTER_IP6}]/", "web-a")
        assert set(hits) == set(ENDPOINTS), hits
        assert sources["web-a"] == {"fd00:10:244::1"}, sources  # hairpin: cni0's address
        assert sources["web-b"] == {PODS6["web-a"]}, sources

        hits, sources = spread6(f"http://[{CLUSTER_IP6}]/", "node1")
        assert set(hits) == set(ENDPOINTS), hits
        assert set().union(*sources.values()) <= addresses6("node1"), sources

        for node, address in NODES6.items():
            hits, sources = spread6(f"http://[{address}]:30080/", UPSTREAM_NETNS)
            assert set(hits) == set(ENDPOINTS), (node, hits)
            assert set().union(*sources.values()) <= addresses6(node), (node, sources)
            print(f"{mode}: NodePort [{address}]:30080 from the upstream: {dict(hits)}")


def _tx_packets(netns: str, dev: str) -> int:
    out = run("ip", "-j", "-s", "link", "show", "dev", dev, netns=netns).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])


@sandboxed
def test_host_gw_dual_cluster_carries_pod_service_and_nodeport_traffic_in_ipv6(
    tmp_path: Path,
) -> None:
    with upstream(["eth0"], routes_back=["10.10.0.0/24", "fd00:10:10::/64"]):
        before = take_snapshot()
        up = nsgen("up", EXAMPLE)
        assert up.returncode == 0, up.stderr
        try:
            exercise6("host-gw")
            route = run("ip", "-6", "route", "get", PODS6["web-b"], netns="node1").stdout
            assert "via fd00:10:10::2 dev eth0" in route, route
            checks = nsgen("check", EXAMPLE)
            assert checks.returncode == 0, checks.stdout + checks.stderr
            assert "12 passed, 0 failed" in checks.stdout
        finally:
            down = nsgen("down", EXAMPLE)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)


@sandboxed
def test_vxlan_dual_cluster_carries_ipv6_through_flannel_v6(tmp_path: Path) -> None:
    data = yaml.safe_load(EXAMPLE.read_text())
    data["name"] = "k8s-dual-vx"
    data["cluster"]["mode"] = "vxlan"
    data["cluster"]["services"]["idle"] = {
        "ip_family_policy": "RequireDualStack",
        "port": 80,
    }
    variant = tmp_path / "k8s-dual-vx.yaml"
    variant.write_text(yaml.safe_dump(data, sort_keys=False))
    with upstream(["eth0"], routes_back=["10.10.0.0/24", "fd00:10:10::/64"]):
        before = take_snapshot()
        up = nsgen("up", variant)
        assert up.returncode == 0, up.stderr
        try:
            sent = _tx_packets("node1", "flannel-v6.1")
            exercise6("vxlan")
            route = run("ip", "-6", "route", "get", PODS6["web-b"], netns="node1").stdout
            assert "via fd00:10:244:1:: dev flannel-v6.1" in route, route
            assert _tx_packets("node1", "flannel-v6.1") > sent, "IPv6 did not use the tunnel"
            # a Service without endpoints: refused at once in IPv6 too (icmp6 REJECT)
            started = time.monotonic()
            refused = run(
                "curl",
                "-6",
                "-g",
                "-s",
                "--max-time",
                "3",
                "http://[fd00:10:96::2]/",
                netns="client-a",
            )
            assert refused.returncode == 7, (refused.returncode, refused.stderr)
            assert time.monotonic() - started < 2
        finally:
            down = nsgen("down", variant)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)
