"""The Docker-style vocabulary in both families (`ipv6: true`): what it expands to (a ULA /64
derived as Docker 27 derives one, a second address per container, NAT66, ip6tables rules,
routed mode), the problems it reports, and, in the sandbox, examples/docker-dual.yaml and a
routed-mode network with real packets: published ports over IPv6 from the upstream, the host
and another container, NAT66 seen as the uplink's address, isolation, internal and icc in
both families."""

from __future__ import annotations

import copy
import hashlib
import ipaddress
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from nsgen.backends.iptables import rule_text
from nsgen.errors import TopologyError
from nsgen.expand.docker import ula_prefix
from nsgen.kinds.rules import expanded_rules
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Topology
from nsgen.sandbox import INTERNET_HOST6, UPSTREAM_NETNS, upstream
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, make_canary, ping, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
EXAMPLE = EXAMPLES / "docker-dual.yaml"
SRC = "d6.yaml"

_BASE: dict[str, Any] = {
    "name": "dock6",
    "host": {"external": ["eth0"]},
    "networks": {
        "front": {"subnet": "10.10.0.0/24", "ipv6": True},
        "back": {"subnet": "10.20.0.0/24", "internal": True, "ipv6": True},
    },
    "containers": {
        "web": {"networks": ["front", "back"], "publish": ["8080:80/tcp"]},
        "client": {"networks": ["front"]},
        "db": {"networks": {"back": {"address": "10.20.0.10", "ipv6_address": "fd01::10"}}},
    },
}


def base() -> dict[str, Any]:
    data = copy.deepcopy(_BASE)
    data["networks"]["back"]["ipv6_subnet"] = "fd01::/64"
    return data


def expand(data: dict[str, Any]) -> Topology:
    return topology_from_data(data, SRC)


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, SRC)
    return [(p.path, p.message) for p in caught.value.problems]


def rules(topology: Topology) -> list[tuple[str, str, str, tuple[int, ...]]]:
    """The root namespace's rules as the iptables backend installs them (dispatches written
    out)."""
    return [
        (r.table, r.chain, rule_text(r), r.families) for r in expanded_rules(topology.host.iptables)
    ]


# ---- what ipv6: true expands to --------------------------------------------------------------


def test_the_ula_prefix_is_derived_as_docker_27_derives_it_from_its_host_id() -> None:
    # moby daemon.deriveULABaseNetwork: sha256 of the ID, the first 8 bytes as a big-endian
    # integer, its 40 low bits after fd00::/8, a /48
    digest = hashlib.sha256(b"docker-dual").digest()
    gid = int.from_bytes(digest[:8], "big") & ((1 << 40) - 1)
    expected = ipaddress.IPv6Network((int(ipaddress.IPv6Address("fd00::")) + (gid << 80), 48))
    assert ula_prefix("docker-dual") == expected == ipaddress.IPv6Network("fd65:c96d:ce98::/48")


def test_networks_without_an_ipv6_subnet_take_the_next_free_64_of_the_ula_prefix() -> None:
    prefix = ula_prefix("dock6")
    data = base()
    first = next(prefix.subnets(new_prefix=64))
    data["networks"]["back"]["ipv6_subnet"] = str(first)  # taken: the others skip it
    del data["containers"]["db"]["networks"]["back"]["ipv6_address"]
    data["networks"]["third"] = {"subnet": "10.30.0.0/24", "ipv6": True}
    topology = expand(data)
    sixes = [a for b in topology.host.bridges.values() for a in b.addresses if ":" in a]
    second, third = list(prefix.subnets(new_prefix=64))[1:3]
    assert sixes == [f"{second[1]}/64", f"{first[1]}/64", f"{third[1]}/64"]
    assert expand(data) == topology  # the same file always gives the same subnets


def test_containers_are_dual_stacked_with_a_default_route_of_each_family() -> None:
    topology = expand(base())
    front = next(ula_prefix("dock6").subnets(new_prefix=64))
    web = topology.namespaces["web"]
    assert [i.addresses for i in web.interfaces] == [
        ["10.10.0.2/24", f"{front[2]}/64"],
        ["10.20.0.2/24", "fd01::2/64"],
    ]
    assert [(r.to, r.via) for r in web.routes] == [
        ("default", "10.10.0.1"),
        ("default", str(front[1])),
    ]
    assert topology.namespaces["db"].interfaces[0].addresses == ["10.20.0.10/24", "fd01::10/64"]
    assert topology.namespaces["db"].routes == []  # internal: no way out in either family
    assert topology.host.sysctls == {
        "net.ipv4.ip_forward": "1",
        "net.ipv6.conf.all.forwarding": "1",
        # the host's own connections to 127.0.0.1 on the published port (IPv4 only: ::1
        # never leaves the loopback)
        "net.ipv4.conf.br-front.route_localnet": "1",
    }


