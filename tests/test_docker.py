"""The Docker-style vocabulary (`networks:`, `containers:`): what it expands to, the problems
it reports (with the file's paths), and, in the sandbox, what the expanded network does with
real packets: names, isolation, icc, internal networks, NAT, published ports and hairpin."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from nsgen.backends.iptables import rule_text
from nsgen.errors import TopologyError
from nsgen.expand.docker import Sugar, chain_names, veth_name
from nsgen.kinds.rules import expanded_rules
from nsgen.load import load_topology, topology_from_data
from nsgen.model import Topology
from nsgen.plan import build_plan
from nsgen.render import render_scripts, write_scripts
from nsgen.sandbox import INTERNET_HOST, start_dns, upstream
from nsgen.schema import topology_schema
from nsgen.snapshot import take_snapshot
from tests.harness import EXAMPLES, assert_same_state, make_canary, ping, run, sandboxed

NSGEN = (sys.executable, "-m", "nsgen")
EXAMPLE = EXAMPLES / "docker-bridge.yaml"
SRC = "d.yaml"
UPLINK = "203.0.113.2"
"""The host's eth0 address in the sandbox (nsgen.sandbox.build_upstream): where the
simulated upstream, the host and the containers reach the published port."""
UPSTREAM_ADDRESS = "203.0.113.1"

_BASE: dict[str, Any] = {
    "name": "dock",
    "host": {"external": ["eth0"]},
    "networks": {
        "front": {"subnet": "10.10.0.0/24"},
        "back": {"subnet": "10.20.0.0/24", "internal": True},
    },
    "containers": {
        "web": {"networks": ["front", "back"], "publish": ["8080:80/tcp"]},
        "client": {"networks": ["front"]},
        "db": {"networks": {"back": {"address": "10.20.0.10"}}},
    },
}


def base() -> dict[str, Any]:
    return copy.deepcopy(_BASE)


def expand(data: dict[str, Any]) -> Topology:
    return topology_from_data(data, SRC)


def problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    with pytest.raises(TopologyError) as caught:
        topology_from_data(data, SRC)
    return [(p.path, p.message) for p in caught.value.problems]


def rules(topology: Topology) -> list[tuple[str, str, str]]:
    """The root namespace's rules as the iptables backend installs them (dispatches written
    out, one rule per entry)."""
    return [(r.table, r.chain, rule_text(r)) for r in expanded_rules(topology.host.iptables)]


# ---- what the vocabulary expands to --------------------------------------------------------


def test_each_network_is_a_host_bridge_with_the_gateway_address() -> None:
    data = base()
    data["networks"]["bridge"] = {"subnet": "172.17.0.0/16"}
    data["networks"]["named"] = {
        "subnet": "10.30.0.0/24",
        "gateway": "10.30.0.254",
        "bridge": "dock-named",
    }
    topology = expand(data)
    assert {name: b.addresses for name, b in topology.host.bridges.items()} == {
        "br-front": ["10.10.0.1/24"],
        "br-back": ["10.20.0.1/24"],
        "docker0": ["172.17.0.1/16"],
        "dock-named": ["10.30.0.254/24"],
    }


def test_addresses_gateway_first_then_explicit_then_next_free_in_declaration_order() -> None:
    data = base()
    data["networks"] = {"n": {"subnet": "10.1.0.0/29"}}
    data["containers"] = {
        "a": {"networks": ["n"]},
        "b": {"networks": {"n": {"address": "10.1.0.2"}}},  # reserved before a is given one
        "c": {"networks": {"n": None}},
        "d": {"networks": {"n": {}}},
    }
    topology = expand(data)
    assert {ns: spec.interfaces[0].addresses for ns, spec in topology.namespaces.items()} == {
        "a": ["10.1.0.3/29"],
        "b": ["10.1.0.2/29"],
        "c": ["10.1.0.4/29"],
        "d": ["10.1.0.5/29"],
    }
    # the same file always gives the same addresses
    assert expand(data) == topology


def test_containers_get_eth0_eth1_in_order_and_docker_style_host_ends_on_the_bridges() -> None:
    topology = expand(base())
    web = topology.namespaces["web"]
    assert [
        (i.name, i.addresses, i.peer.netns, i.peer.bridge, i.peer.name) for i in web.interfaces
    ] == [
        ("eth0", ["10.10.0.2/24"], "host", "br-front", veth_name("dock", "web", "front")),
        ("eth1", ["10.20.0.2/24"], "host", "br-back", veth_name("dock", "web", "back")),
    ]
    assert re.fullmatch(r"veth[0-9a-f]{7}", veth_name("dock", "web", "front"))
    assert veth_name("dock", "web", "front") == veth_name("dock", "web", "front")
    names = {veth_name(t, c, n) for t in ("a", "b") for c in ("x", "y") for n in ("p", "q")}
    assert len(names) == 8
    assert topology.namespaces["db"].interfaces[0].addresses == ["10.20.0.10/24"]


def test_default_route_via_the_first_non_internal_network_only() -> None:
    data = base()
    data["containers"]["late"] = {"networks": ["back", "front"]}
    topology = expand(data)
    assert [(r.to, r.via) for r in topology.namespaces["web"].routes] == [("default", "10.10.0.1")]
    assert [(r.to, r.via) for r in topology.namespaces["late"].routes] == [("default", "10.10.0.1")]
    assert topology.namespaces["late"].interfaces[1].name == "eth1"
    assert topology.namespaces["db"].routes == []


def test_hosts_files_know_every_container_sharing_a_network() -> None:
    topology = expand(base())
    hosts = {ns: spec.dns.hosts for ns, spec in topology.namespaces.items() if spec.dns}
    assert hosts == {
        "web": {"web": "10.10.0.2", "client": "10.10.0.3", "db": "10.20.0.10"},
        "client": {"client": "10.10.0.3", "web": "10.10.0.2"},
        "db": {"db": "10.20.0.10", "web": "10.20.0.2"},  # web's address on the shared network
    }
    assert topology.namespaces["web"].dns is not None
    assert topology.namespaces["web"].dns.nameservers == ["127.0.0.11"]
    data = base()
    data["containers"]["client"]["dns"] = ["198.51.100.53"]
    dns = expand(data).namespaces["client"].dns
    assert dns is not None and dns.nameservers == ["198.51.100.53"]


def test_forwarding_sysctl_only_when_a_network_has_a_way_out() -> None:
    assert expand(base()).host.sysctls == {
        "net.ipv4.ip_forward": "1",
        # a published port: the host's own connections to 127.0.0.1 leave through br-front
        "net.ipv4.conf.br-front.route_localnet": "1",
    }
    data = base()
    data["networks"] = {"back": {"subnet": "10.20.0.0/24", "internal": True}}
    data["containers"] = {"db": {"networks": ["back"]}}
    assert expand(data).host.sysctls == {}
    data = base()
    data["networks"]["front"]["icc"] = False
    assert expand(data).host.sysctls == {
        "net.ipv4.ip_forward": "1",
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.ipv4.conf.br-front.route_localnet": "1",
    }


def test_iptables_own_chains_isolation_icc_internal_nat_and_published_ports() -> None:
    data = base()
    data["networks"]["quiet"] = {"subnet": "10.40.0.0/24", "icc": False}
    data["networks"]["plain"] = {"subnet": "10.50.0.0/24", "masquerade": False}
    topology = expand(data)
    fwd, dnat = chain_names("dock")
    assert (fwd, dnat) == ("NSGEN-dock-FWD", "NSGEN-dock-DNAT")
    bridges = ["br-front", "br-back", "br-quiet", "br-plain"]
    assert [(c.table, c.name, c.inline) for c in topology.host.iptables.chains] == [
        ("filter", fwd, False),
        *[("filter", f"forward-in__{b}", True) for b in bridges],
        *[("filter", f"forward-out__{b}", True) for b in bridges],
        ("nat", dnat, False),
    ]
    assert topology.host.iptables.rules[0].insert  # before the host's own FORWARD rules
    # Docker 29's layout: FWD sends packets on by the bridge they leave through (into a
    # network) and by the bridge they come in on (out of one)
    dispatches = [r.dispatch for r in topology.host.iptables.rules if r.dispatch]
    assert [(d.name, d.by, [e.target for e in d.entries]) for d in dispatches] == [
        ("forward-in-jumps", ["out_interface"], [f"forward-in__{b}" for b in bridges]),
        ("forward-out-jumps", ["in_interface"], [f"forward-out__{b}" for b in bridges]),
    ]
    # ... which the iptables backend writes out in FWD, each with the bridge it is keyed by:
    # into each network, a DROP from every other one (isolation), then icc and internal
    drop = [
        "-i br-back -o br-front",
        "-i br-quiet -o br-front",
        "-i br-plain -o br-front",
        "-i br-front -o br-back",
        "-i br-quiet -o br-back",
        "-i br-plain -o br-back",
        "! -i br-back -o br-back",  # internal: nothing else into it
        "-i br-front -o br-quiet",
        "-i br-back -o br-quiet",
        "-i br-plain -o br-quiet",
        "-i br-quiet -o br-quiet",  # icc: false
        "-i br-front -o br-plain",
        "-i br-back -o br-plain",
        "-i br-quiet -o br-plain",
        "-i br-back ! -o br-back",  # internal: nothing out of it
    ]
    assert rules(topology)[:16] == [
        ("filter", "FORWARD", f"-j {fwd}"),
        *[("filter", fwd, f"{match} -j DROP") for match in drop],
    ]
    assert rules(topology)[16:] == [
        ("nat", "POSTROUTING", "-s 10.10.0.0/24 ! -o br-front -j MASQUERADE"),
        ("nat", "POSTROUTING", "-s 10.40.0.0/24 ! -o br-quiet -j MASQUERADE"),
        ("nat", "PREROUTING", f"-m addrtype --dst-type LOCAL -j {dnat}"),
        ("nat", "OUTPUT", f"-m addrtype --dst-type LOCAL -j {dnat}"),
        ("nat", dnat, "-p tcp --dport 8080 -j DNAT --to-destination 10.10.0.2:80"),
        (
            "nat",
            "POSTROUTING",
            "-s 10.10.0.0/24 -d 10.10.0.2 -p tcp --dport 80 "
            "-m conntrack --ctstate DNAT -j MASQUERADE",
        ),
        ("nat", "POSTROUTING", "-s 127.0.0.0/8 -d 10.10.0.2 -p tcp --dport 80 -j MASQUERADE"),
    ]
    assert topology.host.masquerade == []
    ports = [i.peer for s in topology.namespaces.values() for i in s.interfaces]
    assert ports and all(peer.hairpin for peer in ports)


def test_publish_long_form_udp_and_host_ip() -> None:
    data = base()
    data["containers"]["web"]["publish"] = [
        "203.0.113.2:5353:53/udp",
        {"published": 8443, "target": 443},
        {"published": 8080, "target": 80, "protocol": "udp", "host_ip": "203.0.113.2"},
    ]
    dnat = chain_names("dock")[1]
    assert [r for r in rules(expand(data)) if r[1] == dnat] == [
        ("nat", dnat, "-d 203.0.113.2 -p udp --dport 5353 -j DNAT --to-destination 10.10.0.2:53"),
        ("nat", dnat, "-p tcp --dport 8443 -j DNAT --to-destination 10.10.0.2:443"),
        ("nat", dnat, "-d 203.0.113.2 -p udp --dport 8080 -j DNAT --to-destination 10.10.0.2:80"),
    ]


def test_one_group_per_network_for_diagrams() -> None:
    groups = [(g.name, g.kind, g.members) for g in expand(base()).groups]
    assert groups == [
        ("front", "docker network", ["web", "client"]),
        ("back", "internal docker network", ["web", "db"]),
    ]


def test_core_objects_stay_and_checks_may_name_containers() -> None:
    data = base()
    data["namespaces"] = {"probe": {}}
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 1}
    data["checks"] = [{"from": "client", "to": "web"}, {"from": "probe", "to": "192.0.2.10"}]
    topology = expand(data)
    assert list(topology.namespaces) == ["probe", "web", "client", "db"]
    assert len(topology.checks) == 2


def test_no_networks_means_the_network_named_bridge() -> None:
    data = base()
    data["networks"]["bridge"] = {"subnet": "172.17.0.0/16"}
    data["containers"]["plain"] = {}
    data["containers"]["none"] = {"networks": []}  # docker run --network none
    topology = expand(data)
    assert topology.namespaces["plain"].interfaces[0].peer.bridge == "docker0"
    assert topology.namespaces["plain"].interfaces[0].addresses == ["172.17.0.2/16"]
    assert topology.namespaces["none"].interfaces == []


# ---- problems, at the file's paths ---------------------------------------------------------


def test_addresses_duplicate_outside_or_reserved_are_errors_with_paths() -> None:
    data = base()
    data["containers"]["client"]["networks"] = {"front": {"address": "10.20.0.5"}}
    data["containers"]["other"] = {"networks": {"back": {"address": "10.20.0.10"}}}
    data["containers"]["gw"] = {"networks": {"back": {"address": "10.20.0.1"}}}
    data["containers"]["edge"] = {"networks": {"back": {"address": "10.20.0.255"}}}
    assert problems(data) == [
        (
            "containers.client.networks.front.address",
            "10.20.0.5 is outside the subnet 10.10.0.0/24 of network front",
        ),
        (
            "containers.other.networks.back.address",
            "10.20.0.10 is already taken on network back (by containers.db.networks.back.address)",
        ),
        (
            "containers.gw.networks.back.address",
            "10.20.0.1 is already taken on network back "
            "(by networks.back.gateway (the default gateway))",
        ),
        (
            "containers.edge.networks.back.address",
            "10.20.0.255 is the broadcast address of 10.20.0.0/24, not a host address",
        ),
    ]


def test_a_full_subnet_is_an_error_at_the_container() -> None:
    data = base()
    data["networks"] = {"tiny": {"subnet": "10.1.0.0/30"}}
    data["containers"] = {"a": {"networks": ["tiny"]}, "b": {"networks": ["tiny"]}}
    assert problems(data) == [
        (
            "containers.b.networks[0]",
            "network tiny (10.1.0.0/30) has no free address left for this container",
        ),
    ]


def test_network_problems_have_paths() -> None:
    data = base()
    data["networks"] = {
        "front": {"subnet": "10.10.0.0/24", "gateway": "10.11.0.1"},
        "over": {"subnet": "10.10.0.0/16"},
        "six": {"subnet": "fd00::/64"},
        "averyverylongname": {"subnet": "10.60.0.0/24", "bridge": "br-front"},
        "shut": {"subnet": "10.70.0.0/24", "internal": True, "masquerade": True},
        "typo": {"subnett": "10.80.0.0/24"},
    }
    data["containers"] = {}
    found = problems(data)
    assert [p for p, _ in found] == [
        "networks.typo.subnet",
        "networks.typo.subnett",
        "networks.front.gateway",
        "networks.over.subnet",
        "networks.six.subnet",
        "networks.averyverylongname.bridge",
        "networks.shut.masquerade",
    ]
    assert found[1][1] == ("unknown key 'subnett' (did you mean 'subnet'?)")
    found = found[2:]
    assert found[0][1] == "10.11.0.1 is outside the subnet 10.10.0.0/24"
    assert (
        found[1][1] == "10.10.0.0/16 overlaps 10.10.0.0/24 of network front (networks.front.subnet)"
    )
    assert "IPv6" in found[2][1]
    assert found[3][1] == "bridge br-front is already the bridge of network front"


def test_bridge_name_clashes_are_errors() -> None:
    data = base()
    data["host"]["bridges"] = {"br0": {}}
    data["networks"]["front"]["bridge"] = "br0"
    data["networks"]["back"]["bridge"] = "br0"
    assert problems(data) == [
        (
            "networks.front.bridge",
            "bridge br0 clashes with the root namespace's interface declared at host.bridges.br0",
        ),
        ("networks.back.bridge", "bridge br0 is already the bridge of network front"),
    ]
    data = base()
    data["host"]["bridges"] = {"br9": {"addresses": ["10.10.0.254/24"]}}
    assert problems(data) == [
        (
            "networks.front.subnet",
            "10.10.0.0/24 overlaps the root namespace's 10.10.0.254/24 (at host.bridges.br9)",
        ),
    ]


def test_container_problems_have_paths() -> None:
    data = base()
    data["namespaces"] = {"client": {}}
    data["containers"]["web"]["networks"] = ["front", "nowhere", "front"]
    data["containers"]["my_app"] = {"networks": ["front"]}
    data["containers"]["lost"] = {}
    data["containers"]["odd"] = {"networks": "front"}
    found = problems(data)
    assert found == [
        (
            "containers.my_app",
            "'my_app' cannot be a container name: the other containers "
            "resolve it as a host name, so use letters, digits and '-' (no '_'; '.' only between "
            "labels)",
        ),
        (
            "containers.web.networks[1]",
            "network 'nowhere' is not declared under networks: (declared: front, back)",
        ),
        ("containers.web.networks[2]", "network 'front' is listed twice"),
        (
            "containers.client",
            "container client clashes with the namespace declared at "
            "namespaces.client: a container is a namespace of the same name",
        ),
        (
            "containers.lost",
            "network 'bridge' is not declared under networks: (declared: "
            "front, back) (a container without 'networks:' joins the network 'bridge'; declare "
            "it, e.g. networks: {bridge: {subnet: 172.17.0.0/16}})",
        ),
        (
            "containers.odd.networks",
            "expected a list of network names, or a mapping network: {address: ...}, got 'front'",
        ),
    ]


def test_publish_problems_have_paths() -> None:
    data = base()
    data["containers"]["client"]["publish"] = [
        "8080:81",  # host port 8080/tcp is web's already
        "8080:80/udp",  # another protocol: fine
        484880,  # what YAML makes of an unquoted 8080:80
        "80",  # no host port
        "9000:70000",
        "1.2.3:9001:80",
        {"published": 9002, "target": 80, "protocl": "udp"},
        "9003:80/sctp",
    ]
    data["containers"]["db"]["publish"] = ["5432:5432"]
    found = problems(data)
    assert [p for p, _ in found] == [
        "containers.client.publish[2]",
        "containers.client.publish[3]",
        "containers.client.publish[4]",
        "containers.client.publish[5]",
        "containers.client.publish[6].protocl",
        "containers.client.publish[7]",
        "containers.client.publish[0]",
        "containers.db.publish[0]",
    ]
    messages = dict(found)
    assert "quote the mapping" in messages["containers.client.publish[2]"]
    assert (
        "is not a port mapping: write HOST_PORT:CONTAINER_PORT"
        in messages["containers.client.publish[3]"]
    )
    assert messages["containers.client.publish[4]"] == "'9000:70000': port 70000 is outside 1-65535"
    assert messages["containers.client.publish[6].protocl"].startswith("unknown key 'protocl'")
    assert (
        messages["containers.client.publish[7]"]
        == "'9003:80/sctp': protocol 'sctp' is not tcp or udp"
    )
    assert (
        messages["containers.client.publish[0]"]
        == "host port 8080/tcp is already published (at containers.web.publish[0])"
    )
    assert messages["containers.db.publish[0]"].startswith(
        "container db is only on internal networks (back): nothing from outside can reach it"
    )


def test_two_host_ports_for_one_container_port_need_one_hairpin_rule() -> None:
    data = base()
    data["containers"]["web"]["publish"] = ["8080:80", "8081:80"]
    postrouting = [r for r in rules(expand(data)) if r[1] == "POSTROUTING"]
    assert len([r for r in postrouting if "--ctstate DNAT" in r[2]]) == 1


def test_more_publish_and_name_problems() -> None:
    data = base()
    data["containers"]["web"]["publish"] = [{"published": 1, "target": 2, "host_ip": "fd00::1"}]
    data["containers"]["alone"] = {"networks": [], "publish": ["9000:90"]}
    data["namespaces"] = {
        "x": {"interfaces": [{"peer": {"name": veth_name("dock", "client", "front")}}]}
    }
    assert problems(data) == [
        (
            "containers.web.publish[0]",
            "fd00::1 is an IPv6 address, but container web has none to publish to (Docker's "
            "docker-proxy would relay IPv6 to its IPv4 address; nsgen does not)",
        ),
        (
            "containers.alone.publish[0]",
            "container alone is on no network: nothing from "
            "outside can reach it, so it cannot publish ports",
        ),
        (
            "containers.client.networks[0]",
            f"the derived host end "
            f"{veth_name('dock', 'client', 'front')} of this veth pair clashes with the interface "
            "at namespaces.x.interfaces[0].peer: rename the container or the network",
        ),
    ]
    data = base()
    data["networks"] = []
    data["containers"] = {"a": None}
    assert problems(data) == [
        ("networks", "expected a mapping (name: ...), got []"),
        (
            "containers.a",
            "network 'bridge' is not declared under networks: "
            "(declared: none) (a container without 'networks:' joins the "
            "network 'bridge'; declare it, e.g. networks: {bridge: {subnet: "
            "172.17.0.0/16}})",
        ),
    ]


def test_the_vocabulary_has_a_json_schema_the_example_satisfies() -> None:
    """What nsgen.schema needs to add so that editors accept networks: and containers: (the
    core schema alone rejects them as unknown top-level keys)."""
    jsonschema = pytest.importorskip("jsonschema")
    schema = topology_schema()
    sugar = Sugar.model_json_schema()
    schema["properties"].update(sugar["properties"])
    schema.setdefault("$defs", {}).update(sugar["$defs"])
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert [e.message for e in validator.iter_errors(yaml.safe_load(EXAMPLE.read_text()))] == []
    wrong = {"name": "x", "networks": {"n": {"subnett": "10.0.0.0/24"}}}
    assert list(validator.iter_errors(wrong))


def test_a_sysctl_the_networks_need_set_otherwise_is_an_error() -> None:
    data = base()
    data["host"]["sysctls"] = {"net.ipv4.ip_forward": 0}
    assert problems(data) == [
        (
            "host.sysctls.net.ipv4.ip_forward",
            "the Docker-style networks need "
            "net.ipv4.ip_forward = 1 (forwarding between the bridges and the uplink), but the "
            "file sets 0",
        ),
    ]


def test_the_example_validates_and_renders_shellcheck_clean(tmp_path: Path) -> None:
    result = run_plain(*NSGEN, "validate", EXAMPLE)
    assert result.returncode == 0, result.stderr
    topology = load_topology(EXAMPLE)
    assert list(topology.namespaces) == ["web", "client", "db"]
    write_scripts(render_scripts(build_plan(topology)), tmp_path)
    scripts = sorted(str(p) for p in tmp_path.glob("*.sh"))
    assert scripts
    shellcheck = Path(sys.executable).parent / "shellcheck"
    checker = str(shellcheck) if shellcheck.exists() else "shellcheck"
    lint = run_plain(checker, *scripts)
    assert lint.returncode == 0, lint.stdout


def run_plain(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """A command that changes no network state (validate, render, shellcheck)."""
    return subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=120)


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


PAGES = (
    "ready",
    "from-upstream",
    "from-host",
    "hairpin",
    "direct",
    "from-backend",
    "wrong-port",
    "own-port",
    "own-port-via-gateway",
    "localhost",
)


@contextmanager
def http_server(netns: str, port: int, root: Path, log: Path) -> Iterator[None]:
    """python3 -m http.server in `netns`, serving a directory of small files named after the
    requests the tests make; its access log (client address first) goes to `log`. Stopped by
    its PID when the block ends."""
    root.mkdir(exist_ok=True)
    for name in PAGES:
        (root / name).write_text(f"{name}\n")
    with log.open("w") as out:
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                netns,
                sys.executable,
                "-m",
                "http.server",
                str(port),
                "--bind",
                "0.0.0.0",
            ],
            cwd=root,
            stdout=subprocess.DEVNULL,
            stderr=out,
        )
    try:
        deadline = time.monotonic() + 10
        while not http_get(f"http://127.0.0.1:{port}/ready", netns=netns, timeout=1):
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


def client_of(log: Path, path: str) -> str | None:
    """The client address the server logged for a request of `path`."""
    for line in log.read_text().splitlines():
        if f'"GET {path} ' in line:
            return line.split()[0]
    return None


@sandboxed
def test_the_example_with_real_packets_and_teardown_restores_everything(tmp_path: Path) -> None:
    with upstream(["eth0"]):
        make_canary()
        before = take_snapshot()
        up = nsgen("up", EXAMPLE)
        assert up.returncode == 0, up.stderr
        try:
            # names, as Docker's embedded DNS would answer them (here: /etc/netns/*/hosts)
            for source, target in (
                ("client", "web"),
                ("web", "client"),
                ("web", "db"),
                ("db", "web"),
            ):
                result = run("ping", "-c1", "-W1", target, netns=source)
                assert result.returncode == 0, f"{source} -> {target}: {result.stdout}"
            assert "web" in run("getent", "hosts", "web", netns="db").stdout
            assert run("getent", "hosts", "db", netns="client").returncode != 0
            # different networks are isolated, in both directions, even through web's two legs
            assert not ping("172.19.0.10", netns="client")
            assert not ping("172.19.0.2", netns="client")
            assert not ping("172.18.0.3", netns="db")
            # the internal network has no way out; the frontend is masqueraded out of eth0
            assert not ping(INTERNET_HOST, netns="db")
            assert ping(INTERNET_HOST, netns="client")
            assert ping(INTERNET_HOST, netns="web")
            assert ping("172.19.0.1", netns="db"), "the host (gateway) itself is reachable"

            log = tmp_path / "http.log"
            with http_server("web", 80, tmp_path / "www", log):
                url = f"http://{UPLINK}:8080"
                assert http_get(f"{url}/from-upstream", netns="nsgen-upstream")
                assert http_get(f"{url}/from-host")
                assert http_get(f"{url}/hairpin", netns="client")
                # a container reaches its own published port, through the host's address or
                # its network's gateway (hairpin mode on its bridge port), and the host
                # reaches it on 127.0.0.1 (route_localnet on the bridge, loopback masqueraded)
                assert http_get(f"{url}/own-port", netns="web")
                assert http_get("http://172.18.0.1:8080/own-port-via-gateway", netns="web")
                assert http_get("http://127.0.0.1:8080/localhost")
                assert http_get("http://web/direct", netns="client")
                assert not http_get("http://172.19.0.1:8080/from-backend", netns="db", timeout=2)
                assert not http_get("http://web:8080/wrong-port", netns="client", timeout=2)
            # the published port keeps the caller's address; only hairpin traffic is rewritten
            # to the gateway so that web's replies go back through the host
            assert client_of(log, "/from-upstream") == UPSTREAM_ADDRESS
            assert client_of(log, "/from-host") == UPLINK
            assert client_of(log, "/hairpin") == "172.18.0.1"
            assert client_of(log, "/direct") == "172.18.0.3"
            assert client_of(log, "/from-backend") is None
            assert client_of(log, "/own-port") == "172.18.0.1"
            assert client_of(log, "/own-port-via-gateway") == "172.18.0.1"
            assert client_of(log, "/localhost") == "172.18.0.1"

            checks = nsgen("check", EXAMPLE)
            assert checks.returncode == 0, checks.stdout + checks.stderr
        finally:
            down = nsgen("down", EXAMPLE)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)


ICC = """
name: icc
host: {external: [eth0]}
networks:
  quiet: {subnet: 10.77.0.0/24, icc: false}
  open: {subnet: 10.78.0.0/24}
