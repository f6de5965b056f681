"""Names of any ordinary length (issue 10, section 2): namespace names up to 64 bytes, derived
interface names that always fit the kernel's 15 (the tutorial's form when it fits, else a short
deterministic one, by one rule in nsgen.names for the core and the Docker and Kubernetes
vocabularies), shown in the scripts and the diagram; explicit names over 15 bytes refused; the
topology name limited only where a derived iptables chain needs it."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest

from nsgen.diagram import mermaid
from nsgen.errors import TopologyError
from nsgen.expand import k8s
from nsgen.expand.docker import bridge_name, veth_name
from nsgen.fields import IFNAMSIZ, NAME_MAX
from nsgen.load import topology_from_data
from nsgen.names import fitted, short_name, unique_short_name
from nsgen.plan import build_plan
from nsgen.render import render_scripts
from nsgen.sandbox import INTERNET_HOST, upstream
from nsgen.snapshot import take_snapshot
from tests.harness import assert_same_state, ping, run, sandboxed, shown

SRC = "n.yaml"


def sha7(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:7]


def lines(data: dict[str, Any]) -> list[str]:
    with pytest.raises(TopologyError) as info:
        topology_from_data(data, SRC)
    return info.value.lines()


# ---- the rule ----------------------------------------------------------------------------------


def test_a_name_that_fits_is_kept_and_a_longer_one_gets_veth_and_7_hex_digits() -> None:
    assert fitted("veth-red-br") == "veth-red-br"
    assert fitted("veth-abcdefg-br") == "veth-abcdefg-br"  # 15 bytes: fits
    assert fitted("veth-frontend-br") == "veth" + sha7("veth-frontend-br")
    assert len(fitted("veth-" + "x" * 60).encode()) == 11 <= IFNAMSIZ


def test_the_short_form_counts_bytes_not_characters() -> None:
    name = "veth-" + "é" * 5  # 10 characters, 15 bytes
    assert fitted(name) == name
    assert fitted(name + "é") == "veth" + sha7(name + "é")


def test_short_names_are_deterministic_and_differ_for_different_seeds() -> None:
    assert short_name("a") == short_name("a") != short_name("b")
    assert short_name("net", "br-", 12) == "br-" + hashlib.sha256(b"net").hexdigest()[:12]


def test_unique_short_name_steps_past_a_taken_name_deterministically() -> None:
    taken = {short_name("seed")}
    assert unique_short_name("seed", taken) == short_name("seed#1")
    assert short_name("seed#1") in taken
    again = {short_name("seed")}
    assert unique_short_name("seed", again) == short_name("seed#1")


def test_docker_and_kubernetes_derive_their_veth_names_by_the_same_rule() -> None:
    assert veth_name("t", "web", "front") == short_name("t/web/front")
    assert k8s.veth_name("t/node1", set()) == short_name("t/node1")


def test_docker_bridge_keeps_br_network_when_it_fits_else_br_and_12_hex_digits() -> None:
    assert bridge_name("bridge") == "docker0"
    assert bridge_name("frontend") == "br-frontend"
    long = bridge_name("frontend-public")
    assert long == "br-" + hashlib.sha256(b"br-frontend-public").hexdigest()[:12]
    assert len(long) == IFNAMSIZ


# ---- the core vocabulary ---------------------------------------------------------------------


def bridged(*namespaces: str) -> dict[str, Any]:
    """Namespaces on the host bridge br0 with derived end names, one address each."""
    return {
        "name": "names",
        "host": {"bridges": {"br0": {"addresses": ["10.0.0.254/24"]}}},
        "namespaces": {
            ns: {"interfaces": [{"peer": {"bridge": "br0"}, "addresses": [f"10.0.0.{i}/24"]}]}
            for i, ns in enumerate(namespaces, start=1)
        },
        "checks": [{"from": namespaces[0], "to": namespaces[-1]}],
    }


def test_frontend_and_database_primary_on_a_bridge_validate_render_and_draw() -> None:
    """Issue 10: `frontend` on a bridge failed (veth-frontend-br is 16 bytes), and
    `database-primary` was refused as a namespace name though `ip netns add` takes it."""
    topology = topology_from_data(bridged("frontend", "database-primary"), SRC)
    ends = {
        "veth-frontend": "frontend",
        "veth" + sha7("veth-frontend-br"): "host",
        "veth" + sha7("veth-database-primary"): "database-primary",
        "veth" + sha7("veth-database-primary-br"): "host",
    }
    setup = render_scripts(build_plan(topology, "tutorial"))["setup.sh"]
    batch = render_scripts(build_plan(topology))["setup.sh"]
    picture = mermaid(topology)
    for name in ends:
        assert len(name) <= IFNAMSIZ
        assert f" {name} " in setup or f" {name}\n" in setup, name
        assert name in batch and name in picture, name
    assert "ip netns add database-primary\n" in setup


def test_a_short_form_that_clashes_with_another_derived_name_is_reported() -> None:
    data = bridged("red")
    data["host"]["bridges"]["veth" + sha7("veth-frontend-br")] = {}
    data["namespaces"]["frontend"] = {"interfaces": [{"peer": {"bridge": "br0"}}]}
    (line,) = lines(data)
    assert line.startswith(
        f"{SRC}: namespaces.frontend.interfaces[0].peer: the derived interface name "
        f"'veth{sha7('veth-frontend-br')}' (short for 'veth-frontend-br') is already used"
    )


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        (".", "use only letters, digits, '_', '-', '.', not starting with '.'"),
        ("..", "use only letters, digits, '_', '-', '.', not starting with '.'"),
        (".hidden", "use only letters, digits, '_', '-', '.', not starting with '.'"),
        ("a/b", "use only letters, digits, '_', '-', '.'"),
        ("-x", "it must not start with '-'"),
        ("n" * (NAME_MAX + 1), f"{NAME_MAX + 1} bytes, over nsgen's limit of {NAME_MAX}"),
    ],
)
def test_namespace_names_that_are_not_safe_file_names_are_refused(name: str, reason: str) -> None:
    data = bridged("red")
    data["namespaces"][name] = {}
    assert lines(data) == [
        f"{SRC}: namespaces.{name}: {shown(name)} is not a valid namespace name: {reason}"
    ]


def test_a_64_byte_namespace_name_is_accepted_everywhere_a_namespace_is_named() -> None:
    long = "n" * NAME_MAX
    data = bridged("red", long)
    data["namespaces"]["red"]["interfaces"].append(
        {"name": "x", "peer": {"netns": long, "name": "y"}}
    )
    data["checks"].append({"from": long, "to": "red"})
    topology = topology_from_data(data, SRC)
    assert long in topology.namespaces


def test_a_topology_name_of_64_bytes_is_accepted_for_core_topologies() -> None:
    data = bridged("red")
    data["name"] = "t" * NAME_MAX
    assert topology_from_data(data, SRC).name == "t" * NAME_MAX
    data["name"] = "t" * (NAME_MAX + 1)
    assert lines(data) == [
        f"{SRC}: name: {shown('t' * (NAME_MAX + 1))} is not a valid topology name: "
        f"{NAME_MAX + 1} bytes, over nsgen's limit of {NAME_MAX}"
    ]


DOCKER: dict[str, Any] = {
    "name": "dock",
    "networks": {"frontend-public": {"subnet": "10.10.0.0/24"}},
    "containers": {"web": {"networks": ["frontend-public"]}},
}


def test_a_docker_topology_name_is_limited_by_its_iptables_chains_and_says_so() -> None:
    data = copy.deepcopy(DOCKER)
    data["name"] = "d" * 17  # NSGEN-ddddddddddddddddd-DNAT: 28 bytes
    topology_from_data(data, SRC)
    data["name"] = "d" * 18
    assert lines(data) == [
        f"{SRC}: name: {'d' * 18!r} is 18 bytes: with Docker-style networks a topology name "
        f"has at most 17, since it is part of the iptables chain NSGEN-{'d' * 18}-DNAT, and "
        "iptables takes chain names of at most 28 bytes"
    ]


def test_a_long_docker_network_name_gets_a_short_bridge_in_scripts_and_diagram() -> None:
    topology = topology_from_data(copy.deepcopy(DOCKER), SRC)
    bridge = bridge_name("frontend-public")
    assert bridge in topology.host.bridges
    assert f"link add {bridge} type bridge" in render_scripts(build_plan(topology))["setup.sh"]
    assert bridge in mermaid(topology)


def test_a_derived_docker_bridge_that_clashes_says_to_set_bridge() -> None:
    data = copy.deepcopy(DOCKER)
    data["host"] = {"bridges": {bridge_name("frontend-public"): {}}}
    (line,) = lines(data)
    assert line.endswith("(a derived name: set 'bridge:' explicitly)")
    assert line.startswith(
        f"{SRC}: networks.frontend-public: bridge {bridge_name('frontend-public')}"
    )


def test_kubernetes_host_names_see_the_core_short_forms() -> None:
    """The cluster's own host-side veths avoid every root-namespace name of the core part,
    derived ones included, spelled as nsgen.names derives them."""
    topology = topology_from_data(bridged("database-primary"), SRC)
    assert "veth" + sha7("veth-database-primary-br") in k8s._host_names(topology)


# ---- the kernel takes them ----------------------------------------------------------------------


@sandboxed
def test_long_namespace_names_and_short_derived_names_build_and_tear_down(tmp_path: Path) -> None:
    data = bridged("frontend", "database-primary", "x" * NAME_MAX)
    data["host"].update(
        {
            "external": ["eth0"],
            "masquerade": [{"source": "10.0.0.0/24", "out": "eth0"}],
            "sysctls": {"net.ipv4.ip_forward": 1},
        }
    )
    for spec in data["namespaces"].values():
        spec["routes"] = [{"to": "default", "via": "10.0.0.254"}]
    data["namespaces"]["frontend"]["dns"] = {"nameservers": ["198.51.100.53"]}
    scripts = render_scripts(build_plan(topology_from_data(data, SRC)))
    for name, text in scripts.items():
        (tmp_path / name).write_text(text)
        (tmp_path / name).chmod(0o755)
    with upstream(["eth0"]):
        before = take_snapshot()
        setup = run(tmp_path / "setup.sh")
        assert setup.returncode == 0, setup.stderr
        assert ping("10.0.0.2", netns="frontend"), "frontend -> database-primary"
        assert ping("10.0.0.1", netns="x" * NAME_MAX), "the 64-byte namespace -> frontend"
        assert ping(INTERNET_HOST, netns="database-primary"), "through NAT"
        links = run("ip", "-o", "link", "show", "master", "br0").stdout
        assert "veth" + sha7("veth-frontend-br") in links
        assert run("cat", "/etc/resolv.conf", netns="frontend").stdout == (
            "nameserver 198.51.100.53\n"
        )
        teardown = run(tmp_path / "teardown.sh")
        assert teardown.returncode == 0, teardown.stderr
        assert_same_state(before)