def test_names_resolve_to_both_addresses() -> None:
    topology = expand(base())
    front = next(ula_prefix("dock6").subnets(new_prefix=64))
    dns = topology.namespaces["client"].dns
    assert dns is not None
    assert dns.hosts == {
        "client": ["10.10.0.3", str(front[3])],
        "web": ["10.10.0.2", str(front[2])],
    }
    db = topology.namespaces["db"].dns
    assert db is not None and db.hosts["web"] == ["10.20.0.2", "fd01::2"]


def test_the_rules_of_the_second_family_mirror_the_first() -> None:
    front = next(ula_prefix("dock6").subnets(new_prefix=64))
    web6 = front[2]
    both, v4, v6 = (4, 6), (4,), (6,)
    assert rules(expand(base())) == [
        ("filter", "FORWARD", "-j NSGEN-dock6-FWD", both),
        # Docker 29's layout: what enters each network, then what leaves it
        ("filter", "NSGEN-dock6-FWD", "-i br-back -o br-front -j DROP", both),
        ("filter", "NSGEN-dock6-FWD", "-i br-front -o br-back -j DROP", both),
        ("filter", "NSGEN-dock6-FWD", "! -i br-back -o br-back -j DROP", both),
        ("filter", "NSGEN-dock6-FWD", "-i br-back ! -o br-back -j DROP", both),
        ("nat", "POSTROUTING", "-s 10.10.0.0/24 ! -o br-front -j MASQUERADE", v4),
        ("nat", "POSTROUTING", f"-s {front} ! -o br-front -j MASQUERADE", v6),
        ("nat", "PREROUTING", "-m addrtype --dst-type LOCAL -j NSGEN-dock6-DNAT", both),
        ("nat", "OUTPUT", "-m addrtype --dst-type LOCAL -j NSGEN-dock6-DNAT", v4),
        ("nat", "OUTPUT", "! -d ::1 -m addrtype --dst-type LOCAL -j NSGEN-dock6-DNAT", v6),
        (
            "nat",
            "NSGEN-dock6-DNAT",
            "-p tcp --dport 8080 -j DNAT --to-destination 10.10.0.2:80",
            v4,
        ),
        (
            "nat",
            "NSGEN-dock6-DNAT",
            f"-p tcp --dport 8080 -j DNAT --to-destination [{web6}]:80",
            v6,
        ),
        (
            "nat",
            "POSTROUTING",
            "-s 10.10.0.0/24 -d 10.10.0.2 -p tcp --dport 80 -m conntrack --ctstate DNAT "
            "-j MASQUERADE",
            v4,
        ),
        (
            "nat",
            "POSTROUTING",
            f"-s {front} -d {web6} -p tcp --dport 80 -m conntrack --ctstate DNAT -j MASQUERADE",
            v6,
        ),
        ("nat", "POSTROUTING", "-s 127.0.0.0/8 -d 10.10.0.2 -p tcp --dport 80 -j MASQUERADE", v4),
    ]


def test_an_ipv4_only_network_keeps_its_bridge_rules_out_of_ip6tables() -> None:
    data = base()
    data["networks"]["front"]["ipv6"] = False
    data["networks"]["back"]["icc"] = False
    found = rules(expand(data))
    assert ("filter", "NSGEN-dock6-FWD", "-i br-front -o br-back -j DROP", (4,)) in found
    assert ("filter", "NSGEN-dock6-FWD", "-i br-back -o br-back -j DROP", (4, 6)) in found
    assert not any("DNAT" in text and fam == (6,) for _, _, text, fam in found)
    sysctls = expand(data).host.sysctls
    assert sysctls["net.bridge.bridge-nf-call-ip6tables"] == "1"