containers:
  a: {networks: [quiet], dns: [198.51.100.53]}
  b: {networks: [quiet]}
  c: {networks: [open]}
  d: {networks: [open]}
"""


@sandboxed
def test_icc_false_blocks_containers_of_one_network_from_each_other(tmp_path: Path) -> None:
    topology = tmp_path / "icc.yaml"
    topology.write_text(ICC)
    assert yaml.safe_load(ICC)["networks"]["quiet"]["icc"] is False
    with upstream(["eth0"]) as up_net:
        start_dns(up_net)
        before = take_snapshot()
        up = nsgen("up", topology)
        assert up.returncode == 0, up.stderr
        try:
            assert not ping("b", netns="a")
            assert not ping("a", netns="b")
            assert ping("d", netns="c"), "icc is on by default"
            assert ping("10.77.0.1", netns="a"), "the gateway is the host, not a container"
            assert ping(INTERNET_HOST, netns="a"), "icc: false does not stop the way out"
            assert not ping("10.78.0.2", netns="a"), "nor isolation between networks"
            # dns: the container's resolv.conf, here the simulated upstream's DNS server
            resolved = run("getent", "hosts", "www.example.test", netns="a", timeout=10)
            assert resolved.stdout.split()[:1] == [INTERNET_HOST], resolved
            assert run("getent", "hosts", "www.example.test", netns="b", timeout=10).returncode != 0
        finally:
            down = nsgen("down", topology)
        assert down.returncode == 0, down.stderr
        assert_same_state(before)