def test_a_host_ip_picks_the_family_of_a_published_port() -> None:
    data = base()
    data["containers"]["web"]["publish"] = [
        "[2001:db8:203::2]:8443:443/tcp",
        {"published": 8080, "target": 80, "host_ip": "203.0.113.2"},
    ]
    dnat = [
        (text, fam) for _, chain, text, fam in rules(expand(data)) if chain == "NSGEN-dock6-DNAT"
    ]
    web6 = next(ula_prefix("dock6").subnets(new_prefix=64))[2]
    assert dnat == [
        (f"-d 2001:db8:203::2 -p tcp --dport 8443 -j DNAT --to-destination [{web6}]:443", (6,)),
        ("-d 203.0.113.2 -p tcp --dport 8080 -j DNAT --to-destination 10.10.0.2:80", (4,)),
    ]


def test_routed_mode_opens_only_published_container_ports_and_does_not_nat_ipv6() -> None:
    data = base()
    data["networks"]["front"]["gateway_mode_ipv6"] = "routed"
    web6 = next(ula_prefix("dock6").subnets(new_prefix=64))[2]
    found = rules(expand(data))
    fwd = [(text, fam) for _, chain, text, fam in found if chain == "NSGEN-dock6-FWD"]
    assert fwd == [
        # what enters br-front (its routed filter after the isolation), then br-back
        ("-i br-back -o br-front -j DROP", (4,)),  # the routed network's own filter decides
        ("-o br-front -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", (6,)),
        (f"-d {web6} ! -i br-front -o br-front -p tcp --dport 80 -j ACCEPT", (6,)),
        ("-o br-front -p icmpv6 -j ACCEPT", (6,)),
        ("! -i br-front -o br-front -j DROP", (6,)),
        ("-i br-front -o br-back -j DROP", (4, 6)),
        ("! -i br-back -o br-back -j DROP", (4, 6)),
        ("-i br-back ! -o br-back -j DROP", (4, 6)),
    ]
    # no NAT66, no IPv6 DNAT or hairpin: IPv4 keeps its NAT (and its loopback masquerade)
    assert [fam for _, _, text, fam in found if "MASQUERADE" in text or "DNAT" in text] == [
        (4,),
        (4,),
        (4,),
        (4,),
        (4,),
        (4,),
    ]


@pytest.mark.parametrize(
    ("change", "path", "message"),
    [
        (
            lambda d: d["networks"]["front"].update(ipv6=False, ipv6_subnet="fd02::/64"),
            "networks.front.ipv6_subnet",
            "needs ipv6: true",
        ),
        (
            lambda d: d["networks"]["front"].update(subnet="fd02::/64"),
            "networks.front.subnet",
            "fd02::/64 is IPv6: subnet is the network's IPv4 subnet; an IPv6 one goes in "
            "ipv6_subnet (with ipv6: true)",
        ),
        (
            lambda d: d["networks"]["front"].update(ipv6_subnet="10.50.0.0/24"),
            "networks.front.ipv6_subnet",
            "10.50.0.0/24 is IPv4: the IPv4 subnet goes in subnet",
        ),
        (
            lambda d: d["networks"]["front"].update(ipv6_subnet="fd01::/56"),
            "networks.back.ipv6_subnet",
            "fd01::/64 overlaps fd01::/56 of network front (networks.front.ipv6_subnet)",
        ),
        (
            lambda d: d["networks"]["back"].update(ipv6_gateway="fd02::1"),
            "networks.back.ipv6_gateway",
            "fd02::1 is not a host address of the subnet fd01::/64",
        ),
        (
            lambda d: d["networks"]["back"].update(gateway_mode_ipv6="routed"),
            "networks.back.gateway_mode_ipv6",
            "an internal network routes nothing out: remove gateway_mode_ipv6 or internal",
        ),
        (
            lambda d: d["containers"]["db"]["networks"]["back"].update(ipv6_address="fd02::10"),
            "containers.db.networks.back.ipv6_address",
            "fd02::10 is outside the IPv6 subnet fd01::/64",
        ),
        (
            lambda d: d["networks"]["back"].update(ipv6=False, ipv6_subnet=None),
            "containers.db.networks.back.ipv6_address",
            "network back has no IPv6 (ipv6: true)",
        ),
        (
            lambda d: (
                d["networks"]["front"].update(gateway_mode_ipv6="routed")
                or d["containers"]["web"].update(publish=["[2001:db8::1]:8080:80"])
            ),
            "containers.web.publish[0]",
            "network front routes IPv6 (gateway_mode_ipv6: routed): the container port is "
            "open on the container's own address, and a host address has no effect (Docker "
            "ignores it with a warning)",
        ),
        (
            lambda d: d["containers"]["web"].update(publish=["[203.0.113.2]:8080:80"]),
            "containers.web.publish[0]",
            "'[203.0.113.2]:8080:80': '[203.0.113.2]' is not an IPv6 address in brackets",
        ),
    ],
)
def test_ipv6_problems_are_one_line_at_their_path(change: Any, path: str, message: str) -> None:
    data = base()
    change(data)
    for spec in data["networks"].values():  # a key set to None means "not given"
        for key in [k for k, v in spec.items() if v is None]:
            del spec[key]
    assert (path, message) in problems(data)


def test_the_dual_example_validates_with_checks_of_both_families() -> None:
    topology = load_topology(EXAMPLE)
    assert list(topology.namespaces) == ["web", "client", "db"]
    families = [c.family or (6 if c.to and ":" in c.to else 4) for c in topology.checks]
    assert families.count(4) == families.count(6) == 9


# ---- real packets, in the sandbox ----------------------------------------------------------


def nsgen(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return run(*NSGEN, *args, timeout=120)


_GET = (
    "import sys, urllib.request as u\n"
    "opener = u.build_opener(u.ProxyHandler({}))\n"  # never an http_proxy from the environment
    "print(opener.open(sys.argv[1], timeout=float(sys.argv[2])).status)\n"
)


def http_get(url: str, netns: str | None = None, timeout: float = 3) -> bool:
    """One bounded HTTP GET; True if it got a 200."""
    result = run(sys.executable, "-c", _GET, url, str(timeout), netns=netns, timeout=timeout + 10)
    return result.returncode == 0 and result.stdout.strip() == "200"


@contextmanager
def http_server(netns: str, port: int, root: Path, log: Path) -> Iterator[None]:
    """python3 -m http.server in `netns` on [::] (IPv6, and IPv4 as ::ffff: addresses); its
    access log, client address first, goes to `log`. Stopped by its PID after the block."""
    root.mkdir(exist_ok=True)
    (root / "page").write_text("page\n")
    with log.open("w") as out:
        command = ["ip", "netns", "exec", netns, sys.executable, "-m", "http.server"]
        server = subprocess.Popen(
            [*command, str(port), "--bind", "::"],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 10
        while not http_get(f"http://[::1]:{port}/page?ready", netns=netns, timeout=1):
            assert server.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the HTTP server did not start within 10 s"
            time.sleep(0.1)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=5)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=5)


def client_of(log: Path, tag: str) -> str | None:
    """The client address the server logged for the request /page?TAG."""
    for line in log.read_text().splitlines():
        if f'"GET /page?{tag} ' in line:
            return line.split()[0]
    return None


def peer_seen_upstream(netns: str, port: int) -> str:
    """Connect from `netns` to the internet host's IPv6 address; the address the upstream saw."""
    command = ["ip", "netns", "exec", UPSTREAM_NETNS, sys.executable, "-c", _ACCEPT_ONE]
    server = subprocess.Popen(
        [*command, INTERNET_HOST6, str(port)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        connect = run("bash", "-c", f"exec 3<>/dev/tcp/{INTERNET_HOST6}/{port}", netns=netns)
        assert connect.returncode == 0, connect.stderr
        return server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait(timeout=5)


_ACCEPT_ONE = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind((sys.argv[1],int(sys.argv[2])))\n"
    "s.listen(1)\nprint('ready',flush=True)\n"
    "s.settimeout(10)\nprint(s.accept()[1][0],flush=True)\n"
)


@sandboxed
def test_the_dual_example_with_real_packets_in_both_families(tmp_path: Path) -> None:
    front = next(ula_prefix("docker-dual").subnets(new_prefix=64))
    gateway6, web6, client6 = (str(front[i]) for i in (1, 2, 3))
    with upstream(["eth0"]) as up:
        uplink6, upstream6 = up.uplinks6["eth0"]
        make_canary()
        before = take_snapshot()
        result = nsgen("up", EXAMPLE)
        assert result.returncode == 0, result.stderr
        try:
            # names resolve to both addresses (here: /etc/netns/*/hosts)
            aaaa = run("getent", "ahostsv6", "web", netns="client").stdout.split()[:1]
            assert aaaa == [web6]
            assert run("getent", "ahostsv4", "web", netns="client").stdout.split()[:1] == [
                "172.18.0.2"
            ]
            assert ping(web6, netns="client")
            assert ping("fd00:19::10", netns="web")
            # isolation, internal, in IPv6 too
            assert not ping("fd00:19::10", netns="client")
            assert not ping("fd00:19::2", netns="client")
            assert not ping(client6, netns="db")
            assert not ping(INTERNET_HOST6, netns="db")
            # NAT66: the upstream sees the uplink's address
            assert peer_seen_upstream("client", 7106) == uplink6

            log = tmp_path / "http.log"
            with http_server("web", 80, tmp_path / "www", log):
                url = f"http://[{uplink6}]:8080/page"
                assert http_get(f"{url}?upstream", netns=UPSTREAM_NETNS)
                assert http_get(f"{url}?host")
                assert http_get(f"{url}?hairpin", netns="client")
                assert http_get(f"http://[{web6}]/page?direct", netns="client")
                assert not http_get("http://[fd00:19::1]:8080/page?backend", netns="db", timeout=2)
                assert http_get("http://203.0.113.2:8080/page?upstream4", netns=UPSTREAM_NETNS)
            assert client_of(log, "upstream") == upstream6
            assert client_of(log, "host") == uplink6
            assert client_of(log, "hairpin") == gateway6
            assert client_of(log, "direct") == client6
            assert client_of(log, "backend") is None
            assert client_of(log, "upstream4") == "::ffff:203.0.113.1"

            checks = nsgen("check", EXAMPLE)
            assert checks.returncode == 0, checks.stdout + checks.stderr
            assert "18 passed, 0 failed" in checks.stdout
        finally:
            down = nsgen("down", EXAMPLE)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)


ROUTED = """
name: routed
host: {external: [eth0]}
networks:
  edge:
    subnet: 10.61.0.0/24
    ipv6: true
    ipv6_subnet: "fd00:61::/64"
    gateway_mode_ipv6: routed
  quiet: {subnet: 10.62.0.0/24, ipv6: true, ipv6_subnet: "fd00:62::/64", icc: false}
containers:
  api: {networks: [edge], publish: ["8080:80/tcp"]}
  a: {networks: [quiet]}
  b: {networks: [quiet]}
"""


@sandboxed
def test_routed_mode_and_icc_false_in_ipv6(tmp_path: Path) -> None:
    topology = tmp_path / "routed.yaml"
    topology.write_text(ROUTED)
    with upstream(["eth0"], routes_back=["fd00:61::/64"]) as up:
        uplink6, upstream6 = up.uplinks6["eth0"]
        before = take_snapshot()
        result = nsgen("up", topology)
        assert result.returncode == 0, result.stderr
        try:
            log = tmp_path / "http.log"
            with http_server("api", 80, tmp_path / "www", log):
                # the container's own address, routed to: the published container port only
                assert http_get("http://[fd00:61::2]/page?routed", netns=UPSTREAM_NETNS)
                assert ping("fd00:61::2", netns=UPSTREAM_NETNS), "ICMPv6 is let through"
                # no DNAT in IPv6: the host port means nothing; IPv4 keeps NAT and DNAT
                assert not http_get(f"http://[{uplink6}]:8080/page?dnat6", UPSTREAM_NETNS, 2)
                assert http_get("http://203.0.113.2:8080/page?dnat4", netns=UPSTREAM_NETNS)
            assert client_of(log, "routed") == upstream6
            assert client_of(log, "dnat6") is None
            closed = tmp_path / "closed.log"
            with http_server("api", 22, tmp_path / "www", closed):
                assert not http_get("http://[fd00:61::2]:22/page?closed", UPSTREAM_NETNS, 2)
            assert client_of(closed, "closed") is None
            # no NAT66: the upstream sees the container's own address
            assert peer_seen_upstream("api", 7107) == "fd00:61::2"
            # icc: false holds in IPv6 as in IPv4; the way out does not depend on it
            assert not ping("fd00:62::3", netns="a")
            assert not ping("10.62.0.3", netns="a")
            assert ping("fd00:62::1", netns="a"), "the gateway is the host, not a container"
            assert peer_seen_upstream("a", 7108) == uplink6
        finally:
            down = nsgen("down", topology)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)
